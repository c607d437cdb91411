"""The autograd contract of API.md, "Autograd", checked against PyTorch: accumulation, retain_graph,
non-scalar backward, cr.grad, grad modes, hooks, custom Functions, detect_anomaly, gradcheck and the
freeing of saved values."""

import gc
import inspect
import weakref

import numpy as np
import pytest
import torch
from conftest import Cube, Exp, TorchCube, TorchExp, assert_close

import chainrule as cr

X = np.array([0.5, -1.25, 2.0])
W = np.array([1.5, 0.25, -0.75])


def leaves(*arrays):
    """float64 leaves of the same data in both libraries."""
    ours = [cr.tensor(a, dtype=cr.float64, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    return ours, theirs


# ---- accumulation -----------------------------------------------------------------------------


def test_leaf_grads_accumulate_across_backward_calls_like_pytorch():
    (x, w), (tx, tw) = leaves(X, W)
    for lib, a, b in ((cr, x, w), (torch, tx, tw)):
        (lib.tanh(a * b) ** 2).sum().backward()
        (a * a * b).sum().backward()
        lib.exp(b).sum().backward()  # reaches only b
    assert_close(x.grad, tx.grad, "x.grad after three backward calls")
    assert_close(w.grad, tw.grad, "w.grad after three backward calls")


def test_grad_of_a_leaf_used_twice_in_one_expression_is_the_sum_over_paths():
    x = cr.tensor(3.0, dtype=cr.float64, requires_grad=True)
    (x * x + x).backward()
    assert x.grad.item() == 2 * 3.0 + 1


def test_non_leaf_grad_stays_none_after_backward():
    (x,), _ = leaves(X)
    hidden = x * 2.0
    (hidden * hidden).sum().backward()
    assert hidden.grad is None
    assert not hidden.is_leaf and x.is_leaf


def test_retain_grad_keeps_the_gradient_of_a_non_leaf_like_pytorch():
    (x,), (tx,) = leaves(X)
    hidden, t_hidden = cr.sin(x), torch.sin(tx)
    hidden.retain_grad()
    t_hidden.retain_grad()
    (hidden * hidden * 3.0).sum().backward()
    (t_hidden * t_hidden * 3.0).sum().backward()
    assert_close(hidden.grad, t_hidden.grad, "retained non-leaf grad")
    assert_close(x.grad, tx.grad, "leaf grad")


def test_second_backward_without_retain_graph_says_to_pass_retain_graph():
    (x,), _ = leaves(X)
    loss = (cr.exp(x) * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True") as info:
        loss.backward()
    assert "second time" in str(info.value)


def test_second_backward_with_retain_graph_accumulates_twice_like_pytorch():
    (x,), (tx,) = leaves(X)
    loss, t_loss = (cr.exp(x) * x).sum(), (torch.exp(tx) * tx).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    t_loss.backward(retain_graph=True)
    t_loss.backward()
    assert_close(x.grad, tx.grad, "grad after two backward passes through one graph")


def test_backward_on_a_non_scalar_without_gradient_names_the_shape():
    (x,), _ = leaves(X)
    with pytest.raises(RuntimeError, match=r"scalar.*\(3,\)"):
        (x * 2.0).backward()


def test_backward_with_gradient_argument_is_a_vector_jacobian_product_like_pytorch():
    (x,), (tx,) = leaves(X)
    v = np.array([1.0, -2.0, 0.5])
    (cr.sin(x) * x).backward(gradient=cr.tensor(v, dtype=cr.float64))
    (torch.sin(tx) * tx).backward(gradient=torch.tensor(v))
    assert_close(x.grad, tx.grad, "backward(gradient=v)")


def test_backward_with_inputs_accumulates_only_into_those_like_pytorch():
    (x, w), (tx, tw) = leaves(X, W)
    results = []
    for lib, a, b in ((cr, x, w), (torch, tx, tw)):
        hidden = lib.sin(a) * b
        loss = (hidden * hidden).sum()
        loss.backward(inputs=[a, hidden], retain_graph=True)
        hidden_grad = hidden.grad.detach().numpy().copy()
        loss.backward(inputs=a)
        results.append((a.grad, b.grad, hidden_grad))
    (ag, bg, hg), (tag, tbg, thg) = results
    assert bg is None and tbg is None
    assert_close(ag, tag, "x.grad after two backward(inputs=...)")
    assert_close(hg, thg, "non-leaf input's grad")


def test_autograd_backward_of_several_tensors_with_their_gradients_like_pytorch():
    (x, w), (tx, tw) = leaves(X, W)
    v = np.array([1.0, -2.0, 0.5])
    cr.autograd.backward([cr.sin(x) * w, (x * x).sum()], [cr.tensor(v, dtype=cr.float64), None])
    torch.autograd.backward([torch.sin(tx) * tw, (tx * tx).sum()], [torch.tensor(v), None])
    assert_close(x.grad, tx.grad, "x.grad")
    assert_close(w.grad, tw.grad, "w.grad")
    with pytest.raises(RuntimeError, match="1 gradients for 2 tensors"):
        cr.autograd.backward([x * 2.0, x * 3.0], [cr.ones(3, dtype=cr.float64)])


# ---- cr.grad ------------------------------------------------------------------------------------


def test_grad_returns_a_tuple_and_leaves_dot_grad_alone():
    (x, w), (tx, tw) = leaves(X, W)
    ours = cr.grad((cr.tanh(x * w)).sum(), [x, w])
    theirs = torch.autograd.grad(torch.tanh(tx * tw).sum(), [tx, tw])
    assert isinstance(ours, tuple) and len(ours) == 2
    assert_close(ours[0], theirs[0], "d/dx")
    assert_close(ours[1], theirs[1], "d/dw")
    assert x.grad is None and w.grad is None


def test_grad_with_grad_outputs_like_pytorch():
    (x,), (tx,) = leaves(X)
    v = np.array([0.5, 3.0, -1.0])
    (ours,) = cr.grad(x * x * x, x, grad_outputs=cr.tensor(v, dtype=cr.float64))
    (theirs,) = torch.autograd.grad(tx * tx * tx, tx, grad_outputs=torch.tensor(v))
    assert_close(ours, theirs, "grad with grad_outputs")


def test_grad_of_an_unused_input_is_an_error_naming_allow_unused():
    (x, w), _ = leaves(X, W)
    with pytest.raises(RuntimeError, match="allow_unused=True") as info:
        cr.grad((x * 2.0).sum(), [x, w])
    assert "input 1" in str(info.value)


def test_grad_with_allow_unused_gives_none_for_the_unused_input_like_pytorch():
    (x, w), (tx, tw) = leaves(X, W)
    ours = cr.grad((x * 2.0).sum(), [x, w], allow_unused=True)
    theirs = torch.autograd.grad((tx * 2.0).sum(), [tx, tw], allow_unused=True)
    assert ours[1] is None and theirs[1] is None
    assert_close(ours[0], theirs[0], "used input")


# ---- grad modes ---------------------------------------------------------------------------------


def test_no_grad_context_records_nothing_and_enable_grad_inside_it_records_again():
    (x,), _ = leaves(X)
    with cr.no_grad():
        off = x * 2.0
        with cr.enable_grad():
            on = x * 2.0
        off_again = x * 2.0
    after = x * 2.0
    assert not off.requires_grad and off.grad_fn is None
    assert on.requires_grad and on.grad_fn is not None
    assert not off_again.requires_grad
    assert after.requires_grad
    assert cr.is_grad_enabled()


def test_no_grad_and_enable_grad_as_decorators():
    (x,), _ = leaves(X)

    @cr.no_grad()
    def without(t):
        return t * 2.0

    @cr.enable_grad()
    def with_grad(t):
        return t * 2.0

    assert not without(x).requires_grad
    with cr.no_grad():
        assert with_grad(x).requires_grad
        assert not cr.is_grad_enabled()  # the decorator restored the outer mode
    assert cr.is_grad_enabled()


def test_no_grad_and_enable_grad_as_bare_decorators_like_pytorch():
    (x,), (tx,) = leaves(X)
    results = []
    for lib, leaf in ((cr, x), (torch, tx)):

        @lib.no_grad
        def without(t):
            return t * 2.0

        @lib.enable_grad
        def with_grad(t):
            return t * 2.0

        with lib.no_grad():
            enabled = with_grad(leaf).requires_grad
        results.append((without(leaf).requires_grad, enabled))
    assert results[0] == results[1] == (False, True)


def test_set_grad_enabled_as_a_plain_call_switches_the_mode_like_pytorch():
    try:
        cr.set_grad_enabled(False)
        torch.set_grad_enabled(False)
        assert cr.is_grad_enabled() == torch.is_grad_enabled() is False
        (x,), _ = leaves(X)
        assert not (x * 2.0).requires_grad
    finally:
        cr.set_grad_enabled(True)
        torch.set_grad_enabled(True)
    assert cr.is_grad_enabled()


def test_grad_mode_is_restored_when_the_body_raises():
    with pytest.raises(ZeroDivisionError):
        with cr.no_grad():
            raise ZeroDivisionError("inside no_grad")
    assert cr.is_grad_enabled()

    @cr.no_grad()
    def failing():
        raise KeyError("boom")

    with pytest.raises(KeyError):
        failing()
    assert cr.is_grad_enabled()


def test_set_grad_enabled_switches_both_ways_and_nests():
    (x,), _ = leaves(X)
    with cr.set_grad_enabled(False):
        assert not (x * 2.0).requires_grad
        with cr.set_grad_enabled(True):
            assert (x * 2.0).requires_grad
        assert not (x * 2.0).requires_grad
    assert (x * 2.0).requires_grad

    @cr.set_grad_enabled(False)
    def without(t):
        return t * 2.0

    assert not without(x).requires_grad


# ---- hooks --------------------------------------------------------------------------------------


def test_hooks_observe_and_replace_gradients_on_leaves_and_non_leaves_like_pytorch():
    (x,), (tx,) = leaves(X)
    seen, t_seen = [], []
    results = []
    for lib, leaf, log in ((cr, x, seen), (torch, tx, t_seen)):
        leaf.register_hook(lambda g, log=log: log.append(g.detach().numpy().copy()))
        hidden = lib.sin(leaf) * 3.0
        hidden.register_hook(lambda g: g * 10.0)  # replaces the gradient flowing on from here
        out = hidden * hidden
        out.register_hook(lambda g, log=log: log.append(g.detach().numpy().copy()))
        out.sum().backward()
        results.append(leaf.grad)
    assert len(seen) == len(t_seen) == 2
    for ours, theirs in zip(seen, t_seen, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert_close(results[0], results[1], "leaf grad after a replacing hook")


def test_leaf_hook_replacing_the_gradient_changes_what_accumulates_like_pytorch():
    (x,), (tx,) = leaves(X)
    x.register_hook(lambda g: g + 1.0)
    tx.register_hook(lambda g: g + 1.0)
    (x * x).sum().backward()
    (tx * tx).sum().backward()
    assert_close(x.grad, tx.grad, "leaf grad through a replacing leaf hook")


def test_removed_hook_no_longer_runs():
    (x,), _ = leaves(X)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1))
    handle.remove()
    (x * x).sum().backward()
    assert calls == []


# ---- custom Function ----------------------------------------------------------------------------


def _scale(lib):
    class Scale(lib.autograd.Function):
        """x * k with a Python-number k, which gets no gradient (backward returns None for it)."""

        @staticmethod
        def forward(ctx, x, k):
            ctx.k = k
            return x * k

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output * ctx.k, None

    return Scale


Scale, TorchScale = _scale(cr), _scale(torch)


class FirstTimesSecond(cr.autograd.Function):
    """a * b whose backward declines to give b a gradient, though b requires one."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        return grad_output * b, None


class TorchFirstTimesSecond(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        return grad_output * b, None


def test_custom_function_forward_and_gradient_match_pytorch():
    (x,), (tx,) = leaves(X)
    y, ty = Exp.apply(x), TorchExp.apply(tx)
    assert_close(y, ty, "Exp.apply forward")
    assert y.grad_fn is not None and not y.is_leaf
    (y * cr.sin(x)).sum().backward()
    (ty * torch.sin(tx)).sum().backward()
    assert_close(x.grad, tx.grad, "grad through a custom Function")


def test_custom_function_with_a_non_tensor_argument_returning_none_like_pytorch():
    (x,), (tx,) = leaves(X)
    Scale.apply(x, 2.5).sum().backward()
    TorchScale.apply(tx, 2.5).sum().backward()
    assert_close(x.grad, tx.grad, "grad of x * k")


def test_custom_function_returning_none_for_a_tensor_leaves_its_grad_none_like_pytorch():
    (a, b), (ta, tb) = leaves(X, W)
    FirstTimesSecond.apply(a, b).sum().backward()
    TorchFirstTimesSecond.apply(ta, tb).sum().backward()
    assert_close(a.grad, ta.grad, "a.grad")
    assert tb.grad is None
    assert b.grad is None


def test_custom_function_backward_returning_the_wrong_number_of_gradients_is_an_error():
    class TooFew(cr.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output

    (a, b), _ = leaves(X, W)
    with pytest.raises(RuntimeError, match="returned 1 gradients but forward took 2"):
        TooFew.apply(a, b).sum().backward()


def test_custom_function_input_changed_in_place_after_saving_is_refused_like_pytorch():
    (x,), (tx,) = leaves(X)
    hidden, t_hidden = x * 2.0, tx * 2.0
    out, t_out = Cube.apply(hidden), TorchCube.apply(t_hidden)
    hidden.add_(1.0)
    t_hidden.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        t_out.sum().backward()
    with pytest.raises(RuntimeError, match=r"saved tensor 0 of Cube.*modified in place"):
        out.sum().backward()


@pytest.mark.parametrize("under_no_grad", [False, True])
def test_custom_function_output_it_saved_changed_in_place_is_refused_like_pytorch(under_no_grad):
    (x,), (tx,) = leaves(X)
    out, t_out = Exp.apply(x * 1.0), TorchExp.apply(tx * 1.0)
    with cr.set_grad_enabled(not under_no_grad), torch.set_grad_enabled(not under_no_grad):
        out.mul_(2.0)
        t_out.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        t_out.sum().backward()
    with pytest.raises(RuntimeError, match=r"output of Exp was modified in place"):
        out.sum().backward()


def test_mark_non_differentiable_gives_an_output_without_grad_like_pytorch():
    results = []
    for lib in (cr, torch):

        class Positive(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                result = (x > 0).double()
                ctx.mark_non_differentiable(result)
                return result

            @staticmethod
            def backward(ctx, grad_output):
                return None

        x = lib.tensor(X, dtype=lib.float64, requires_grad=True)
        out = Positive.apply(x)
        results.append((out.requires_grad, out.grad_fn is None, out.tolist()))
    assert results[0] == results[1]


# ---- detect_anomaly -----------------------------------------------------------------------------


def test_detect_anomaly_names_sqrt_and_this_file_and_line_for_an_infinite_gradient():
    x = cr.tensor([0.0, 4.0], dtype=cr.float64, requires_grad=True)
    with np.errstate(divide="ignore"), cr.detect_anomaly():
        line = inspect.currentframe().f_lineno + 1
        root = cr.sqrt(x)
        with pytest.raises(cr.AnomalyError) as info:
            root.sum().backward()
    message = str(info.value)
    assert "sqrt" in message and "inf" in message
    assert f"test_autograd.py:{line}" in message


def test_detect_anomaly_names_log_and_its_line_when_a_nan_appears_downstream_of_zero():
    x = cr.tensor([0.0, 1.0], dtype=cr.float64, requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"), cr.detect_anomaly():
        line = inspect.currentframe().f_lineno + 1
        logs = cr.log(x)
        masked = logs * cr.tensor([0.0, 1.0], dtype=cr.float64)
        with pytest.raises(cr.AnomalyError) as info:
            masked.sum().backward()
    message = str(info.value)
    assert "log" in message and "nan" in message
    assert f"test_autograd.py:{line}" in message


def test_detect_anomaly_names_a_custom_function_whose_backward_returns_nan():
    class NanBackward(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output * float("nan")

    x = cr.tensor([1.0], dtype=cr.float64, requires_grad=True)
    with cr.detect_anomaly():
        line = inspect.currentframe().f_lineno + 1
        out = NanBackward.apply(x)
        with pytest.raises(cr.AnomalyError) as info:
            (out * 3.0).sum().backward()
    message = str(info.value)
    assert "NanBackward" in message and "nan" in message
    assert f"test_autograd.py:{line}" in message


def test_detect_anomaly_also_checks_a_backward_recorded_with_create_graph():
    x = cr.tensor([1.0, 4.0], dtype=cr.float64, requires_grad=True)
    with np.errstate(divide="ignore"), cr.detect_anomaly():
        line = inspect.currentframe().f_lineno + 1
        root = cr.sqrt(x - 1.0)
        with pytest.raises(cr.AnomalyError) as info:
            cr.grad(root.sum(), x, create_graph=True)
    assert "sqrt" in str(info.value) and f"test_autograd.py:{line}" in str(info.value)


def test_without_detect_anomaly_the_same_nan_flows_into_grad_as_in_pytorch():
    x = cr.tensor([0.0, 1.0], dtype=cr.float64, requires_grad=True)
    tx = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        (cr.log(x) * cr.tensor([0.0, 1.0], dtype=cr.float64)).sum().backward()
    (torch.log(tx) * torch.tensor([0.0, 1.0], dtype=torch.float64)).sum().backward()
    assert_close(x.grad, tx.grad, "nan-carrying grad")


# ---- gradcheck ----------------------------------------------------------------------------------


def test_gradcheck_is_true_for_correct_functions():
    cr.manual_seed(0)
    a = cr.randn(3, 4, dtype=cr.float64, requires_grad=True)
    b = cr.randn(4, dtype=cr.float64, requires_grad=True)
    assert cr.gradcheck(lambda p, q: cr.tanh(p @ q) * cr.sigmoid(q.sum()), (a, b))
    assert cr.gradcheck(Exp.apply, (b,))
    assert cr.gradgradcheck(lambda p, q: cr.tanh(p @ q), (a, b))
    assert cr.gradgradcheck(Exp.apply, (b,))


def test_gradcheck_perturbs_inputs_whose_memory_is_not_c_ordered():
    x = cr.tensor(np.asfortranarray(np.arange(12.0).reshape(3, 4) / 7), requires_grad=True)
    assert not x._data.flags.c_contiguous  # a flat view of it would be a copy
    assert cr.gradcheck(lambda t: (t * t).sum(0) * t[0], (x,))


def test_gradcheck_restores_the_input_when_the_function_raises():
    x = cr.tensor([0.5, 1.5], dtype=cr.float64, requires_grad=True)
    calls = []

    def fails_on_the_second_perturbation(t):
        calls.append(1)
        if len(calls) == 3:  # the analytic pass, then the first numeric evaluation
            raise ArithmeticError("boom")
        return cr.sin(t)

    with pytest.raises(ArithmeticError):
        cr.gradcheck(fails_on_the_second_perturbation, (x,))
    assert x.detach().tolist() == [0.5, 1.5]


def test_gradcheck_handles_empty_inputs_constants_and_outputs_without_grad():
    empty = cr.zeros(0, dtype=cr.float64, requires_grad=True)
    x = cr.tensor([0.3, 0.7], dtype=cr.float64, requires_grad=True)
    constant = cr.tensor([1.0, 2.0], dtype=cr.float64)
    assert cr.gradcheck(lambda e, a: (e * e).sum() + (a * a).sum(), (empty, x))
    assert cr.gradcheck(lambda a, c, k: (a * c * k, a > 0.5), (x, constant, 3.0))
    # A step function: no gradient anywhere, so nothing of second order to check either.
    assert cr.gradgradcheck(lambda a: (a > 0.5).double(), (x,))


class WrongExp(cr.autograd.Function):
    """exp whose backward is off by 10%: what gradcheck exists to catch."""

    @staticmethod
    def forward(ctx, x):
        result = cr.exp(x)
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        (result,) = ctx.saved_tensors
        return grad_output * result * 1.1


def test_gradcheck_on_a_wrong_backward_names_input_index_analytic_and_numeric():
    x = cr.tensor([0.3, -0.2], dtype=cr.float64, requires_grad=True)
    w = cr.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=cr.float64, requires_grad=True)
    with pytest.raises(cr.GradcheckError) as info:
        cr.gradcheck(lambda a, b: (a * 2.0) @ WrongExp.apply(b), (x, w))
    message = str(info.value)
    # The first wrong entry: d out[0] / d w[0, 0] = 2 x[0] exp(w[0, 0]); analytic is 1.1 times it.
    true_value = 2 * 0.3 * np.exp(1.0)
    assert "input 1" in message and "index (0, 0)" in message
    analytic = float(message.split("analytic ")[1].split()[0])
    numeric = float(message.split("numeric ")[1].split()[0])
    np.testing.assert_allclose(analytic, 1.1 * true_value, rtol=1e-9)
    np.testing.assert_allclose(numeric, true_value, rtol=1e-6)


def test_gradgradcheck_catches_a_backward_whose_own_derivative_is_wrong():
    class DetachedExp(cr.autograd.Function):
        # First derivative right, but computed from a detached value: its derivative is zero.
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return cr.exp(x)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * cr.exp(x.detach())

    x = cr.tensor([0.3, -0.2], dtype=cr.float64, requires_grad=True)
    assert cr.gradcheck(DetachedExp.apply, (x,))
    with pytest.raises(cr.GradcheckError, match=r"input 0 at index \(\d,\).*analytic.*numeric"):
        cr.gradgradcheck(DetachedExp.apply, (x,))


# ---- saved values are freed ---------------------------------------------------------------------


def _graph_with_a_saved_intermediate():
    x = cr.tensor(X, dtype=cr.float64, requires_grad=True)
    hidden = cr.sin(x)  # mul below saves it: each factor is the other's derivative
    loss = (hidden * hidden).sum()
    return loss, weakref.ref(hidden)


def test_saved_intermediate_is_freed_by_backward():
    loss, hidden = _graph_with_a_saved_intermediate()
    gc.collect()
    assert hidden() is not None, "the graph must hold the intermediate before backward"
    loss.backward()
    gc.collect()
    assert hidden() is None, "backward without retain_graph must drop what the graph saved"


def test_saved_intermediate_survives_backward_with_retain_graph():
    loss, hidden = _graph_with_a_saved_intermediate()
    loss.backward(retain_graph=True)
    gc.collect()
    assert hidden() is not None
    loss.backward()
    gc.collect()
    assert hidden() is None


@pytest.mark.parametrize("retain_graph", [False, True])
def test_output_array_an_op_saved_is_freed_by_backward_unless_retained(retain_graph):
    x = cr.tensor(X, dtype=cr.float64, requires_grad=True)
    e = cr.exp(x)  # exp's derivative is its output, so its node keeps the output array
    array = weakref.ref(e._data)
    loss = (e * 2.0).sum()
    del e
    gc.collect()
    assert array() is not None
    loss.backward(retain_graph=retain_graph)
    gc.collect()
    assert (array() is not None) == retain_graph


def test_custom_function_saved_tensors_are_freed_by_backward():
    x = cr.tensor(X, dtype=cr.float64, requires_grad=True)
    hidden = x * 2.0
    out = FirstTimesSecond.apply(hidden, x)
    ref = weakref.ref(hidden)
    del hidden
    loss = out.sum()
    gc.collect()
    assert ref() is not None
    loss.backward()
    gc.collect()
    assert ref() is None


# ---- custom Function with several outputs --------------------------------------------------------


def _sin_cos(lib):
    class SinCos(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return lib.sin(x), lib.cos(x)

        @staticmethod
        def backward(ctx, grad_sin, grad_cos):
            (x,) = ctx.saved_tensors
            return grad_sin * lib.cos(x) - grad_cos * lib.sin(x)

    return SinCos


SinCos, TorchSinCos = _sin_cos(cr), _sin_cos(torch)


def test_function_with_several_outputs_matches_pytorch_to_second_order():
    data = np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]])
    x, tx = cr.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    s, c = SinCos.apply(x)
    ts, tc = TorchSinCos.apply(tx)
    assert s.shape == (2, 3) and c.shape == (2, 3)
    loss, tloss = (s * 3 + c**2).sum(), (ts * 3 + tc**2).sum()
    (g,) = cr.grad(loss, x, create_graph=True)
    (tg,) = torch.autograd.grad(tloss, tx, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy(), rtol=1e-12)
    (h,) = cr.grad((g * g).sum(), x)
    (th,) = torch.autograd.grad((tg * tg).sum(), tx)
    np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-10)


def test_an_unused_output_of_a_function_gets_a_zero_gradient():
    data = np.array([0.5, -1.5])
    x, tx = cr.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    SinCos.apply(x)[1].sum().backward()  # only cos is used: backward sees zeros for sin
    TorchSinCos.apply(tx)[1].sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


class ExpAndDouble(cr.autograd.Function):
    """Two outputs, one of them saved for backward."""

    @staticmethod
    def forward(ctx, x):
        e = cr.exp(x)
        ctx.save_for_backward(e)
        return e, x * 2

    @staticmethod
    def backward(ctx, grad_e, grad_double):
        (e,) = ctx.saved_tensors
        return grad_e * e + grad_double * 2


def test_a_saved_output_of_a_several_output_function_is_differentiable():
    x = cr.tensor([0.2, -0.3], dtype=cr.float64, requires_grad=True)
    e, d = ExpAndDouble.apply(x)
    (g,) = cr.grad((e + d).sum(), x, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), np.exp([0.2, -0.3]) + 2, rtol=1e-12)
    (h,) = cr.grad(g.sum(), x)  # d/dx (exp(x) + 2) = exp(x), through the saved output
    np.testing.assert_allclose(h.numpy(), np.exp([0.2, -0.3]), rtol=1e-12)


def test_function_outputs_of_mixed_dtypes_are_refused():
    class Mixed(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x.float()

        @staticmethod
        def backward(ctx, a, b):
            return a

    with pytest.raises(TypeError, match="one float dtype"):
        Mixed.apply(cr.tensor([1.0], dtype=cr.float64, requires_grad=True))


def test_a_leaf_grad_does_not_alias_the_gradient_passed_to_backward():
    for make_seed in (lambda a: cr.tensor(a), lambda a: a):  # a Tensor, or a NumPy array
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        seed = make_seed(np.array([3.0, 4.0], dtype=np.float32))
        x.backward(seed)  # the gradient reaches the leaf unchanged
        (seed._data if isinstance(seed, cr.Tensor) else seed)[0] = 99.0
        np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
