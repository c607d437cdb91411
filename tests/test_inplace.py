"""In-place rules (API.md "Autograd"), as PyTorch's version counter enforces them: a saved
tensor changed in place makes the following backward refuse; a leaf that requires grad may change
only under no_grad; on a non-leaf in a graph the result and gradients are PyTorch's."""

import numpy as np
import pytest
import torch
from conftest import assert_close

import chainrule as cr

X = np.array([1.0, -2.0, 0.5])

# Each in-place op with an argument that works for both libraries, as (name, call).
INPLACE = [
    ("add_", lambda t, lib: t.add_(1.5)),
    ("sub_", lambda t, lib: t.sub_(0.25)),
    ("mul_", lambda t, lib: t.mul_(3.0)),
    ("zero_", lambda t, lib: t.zero_()),
    ("fill_", lambda t, lib: t.fill_(2.0)),
    ("copy_", lambda t, lib: t.copy_(lib.tensor([4.0, 5.0, 6.0], dtype=lib.float64))),
]
NAMES = [name for name, _ in INPLACE]
CALLS = [call for _, call in INPLACE]


def leaf(lib):
    return lib.tensor(X, dtype=lib.float64, requires_grad=True)


@pytest.mark.parametrize("modify", CALLS, ids=NAMES)
def test_changing_a_tensor_a_graph_saved_raises_at_backward_naming_the_op(modify):
    x = leaf(cr)
    hidden = x * 2.0
    loss = (hidden * hidden).sum()  # mul saves hidden: each factor is the other's derivative
    modify(hidden, cr)
    with pytest.raises(RuntimeError, match=r"mul saved for backward.*modified in place"):
        loss.backward()


@pytest.mark.parametrize("modify", CALLS, ids=NAMES)
def test_pytorch_also_refuses_the_same_backward(modify):
    # The oracle for the test above: this is PyTorch's rule, not one of ours.
    x = leaf(torch)
    hidden = x * 2.0
    loss = (hidden * hidden).sum()
    modify(hidden, torch)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_changing_an_output_its_op_saved_raises_at_backward_like_pytorch():
    x, tx = leaf(cr), leaf(torch)
    e, te = cr.exp(x), torch.exp(tx)  # exp's derivative is its own output
    e.add_(1.0)
    te.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        te.sum().backward()
    with pytest.raises(RuntimeError, match=r"output of exp was modified in place"):
        e.sum().backward()


@pytest.mark.parametrize("name,modify", INPLACE, ids=NAMES)
def test_changing_a_leaf_that_requires_grad_raises_at_the_call(name, modify):
    x = leaf(cr)
    with pytest.raises(
        RuntimeError, match=rf"{name[:-1]}.*leaf tensor that requires grad.*no_grad"
    ):
        modify(x, cr)
    np.testing.assert_array_equal(x.detach().numpy(), X)  # and nothing changed


@pytest.mark.parametrize("modify", CALLS, ids=NAMES)
def test_changing_a_leaf_under_no_grad_works_in_place_like_pytorch(modify):
    x, tx = leaf(cr), leaf(torch)
    data = x._data
    with cr.no_grad():
        assert modify(x, cr) is x
    with torch.no_grad():
        modify(tx, torch)
    assert_close(x, tx, "value after the in-place change")
    assert x._data is data, "the change must happen in the tensor's own memory"
    assert x.is_leaf and x.requires_grad and x.grad_fn is None


def test_optimizer_style_update_under_no_grad_matches_pytorch_sgd_steps():
    x, tx = leaf(cr), leaf(torch)
    for _ in range(3):
        for lib, p in ((cr, x), (torch, tx)):
            loss = (lib.sin(p) * p).sum()
            loss.backward()
            with lib.no_grad():
                p.sub_(p.grad * 0.1)
                p.grad.zero_()
    assert_close(x, tx, "parameters after three SGD steps")


@pytest.mark.parametrize("modify", CALLS, ids=NAMES)
def test_changing_a_non_leaf_gives_pytorchs_values_and_gradients(modify):
    results = []
    for lib in (cr, torch):
        x = leaf(lib)
        hidden = x * 3.0  # multiplication by a number saves nothing of hidden's input
        modify(hidden, lib)
        out = hidden * x + lib.sin(hidden)
        out.sum().backward()
        results.append((out, x.grad, hidden.requires_grad, hidden.is_leaf))
    (out, grad, requires, is_leaf), (t_out, t_grad, t_requires, t_is_leaf) = results
    assert_close(out, t_out, "output after the in-place change")
    assert_close(grad, t_grad, "x.grad through the in-place change")
    assert (requires, is_leaf) == (t_requires, t_is_leaf)


def test_in_place_ops_with_tensor_operands_on_a_non_leaf_match_pytorch():
    results = []
    for lib in (cr, torch):
        x = leaf(lib)
        w = lib.tensor([0.5, -3.0, 2.0], dtype=lib.float64, requires_grad=True)
        hidden = x * 3.0
        hidden.mul_(w)
        hidden.add_(w, alpha=2.0)
        hidden.sub_(x)
        (hidden * x).sum().backward()
        results.append((x.grad, w.grad))
    assert_close(results[0][0], results[1][0], "x.grad")
    assert_close(results[0][1], results[1][1], "w.grad")


def test_copy_of_a_tensor_that_requires_grad_into_a_plain_buffer_records_like_pytorch():
    results = []
    for lib in (cr, torch):
        w = lib.tensor([0.5, -3.0, 2.0], dtype=lib.float64, requires_grad=True)
        buffer = lib.zeros(3, dtype=lib.float64)
        buffer.copy_(w * 2.0)
        (buffer * buffer).sum().backward()
        results.append((buffer.requires_grad, buffer.is_leaf, w.grad))
    assert results[0][:2] == results[1][:2] == (True, False)
    assert_close(results[0][2], results[1][2], "w.grad through copy_")


def test_fill_on_a_non_leaf_holding_inf_gives_the_fill_value_and_pytorchs_gradient():
    results = []
    for lib in (cr, torch):
        x = lib.tensor([1.0, 1000.0], dtype=lib.float64, requires_grad=True)
        with np.errstate(over="ignore", invalid="ignore"):
            hidden = lib.exp(x) * 1.0  # exp(1000) overflows to inf
            hidden.fill_(2.0)
            (
                hidden * x
            ).sum().backward()  # the zero sent back into exp meets inf: NaN, as in PyTorch
        results.append((hidden, x.grad))
    np.testing.assert_array_equal(results[0][0].detach().numpy(), [2.0, 2.0])
    assert_close(results[0][0], results[1][0], "filled value")
    assert_close(results[0][1], results[1][1], "x.grad")
