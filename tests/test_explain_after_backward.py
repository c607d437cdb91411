"""Explaining a graph after a plain backward() (no retain_graph): paths, graph, symbolic and reports
show the values the forward computed and the gradients the backward produced, bit for bit, and say
in one line what to do where the graph no longer holds what they need. Backward keeps no more
memory for this than before: intermediates are still freed, and big constants are kept only while
something else holds them.

Oracle: the same program run with backward(retain_graph=True), whose graph keeps everything, and
the leaves' .grad from the plain backward itself."""

import gc
import weakref

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import explain, lesson
from chainrule.engine.op import SMALL_CONSTANT_BYTES
from chainrule.explain.recorded import Recorded

# ---- the programs ---------------------------------------------------------------------------------


def readme_model():
    loss, t = lesson.slides_model()
    return loss, [t["b"], t["w1"], t["w2"]]


def lesson_network():
    p = lesson.known_parameters(b3=0.0, requires_grad=lesson.PARAMETERS)
    return lesson.named_ssr(p), [p[name] for name in lesson.PARAMETERS]


def linear_mlp():
    """nn.Linear layers on a batch bigger than SMALL_CONSTANT_BYTES: the graph keeps the batch
    only weakly, and the program (like any training loop) still holds it."""
    cr.manual_seed(0)
    model = cr.nn.Sequential(cr.nn.Linear(20, 16), cr.nn.Tanh(), cr.nn.Linear(16, 3))
    x = cr.randn(64, 20)
    assert x._data.nbytes > SMALL_CONSTANT_BYTES
    y = cr.randint(0, 3, (64,))
    loss = F.cross_entropy(model(x), y)
    linear_mlp.held = (x, y)
    return loss, list(model.parameters())


def shared_subexpressions():
    """h is used three times and a*b twice: gradients from several paths meet and are summed."""
    a = cr.tensor([0.3, -1.2, 2.0], dtype=cr.float64, requires_grad=True, name="a")
    b = cr.tensor([1.5, 0.25, -0.5], dtype=cr.float64, requires_grad=True, name="b")
    c = cr.tensor([2.0, -1.0, 0.5], dtype=cr.float64, name="c")
    ab = a * b
    h = cr.tanh(ab)
    loss = (h * h + h * c + cr.exp(ab) * h).sum()
    return loss, [a, b]


PROGRAMS = [readme_model, lesson_network, linear_mlp, shared_subexpressions]


def _state(loss):
    """Every vertex's kind, name, value and gradient, as the explainer reads them."""
    return [
        (v.kind, v.name, v.value, v.grad, None if v.value is None else np.asarray(v.value).dtype)
        for v in Recorded(loss).vertices
    ]


def _assert_same_bits(freed, kept):
    assert len(freed) == len(kept)
    for (kind, name, value, grad, dtype), (kind2, name2, value2, grad2, dtype2) in zip(freed, kept):
        assert (kind, name, dtype) == (kind2, name2, dtype2)
        np.testing.assert_array_equal(value, value2, strict=True)
        if grad is None or grad2 is None:
            assert grad is grad2, name
        else:
            np.testing.assert_array_equal(grad, grad2, strict=True)


# ---- the same values and gradients as a retained graph ----------------------------------------------


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_values_and_gradients_after_plain_backward_equal_a_retained_run_bit_for_bit(program):
    kept_loss, _ = program()
    kept_loss.backward(retain_graph=True)
    kept = _state(kept_loss)
    freed_loss, leaves = program()
    freed_loss.backward()
    assert freed_loss.grad_fn.saved is None, "the plain backward must have freed the graph"
    freed = _state(freed_loss)
    _assert_same_bits(freed, kept)
    # ... and each leaf's gradient is exactly the .grad the plain backward produced.
    by_leaf = {id(v.tensor): v.grad for v in Recorded(freed_loss).vertices if v.kind == "leaf"}
    for leaf in leaves:
        np.testing.assert_array_equal(by_leaf[id(leaf)], leaf.grad._data, strict=True)


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_paths_and_graph_after_plain_backward_read_as_with_a_retained_graph(program):
    kept_loss, kept_leaves = program()
    kept_loss.backward(retain_graph=True)
    freed_loss, freed_leaves = program()
    freed_loss.backward()
    for kept_leaf, freed_leaf in zip(kept_leaves, freed_leaves):
        kept_text = str(explain.paths(kept_loss, kept_leaf, max_paths=4))
        assert str(explain.paths(freed_loss, freed_leaf, max_paths=4)) == kept_text
    kept_drawing = explain.graph(kept_loss, highlight=kept_leaves[0]).source
    assert explain.graph(freed_loss, highlight=freed_leaves[0]).source == kept_drawing


@pytest.mark.parametrize(
    "program, which",
    [(readme_model, slice(None)), (lesson_network, slice(-1, None))],
    ids=["readme_model", "lesson_network_b3"],
)
def test_symbolic_after_plain_backward_agrees_with_the_backward(program, which):
    loss, leaves = program()
    loss.backward()
    leaves = leaves[which]  # the lesson's b3 alone: SymPy takes long over all seven
    result = explain.symbolic(loss, leaves)
    for leaf in leaves:
        assert result.agree[leaf.name]
        assert float(result.values[leaf.name]) == pytest.approx(leaf.grad.item(), rel=1e-12)


def test_report_after_plain_backward_holds_the_derivation_graph_symbolic_and_trace(tmp_path):
    loss, leaves = readme_model()
    loss.backward()
    trace = explain.Trace()
    trace.record(loss, {leaf.name: leaf for leaf in leaves}, lr=0.1)
    derivation = explain.paths(loss, leaves[1])
    path = explain.write_report(
        tmp_path / "report.html",
        derivations=[derivation],
        symbolic=explain.symbolic(loss, leaves),
        graph=explain.graph(loss, highlight=leaves[1]),
        trace=trace,
    )
    page = path.read_text()
    assert str(derivation).splitlines()[0] in page
    assert "-3.6" in page and "SymPy" in page


def test_explaining_after_backward_leaves_grad_alone_and_a_second_backward_still_refuses():
    loss, leaves = readme_model()
    loss.backward()
    before = [leaf.grad._data.copy() for leaf in leaves]
    explain.paths(loss, leaves)
    explain.graph(loss)
    for leaf, grad in zip(leaves, before):
        np.testing.assert_array_equal(leaf.grad._data, grad)
    with pytest.raises(RuntimeError, match="second time.*freed.*retain_graph=True"):
        loss.backward()


def test_explaining_after_a_backward_that_freed_part_of_the_graph():
    """backward(inputs=[w1]) frees only the nodes on the way to w1; the rest keep their values."""
    kept_loss, _ = lesson_network()
    kept_loss.backward(retain_graph=True)
    loss, leaves = lesson_network()
    w1 = leaves[0]
    loss.backward(inputs=[w1])
    nodes = [v.node for v in Recorded(loss).op_vertices()]
    assert any(n.saved is None for n in nodes) and any(n.saved is not None for n in nodes)
    _assert_same_bits(_state(loss), _state(kept_loss))


def test_hooks_apply_to_the_explained_gradient_as_to_backward():
    loss, leaves = readme_model()
    leaves[1].register_hook(lambda g: g * 10)
    loss.backward()
    assert explain.paths(loss, leaves[1]).value.item() == leaves[1].grad.item() == -36.0


# ---- random ops: dropout's mask is a constant of the graph ---------------------------------------


def _dropout_program(shape):
    cr.manual_seed(3)
    w = cr.tensor(np.linspace(-1, 1, shape[-1]), dtype=cr.float64, requires_grad=True, name="w")
    x = cr.tensor(np.linspace(0.5, 2, int(np.prod(shape))).reshape(shape), dtype=cr.float64)
    loss = (F.dropout(cr.tanh(x * w), p=0.5) ** 2).sum()
    return loss, w


def test_a_small_dropout_mask_is_kept_and_explained_bit_for_bit():
    kept_loss, _ = _dropout_program((3, 4))
    kept_loss.backward(retain_graph=True)
    loss, w = _dropout_program((3, 4))
    loss.backward()
    _assert_same_bits(_state(loss), _state(kept_loss))
    np.testing.assert_array_equal(explain.paths(loss, w).value, w.grad._data)


def test_a_big_dropout_mask_is_not_kept_and_explaining_says_to_retain_the_graph():
    loss, w = _dropout_program((64, 32))
    loss.backward()
    with pytest.raises(explain.GraphError) as info:
        explain.paths(loss, w)
    message = str(info.value)
    assert "\n" not in message
    assert "mul's constant input 'a' (shape (64, 32)) was freed by backward()" in message
    assert "retain_graph=True" in message and "dropout mask" in message
    loss, w = _dropout_program((64, 32))
    loss.backward(retain_graph=True)
    np.testing.assert_array_equal(explain.paths(loss, w).value, w.grad._data)


# ---- what the freed graph holds ----------------------------------------------------------------


def test_a_big_constant_nothing_else_holds_is_freed_by_backward():
    w = cr.tensor(np.ones(600), requires_grad=True)
    big = cr.tensor(np.arange(600.0))
    data = weakref.ref(big._data)
    loss = (w * big).sum()
    del big
    gc.collect()
    assert data() is not None, "before backward the graph holds its constants"
    loss.backward()
    gc.collect()
    assert data() is None, "after backward the graph must not hold a big constant"


def test_a_small_constant_nothing_else_holds_is_kept_for_explaining():
    w = cr.tensor([1.0, 2.0], dtype=cr.float64, requires_grad=True, name="w")
    loss = (w * cr.tensor([3.0, -4.0], dtype=cr.float64, name="scale")).sum()
    loss.backward()
    gc.collect()
    d = explain.paths(loss, w)
    np.testing.assert_array_equal(d.value, [3.0, -4.0])
    assert "scale" in str(d)


def test_a_small_slice_of_a_big_array_is_explained_without_keeping_the_big_array():
    big = np.arange(20000.0).reshape(2000, 10)
    base = weakref.ref(big)
    w = cr.tensor(np.full(10, 0.5), dtype=cr.float64, requires_grad=True, name="w")
    loss = (w * cr.as_tensor(big)[3]).sum()
    del big
    loss.backward()
    gc.collect()
    assert base() is None, "a kept slice must not keep the array it was cut from"
    np.testing.assert_array_equal(explain.paths(loss, w).value, np.arange(30.0, 40.0))


def test_intermediates_are_still_freed_by_a_backward_with_the_explainer_imported():
    x = cr.tensor(np.linspace(0, 1, 5), dtype=cr.float64, requires_grad=True)
    hidden = cr.sin(x)
    ref = weakref.ref(hidden)
    loss = (hidden * hidden).sum()
    del hidden
    loss.backward()
    gc.collect()
    assert ref() is None
    np.testing.assert_array_equal(explain.paths(loss, x).value, x.grad._data)


# ---- what cannot be explained any more, said in one line ----------------------------------------


def test_a_leaf_updated_by_an_optimizer_step_since_the_forward_is_named():
    loss, leaves = readme_model()
    loss.backward()
    cr.optim.SGD(leaves, lr=0.1).step()
    with pytest.raises(explain.GraphError) as info:
        explain.paths(loss, leaves[1])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("explain: w1 (shape ()) was modified in place after mul used it")
    assert "optimizer step" in message and "explain before changing it" in message


def test_a_constant_changed_in_place_since_the_forward_is_named():
    loss, t = lesson.slides_model()
    loss.backward()
    t["x1"].add_(1.0)
    with pytest.raises(explain.GraphError, match=r"x1 \(shape \(\)\) was modified in place after"):
        explain.graph(loss)


def test_a_custom_function_after_backward_says_its_ctx_was_freed():
    class Square(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = cr.tensor([1.0, 2.0], dtype=cr.float64, requires_grad=True)
    loss = Square.apply(x).sum()
    loss.backward()
    gc.collect()
    with pytest.raises(explain.GraphError, match=r"Square's constant input 'ctx' \(FunctionCtx\)"):
        explain.paths(loss, x)
    loss = Square.apply(x).sum()
    loss.backward(retain_graph=True)
    np.testing.assert_array_equal(explain.paths(loss, x).value, [2.0, 4.0])
