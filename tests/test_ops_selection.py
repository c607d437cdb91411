"""What the parity table (test_ops_parity.py) cannot show for masked_fill, tril/triu, roll,
cumsum, sort/argsort/topk, multinomial, randint and scaled_dot_product_attention: the integer
results (indices, orders of ties), dtypes, the named (values, indices) pairs, in-place forms,
0-d inputs, random draws (distributions and seeding) and the errors, each against PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
import chainrule.nn.functional as F

TIES = [[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.0, -1.0, 0.0, 0.0, 5.0, -1.0]]


def _same(ours, theirs):
    assert ours.dtype == getattr(cr, str(theirs.dtype).removeprefix("torch."))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


# ---- sorting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_sort_orders_ties_as_torch_stable_sort(descending, dim):
    ours = cr.sort(cr.tensor(TIES), dim=dim, descending=descending)
    theirs = torch.sort(torch.tensor(TIES), dim=dim, descending=descending, stable=True)
    _same(ours.values, theirs.values)
    _same(ours.indices, theirs.indices)
    _same(
        cr.argsort(cr.tensor(TIES), dim, descending),
        torch.argsort(torch.tensor(TIES), dim=dim, descending=descending, stable=True),
    )


def test_sort_puts_nan_last_ascending_and_first_descending_as_torch():
    data = [2.0, np.nan, -1.0, np.inf, 0.0]
    for descending in (False, True):
        ours = cr.tensor(data).sort(descending=descending)
        theirs = torch.tensor(data).sort(descending=descending, stable=True)
        np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
        _same(ours.indices, theirs.indices)


def test_sort_and_topk_return_named_pairs_that_unpack():
    x = cr.tensor([[1.0, 4.0, 2.0]])
    values, indices = x.sort()
    np.testing.assert_array_equal(values.numpy(), [[1.0, 2.0, 4.0]])
    np.testing.assert_array_equal(indices.numpy(), [[0, 2, 1]])
    top = cr.topk(x, 2)
    assert top.values.shape == top.indices.shape == (1, 2)
    assert top.indices.dtype == cr.int64
    v, i = top
    np.testing.assert_array_equal(i.numpy(), [[1, 2]])


@pytest.mark.parametrize(("k", "dim", "largest"), [(2, -1, True), (3, 0, False), (0, 1, True)])
def test_topk_picks_values_and_indices_as_torch(k, dim, largest):
    rng = np.random.default_rng(0)
    data = rng.permutation(24).reshape(4, 6).astype(np.float64)
    ours = cr.topk(cr.tensor(data), k, dim=dim, largest=largest)
    theirs = torch.topk(torch.tensor(data), k, dim=dim, largest=largest)
    _same(ours.values, theirs.values)
    _same(ours.indices, theirs.indices)


def test_topk_gradient_reaches_only_the_picked_elements():
    x = cr.tensor([[1.0, 5.0, 3.0, 4.0]], requires_grad=True)
    x.topk(2).values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 1.0, 0.0, 1.0]])


def test_topk_refuses_k_beyond_the_dim_naming_both():
    with pytest.raises(RuntimeError, match=r"k \(5\) is out of range for dim -1 of size 4"):
        cr.topk(cr.zeros(2, 4), 5)


def test_sorting_a_0d_tensor_gives_it_back_with_index_0_as_torch():
    for op in ("sort", "topk"):
        args = (1,) if op == "topk" else ()
        ours, theirs = (
            getattr(cr, op)(cr.tensor(2.5), *args),
            getattr(torch, op)(torch.tensor(2.5), *args),
        )
        assert float(ours.values) == float(theirs.values) and int(ours.indices) == int(
            theirs.indices
        )
    assert int(cr.argsort(cr.tensor(2.5))) == int(torch.argsort(torch.tensor(2.5)))


def test_sort_of_integers_keeps_their_dtype():
    _same(cr.tensor([3, 1, 2]).sort().values, torch.tensor([3, 1, 2]).sort().values)


# ---- cumsum, tril/triu, roll --------------------------------------------------------------------


@pytest.mark.parametrize("values", [[1, 2, 3], [True, False, True], [1.5, -2.0, 4.0]])
def test_cumsum_dtypes_follow_torch(values):
    _same(cr.tensor(values).cumsum(0), torch.tensor(values).cumsum(0))
    _same(
        cr.cumsum(cr.tensor(values), 0, dtype=cr.float64),
        torch.cumsum(torch.tensor(values), 0, dtype=torch.float64),
    )


def test_cumsum_of_a_0d_tensor_is_itself_with_gradient_one():
    x = cr.tensor(3.0, requires_grad=True)
    y = x.cumsum(0)
    assert y.shape == () and float(y) == 3.0
    y.backward()
    assert float(x.grad) == 1.0


def test_cumsum_refuses_a_dim_out_of_range_as_torch():
    with pytest.raises(
        IndexError,
        match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)",
    ):
        cr.zeros(2, 3).cumsum(2)


def test_tril_triu_keep_integer_and_bool_dtypes():
    ones = np.ones((3, 3), dtype=np.int64)
    _same(cr.tensor(ones).tril(), torch.tensor(ones).tril())
    _same(cr.tensor(ones.astype(bool)).triu(1), torch.tensor(ones.astype(bool)).triu(1))
    # The causal mask the GPT programs build: torch.tril(torch.ones(T, T)) == 0
    _same(cr.tril(cr.ones(4, 4)) == 0, torch.tril(torch.ones(4, 4)) == 0)


def test_tril_refuses_a_vector_naming_its_shape():
    with pytest.raises(RuntimeError, match=r"at least 2 dimensions, got shape \(3,\)"):
        cr.tril(cr.zeros(3))


def test_roll_refuses_shifts_and_dims_that_do_not_pair_up_as_torch():
    with pytest.raises(RuntimeError, match="shifts and dimensions must align. shifts: 2, dims: 1"):
        cr.roll(cr.zeros(2, 3), (1, 2), 0)
    with pytest.raises(RuntimeError, match="shifts and dimensions must align"):
        torch.roll(torch.zeros(2, 3), (1, 2), 0)


def test_roll_of_integers_matches_torch():
    data = np.arange(12).reshape(3, 4)
    _same(cr.tensor(data).roll((1, -1), (0, 1)), torch.tensor(data).roll((1, -1), (0, 1)))
    _same(cr.tensor(data).roll(5), torch.tensor(data).roll(5))


# ---- masked_fill --------------------------------------------------------------------------------


def test_masked_fill_keeps_the_input_dtype_and_broadcasts_as_torch():
    mask = [[True, False, True]]
    _same(
        cr.zeros(2, 3, dtype=cr.int64).masked_fill(cr.tensor(mask), 1.7),
        torch.zeros(2, 3, dtype=torch.int64).masked_fill(torch.tensor(mask), 1.7),
    )
    _same(
        cr.zeros(3).masked_fill(cr.ones(2, 3, dtype=cr.bool), 2.0),
        torch.zeros(3).masked_fill(torch.ones(2, 3, dtype=torch.bool), 2.0),
    )
    ours = cr.zeros(3).masked_fill(cr.tensor([True, False, True]), cr.tensor(2.0, dtype=cr.float64))
    theirs = torch.zeros(3).masked_fill(
        torch.tensor([True, False, True]), torch.tensor(2.0, dtype=torch.float64)
    )
    _same(ours, theirs)


def test_masked_fill_refuses_what_torch_refuses():
    with pytest.raises(
        RuntimeError, match="only supports boolean masks, but got mask with dtype float32"
    ):
        cr.zeros(3).masked_fill(cr.ones(3), 1.0)
    with pytest.raises(
        RuntimeError, match="0-dimensional value tensor, but got tensor with 1 dimension"
    ):
        cr.zeros(3).masked_fill(cr.ones(3, dtype=cr.bool), cr.ones(2))


def test_masked_fill_in_place_writes_into_the_tensor_and_bumps_its_version():
    x = cr.zeros(2, 3)
    version = x._version
    assert x.masked_fill_(cr.tensor([True, False, True]), -1.0) is x
    np.testing.assert_array_equal(x.numpy(), [[-1, 0, -1], [-1, 0, -1]])
    assert x._version > version


def test_masked_fill_in_place_refuses_a_mask_larger_than_the_tensor_and_a_leaf_needing_grad():
    with pytest.raises(
        RuntimeError, match=r"mask of shape \(2, 3\) does not broadcast to the shape \(3,\)"
    ):
        cr.zeros(3).masked_fill_(cr.ones(2, 3, dtype=cr.bool), 1.0)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        cr.zeros(3, requires_grad=True).masked_fill_(cr.ones(3, dtype=cr.bool), 1.0)


def test_masked_fill_in_place_in_a_graph_passes_gradient_to_unfilled_positions():
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    y.masked_fill_(cr.tensor([False, True, False]), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 2.0])


# ---- multinomial --------------------------------------------------------------------------------


def test_multinomial_with_replacement_follows_the_weights():
    cr.manual_seed(0)
    weights = cr.tensor(
        [[1.0, 2.0, 0.0, 7.0], [0.0, 0.0, 3.0, 1.0]]
    )  # unnormalised, as torch allows
    draws = cr.multinomial(weights, 20000, replacement=True)
    assert draws.shape == (2, 20000) and draws.dtype == cr.int64
    for row, expected in zip(draws.numpy(), [[0.1, 0.2, 0.0, 0.7], [0.0, 0.0, 0.75, 0.25]]):
        np.testing.assert_allclose(np.bincount(row, minlength=4) / 20000, expected, atol=0.015)


def test_multinomial_without_replacement_draws_distinct_categories_in_sequential_order():
    cr.manual_seed(1)
    weights = cr.tensor([0.5, 0.3, 0.2])
    draws = np.stack([cr.multinomial(weights, 2).numpy() for _ in range(6000)])
    assert (draws[:, 0] != draws[:, 1]).all()
    # Sequential sampling: first draw ~ weights; P(second = j | first = i) = w_j / (1 - w_i).
    np.testing.assert_allclose(
        np.bincount(draws[:, 0], minlength=3) / 6000, [0.5, 0.3, 0.2], atol=0.025
    )
    second_given_first_0 = draws[draws[:, 0] == 0, 1]
    np.testing.assert_allclose(np.mean(second_given_first_0 == 1), 0.3 / 0.5, atol=0.04)


def test_multinomial_never_draws_a_category_of_weight_zero():
    cr.manual_seed(2)
    draws = cr.multinomial(cr.tensor([0.0, 1.0, 0.0, 1e-30]), 4000, replacement=True).numpy()
    assert set(np.unique(draws)) <= {1, 3}
    assert set(cr.multinomial(cr.tensor([0.0, 2.0, 0.0, 1.0]), 2).numpy()) == {1, 3}
    # Asked for more than have weight: the weighted ones first, then the rest in order, as torch.
    ours = cr.multinomial(cr.tensor([0.5, 0.0, 0.0]), 2)
    np.testing.assert_array_equal(ours.numpy(), torch.multinomial(torch.tensor([0.5, 0.0, 0.0]), 2))


def test_multinomial_draws_from_the_seeded_default_generator_and_a_given_one():
    probs = cr.tensor([0.2, 0.3, 0.5])
    cr.manual_seed(7)
    first = cr.multinomial(probs, 5, True)
    cr.manual_seed(7)
    np.testing.assert_array_equal(first.numpy(), cr.multinomial(probs, 5, True).numpy())
    a = probs.multinomial(3, generator=cr.Generator().manual_seed(3))
    b = probs.multinomial(3, generator=cr.Generator().manual_seed(3))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.shape == (3,)


@pytest.mark.parametrize(
    ("weights", "n", "replacement", "message"),
    [
        ([0.5, -0.1], 1, True, "element < 0"),
        ([0.5, np.nan], 1, True, "`inf`, `nan`"),
        ([0.0, 0.0], 1, True, "sum of probabilities <= 0"),
        ([0.5, 0.5], 3, False, "cannot sample n_sample > prob_dist.size"),
        ([0.5, 0.5], 0, True, "cannot sample n_sample <= 0"),
    ],
)
def test_multinomial_refuses_what_torch_refuses(weights, n, replacement, message):
    with pytest.raises(RuntimeError, match=message):
        cr.multinomial(cr.tensor(weights), n, replacement)
    with pytest.raises(RuntimeError):
        torch.multinomial(torch.tensor(weights), n, replacement)


def test_multinomial_refuses_three_dims():
    with pytest.raises(RuntimeError, match=r"prob_dist must be 1 or 2 dim, got shape \(1, 1, 2\)"):
        cr.multinomial(cr.ones(1, 1, 2), 1)


# ---- randint ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "low", "high", "shape"),
    [
        ((10, (3,)), {}, 0, 10, (3,)),
        ((2, 5, (4, 2)), {}, 2, 5, (4, 2)),
        ((), {"low": 2, "high": 5, "size": (6,)}, 2, 5, (6,)),
        ((), {"high": 3, "size": (5,)}, 0, 3, (5,)),
        ((7,), {"size": (2,)}, 0, 7, (2,)),
        ((-3, 3), {"size": [2, 2]}, -3, 3, (2, 2)),
    ],
)
def test_randint_overloads_as_torch(args, kwargs, low, high, shape):
    ours, theirs = cr.randint(*args, **kwargs), torch.randint(*args, **kwargs)
    assert ours.shape == tuple(theirs.shape) == shape
    assert ours.dtype == cr.int64 and theirs.dtype == torch.int64
    values = cr.randint(low, high, (4000,)).numpy()
    assert values.min() == low and values.max() == high - 1


def test_randint_refuses_an_empty_range_as_torch():
    with pytest.raises(RuntimeError, match="from=5 >= to=5"):
        cr.randint(5, 5, (2,))
    with pytest.raises(RuntimeError, match="from=5 >= to=5"):
        torch.randint(5, 5, (2,))


def test_randint_with_dtype_and_generator():
    a = cr.randint(0, 100, (5,), dtype=cr.int32, generator=cr.Generator().manual_seed(4))
    b = cr.randint(100, (5,), generator=cr.Generator().manual_seed(4))
    assert a.dtype == cr.int32
    np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---- scaled_dot_product_attention ---------------------------------------------------------------


def test_attention_with_dropout_drops_weights_from_the_default_generator():
    q = cr.tensor(np.random.default_rng(0).standard_normal((2, 4, 3)))
    cr.manual_seed(5)
    a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    cr.manual_seed(5)
    b = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), F.scaled_dot_product_attention(q, q, q).numpy())


def test_attention_with_dropout_equals_torch_given_the_same_mask():
    """dropout is applied to the softmax weights, then the result times value (PyTorch's
    reference), checked by handing both the same mask."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    keep = rng.random((2, 3, 3)) > 0.3
    weights = TF.softmax(torch.tensor(q) @ torch.tensor(k).mT / 2.0, -1)
    expected = (weights * torch.tensor(keep) / 0.7) @ torch.tensor(v)
    original = F.dropout
    try:
        F.dropout = lambda x, p, training=True, inplace=False: x * cr.tensor(keep / (1 - p))
        ours = F.scaled_dot_product_attention(
            cr.tensor(q), cr.tensor(k), cr.tensor(v), dropout_p=0.3
        )
    finally:
        F.dropout = original
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-12)


def test_attention_refuses_a_mask_with_is_causal_and_mismatched_shapes():
    q = cr.zeros(2, 3, 4)
    with pytest.raises(
        RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"
    ):
        F.scaled_dot_product_attention(q, q, q, attn_mask=cr.ones(3, 3), is_causal=True)
    with pytest.raises(
        ValueError, match=r"query \(2, 3, 4\) and key \(2, 3, 5\) must share the last dim"
    ):
        F.scaled_dot_product_attention(q, cr.zeros(2, 3, 5), cr.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="multiple of the key's and value's 2"):
        F.scaled_dot_product_attention(
            cr.zeros(1, 3, 2, 4), cr.zeros(1, 2, 2, 4), cr.zeros(1, 2, 2, 4), enable_gqa=True
        )


def test_attention_row_with_every_key_masked_gives_zeros_and_finite_gradients_as_torch():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((3, 2)) for _ in range(3))
    mask = np.array([[True, True, False], [False, False, False], [True, False, True]])
    results = []
    for lib, fn in ((cr, F.scaled_dot_product_attention), (torch, TF.scaled_dot_product_attention)):
        tq = lib.tensor(q, requires_grad=True)
        out = fn(tq, lib.tensor(k), lib.tensor(v), attn_mask=lib.tensor(mask))
        out.sum().backward()
        results.append((out.detach().numpy(), tq.grad.numpy()))
    (ours, our_grad), (theirs, their_grad) = results
    np.testing.assert_array_equal(ours[1], 0.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(our_grad, their_grad, rtol=1e-12, atol=1e-15)


def test_new_names_are_functions_and_methods():
    for name in (
        "masked_fill",
        "tril",
        "triu",
        "roll",
        "flip",
        "cumsum",
        "sort",
        "argsort",
        "topk",
        "multinomial",
    ):
        assert callable(getattr(cr, name)), name
        assert callable(getattr(cr.zeros(2, 2), name)), name
    assert callable(cr.zeros(2).masked_fill_)
