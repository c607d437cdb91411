"""Deep and diamond-shaped graphs: no recursion limit, every node processed once, and backward time
linear in the number of nodes."""

import gc
import math
import sys
import time

import numpy as np

import chainrule as cr
from chainrule import explain


def chain(x, n, factor=1.0):
    y = x
    for _ in range(n):
        y = y * factor
    return y


def test_backward_through_a_100000_node_chain_has_no_recursion_error():
    assert sys.getrecursionlimit() < 100_000  # so the test means something
    x = cr.tensor(0.7, dtype=cr.float64, requires_grad=True)
    c = math.exp(1e-5)
    y = chain(x, 100_000, c)
    y.backward()
    # d/dx (x c^n) = c^n = e^(n 1e-5) = e, up to n float64 roundings in the product.
    np.testing.assert_allclose(x.grad.item(), math.e, rtol=1e-10)
    np.testing.assert_allclose(y.item(), 0.7 * math.e, rtol=1e-10)


def test_second_order_through_a_50000_node_chain():
    x = cr.tensor(0.3, dtype=cr.float64, requires_grad=True)
    y = x
    for _ in range(25_000):
        y = y * 1.0 + 0.0  # two nodes per step
    (g,) = cr.grad(y * y, x, create_graph=True)  # d/dx x^2 = 2x
    (h,) = cr.grad(g, x)
    assert g.item() == 0.6 and h.item() == 2.0


def test_dropping_an_unused_100000_node_graph_does_not_overflow_the_stack():
    x = cr.tensor(0.5, dtype=cr.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = cr.sin(y)
    del y  # frees the whole chain of nodes, one holding the next


class CountingDouble(cr.autograd.Function):
    """2x, counting how often its backward runs."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, grad_output):
        CountingDouble.calls += 1
        return grad_output * 2.0


def test_ladder_of_50_diamonds_gives_2_to_the_50_exactly_processing_each_node_once():
    # Each rung: two branches from y joined by a sum. The gradient doubles per rung (2^50 paths),
    # which a walk that revisits shared nodes per path could not finish.
    x = cr.tensor(1.0, dtype=cr.float64, requires_grad=True)
    hook_calls = []
    y = x
    CountingDouble.calls = 0
    for rung in range(50):
        left = CountingDouble.apply(y) * 0.5
        right = y * 1.0
        y = left + right
        y.register_hook(lambda g, rung=rung: hook_calls.append(rung))
    assert y.item() == 2.0**50
    y.backward()
    assert x.grad.item() == 2.0**50
    assert CountingDouble.calls == 50, "each custom node's backward must run exactly once"
    assert sorted(hook_calls) == list(range(50)), "each joined node must be processed once"


def test_ladder_of_50_diamonds_with_create_graph_gives_exact_second_order():
    x = cr.tensor(1.5, dtype=cr.float64, requires_grad=True)
    y = x
    for _ in range(50):
        y = y * 1.0 + y * 1.0  # y = 2^k x
    (g,) = cr.grad(y * x, x, create_graph=True)  # d/dx 2^50 x^2 = 2^51 x
    (h,) = cr.grad(g, x)
    assert g.item() == 2.0**51 * 1.5
    assert h.item() == 2.0**51


def _backward_seconds(n):
    x = cr.tensor(0.5, dtype=cr.float64, requires_grad=True)
    y = chain(x, n)
    gc.disable()  # time the walk, not collections that the allocations happen to trigger
    try:
        start = time.perf_counter()
        y.backward()
        return time.perf_counter() - start
    finally:
        gc.enable()


def test_backward_time_grows_linearly_with_the_number_of_nodes():
    # Best of three, so that a busy machine inflates neither side much. A 4x longer chain should
    # take about 4x as long; quadratic work would take 16x. The bound leaves room for noise.
    small = min(_backward_seconds(20_000) for _ in range(3))
    large = min(_backward_seconds(80_000) for _ in range(3))
    assert large / small < 9, f"backward: 20k nodes {small:.4f}s, 80k nodes {large:.4f}s"


def _deep_mlp(layers=333, width=8):
    """About 1,000 graph nodes: tanh(h @ W + 0.1) per layer, as bench/bench_explain.py builds."""
    cr.manual_seed(0)
    h = cr.randn(16, width)
    weights = []
    for k in range(layers):
        w = (cr.randn(width, width) * (1 / width**0.5)).requires_grad_(True)
        w.name = f"W{k + 1}"
        weights.append(w)
        h = cr.tanh(h @ w + 0.1)
    loss = (h**2).mean()
    loss.name = "loss"
    return loss, weights


def test_a_1000_node_graph_is_explained_and_drawn_without_dot_in_bounded_time(
    tmp_path, without_dot
):
    loss, weights = _deep_mlp()
    start = time.process_time()
    derivation = explain.paths(loss, weights[0])
    drawing = explain.graph(derivation.recorded, highlight=weights[0])
    svg = drawing.save(tmp_path / "g.svg").read_text()
    elapsed = time.process_time() - start
    assert len(derivation.recorded.op_vertices()) >= 1000 and drawing.grouped
    # one box per layer (its matmul, add and tanh, with its weight; the last one's chain runs on
    # to the loss's square), and the loss
    for name in ("matmul1 … tanh1", "matmul332 … tanh332", "loss"):
        assert f">{name}<" in svg, name
    assert svg.count(">3 ops, 64 parameters<") == 332
    # bench/bench_explain.py holds the 2 s target on a quiet machine (about 1.3 s here). This
    # counts CPU time, which other work on a busy machine inflates less than the clock, and
    # its bound only catches a layout that has gone quadratic.
    assert elapsed < 6, f"explain + draw without dot: {elapsed:.2f} s of CPU time"
