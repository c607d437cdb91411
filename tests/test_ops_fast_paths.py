"""The fast paths taken for speed give PyTorch's results: a lookup's backward as a sparse product
(many rows looked up, repeats adding up), small integer powers as products, stacked matrix
products handed to BLAS whole (transposed views, broadcast batches), and GELU's derivative from
its forward's result (at 0 and in the tails)."""

import numpy as np
import pytest
import torch
from conftest import assert_close

import chainrule as cr
import chainrule.nn.functional as F
from chainrule.ops import indexing

RNG = np.random.default_rng(21)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index_shape", [(64, 64), (12, 64, 3), (5000,)])
def test_embedding_gradient_of_many_repeated_lookups_matches_torch(dtype, index_shape):
    index = RNG.integers(-50, 50, index_shape) % 50  # every row many times over
    weight = RNG.standard_normal((50, 8)).astype(dtype)
    seed = RNG.standard_normal(index_shape + (8,)).astype(dtype)
    assert seed.size >= indexing._SPARSE_FROM  # the sparse product, not np.add.at
    grads = []
    for m in (cr, torch):
        w = m.tensor(weight, requires_grad=True)
        out = m.nn.functional.embedding(m.tensor(index), w)
        out.backward(m.tensor(seed))
        grads.append(w.grad)
    assert_close(grads[0], grads[1], "embedding weight gradient")


def test_indexing_rows_with_negative_indices_and_trailing_dims_scatters_back_as_torch():
    data = RNG.standard_normal((7, 3, 4))
    index = RNG.integers(-7, 7, 600)
    grads = []
    for m in (cr, torch):
        x = m.tensor(data, requires_grad=True)
        (x[m.tensor(index)] * m.tensor(np.arange(12.0).reshape(3, 4))).sum().backward()
        grads.append(x.grad)
    assert_close(grads[0], grads[1], "row lookup gradient")


def test_small_lookups_still_add_up_repeats():
    x = cr.tensor(np.zeros((3, 2)), requires_grad=True)
    x[cr.tensor([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[3, 3], [0, 0], [1, 1]])


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1, -2, 2.0, 3.0, 4, -3, 1.5])
def test_powers_of_a_number_match_torch_values_and_gradients(exponent):
    base = np.abs(RNG.standard_normal((6, 5))) + 0.3
    for dtype in (np.float32, np.float64):
        ours, theirs = (
            cr.tensor(base.astype(dtype), requires_grad=True),
            torch.tensor(base.astype(dtype), requires_grad=True),
        )
        a, b = ours**exponent, theirs**exponent
        assert_close(a, b, f"x ** {exponent} [{dtype.__name__}]")
        a.sum().backward()
        b.sum().backward()
        assert_close(ours.grad, theirs.grad, f"d x**{exponent} [{dtype.__name__}]")


@pytest.mark.parametrize("exponent", [2, 3])
def test_float32_squares_and_cubes_are_torchs_products_bit_for_bit(exponent):
    base = RNG.standard_normal(10_000).astype(np.float32)
    ours = (cr.tensor(base) ** exponent).numpy()
    np.testing.assert_array_equal(ours, (torch.tensor(base) ** exponent).numpy())


def test_integer_powers_of_integer_tensors_stay_integers():
    x = cr.tensor([1, 2, 3])
    assert (x**2).dtype == cr.int64 and (x**3).numpy().tolist() == [1, 8, 27]


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "transpose_b"),
    [
        ((12, 4, 6, 5), (12, 4, 7, 5), True),  # attention's q @ k.mT
        ((2, 3, 4), (4, 5), False),  # a stack times one matrix
        ((2, 3, 4), (5, 4), True),  # ... a transposed one
        ((2, 1, 3, 4), (5, 4, 2), False),  # broadcast batches
        ((3, 4), (2, 4, 5), False),
    ],
)
def test_stacked_products_match_torch_forward_and_backward(a_shape, b_shape, transpose_b):
    a, b = RNG.standard_normal(a_shape), RNG.standard_normal(b_shape)
    results = []
    for m in (cr, torch):
        ta, tb = m.tensor(a, requires_grad=True), m.tensor(b, requires_grad=True)
        out = ta @ (tb.mT if transpose_b else tb)
        out.backward(m.tensor(np.cos(np.arange(out.numel())).reshape(tuple(out.shape))))
        results.append((out, ta.grad, tb.grad))
    for what, ours, theirs in zip(("product", "grad a", "grad b"), *results, strict=True):
        assert_close(ours, theirs, what)


def test_gelu_derivative_at_zero_and_far_in_the_tails_matches_torch():
    values = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-8, -40.0, -12.0, -6.0, 6.0, 40.0])
    for dtype in (np.float64, np.float32):
        grads = []
        for m in (cr, torch):
            x = m.tensor(values.astype(dtype), requires_grad=True)
            m.nn.functional.gelu(x).sum().backward()
            grads.append(x.grad)
        assert np.isfinite(grads[0].numpy()).all()
        assert_close(grads[0], grads[1], f"gelu gradient [{dtype.__name__}]")


def test_gelu_second_derivative_through_the_out_over_x_rule_matches_torch():
    values = np.array([-2.0, -0.5, 0.0, 0.3, 1.7])
    results = []
    for m, grad in ((cr, cr.grad), (torch, torch.autograd.grad)):
        x = m.tensor(values, requires_grad=True)
        (first,) = grad(
            F.gelu(x).sum() if m is cr else torch.nn.functional.gelu(x).sum(),
            [x],
            create_graph=True,
        )
        (second,) = grad(first.sum(), [x])
        results.append(second)
    assert_close(results[0], results[1], "gelu second derivative")


def test_softmax_of_a_0d_tensor_is_one():
    assert float(cr.softmax(cr.tensor(3.0), 0)) == float(torch.softmax(torch.tensor(3.0), 0)) == 1.0
