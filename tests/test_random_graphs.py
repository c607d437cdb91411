"""Hypothesis-generated expression graphs, compared whole against PyTorch.

A program is a list of steps over leaves of shapes that broadcast together ((), (4,), (1, 4),
(3, 1), (3, 4)); each step applies an elementwise op, a broadcasting binary op, a reduction with
keepdim, a matrix product or a shape round trip to earlier nodes, chosen so that nodes are often
used by several later ones (diamonds). The same program runs in chainrule and in PyTorch (float64):
values of every node, every leaf's gradient of a weighted sum of the last nodes, and second order
(the gradient of a random linear functional of those gradients, through create_graph=True) must
agree. `derandomize=True` keeps the examples the same from run to run.
"""

import numpy as np
import torch
from conftest import assert_close
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import chainrule as cr

SHAPES = [(), (4,), (1, 4), (3, 1), (3, 4)]


def _full(m, x):
    return m.broadcast_to(x, (3, 4))


def _reducible_dims(x):
    return [d for d in range(x.ndim) if x.shape[d] > 1]


_OFFSETS = np.arange(12.0).reshape(3, 4) * 0.01


def _untied(m, x):
    """x plus distinct small offsets: a node broadcast from one value holds exact ties, and which
    entries tie after rounding differs between libraries, so max's tie split would too."""
    return x + m.tensor(_OFFSETS.reshape(-1)[: x.numel()].reshape(x.shape), dtype=x.dtype)


def _keepdim_reduction(name):
    def apply(m, x):
        dims = _reducible_dims(x)
        if not dims:  # nothing to reduce (0-d or all sizes 1): a scaling keeps the step useful
            return x * 1.5
        return getattr(x, name)(dims[-1], keepdim=True)

    return apply


UNARY = {
    "tanh": lambda m, x: m.tanh(x),
    "sigmoid": lambda m, x: x.sigmoid(),
    "sin": lambda m, x: m.sin(x),
    "cos": lambda m, x: x.cos(),
    "softplus": lambda m, x: m.nn.functional.softplus(x),
    "gelu": lambda m, x: m.nn.functional.gelu(x),
    "square": lambda m, x: x * x,
    "soft_sqrt": lambda m, x: m.sqrt(x * x + 1.0),
    "log1p_square": lambda m, x: m.log1p(x * x),
    "exp_tanh": lambda m, x: m.exp(m.tanh(x)),
    "neg_scale": lambda m, x: 0.25 - 0.5 * x,
    "pow": lambda m, x: (x * x + 1.0) ** 1.5,
    "abs": lambda m, x: x.abs(),
    "sum_keepdim": _keepdim_reduction("sum"),
    "mean_keepdim": _keepdim_reduction("mean"),
    "amax_keepdim": lambda m, x: _keepdim_reduction("amax")(m, _untied(m, x)),
    "logsumexp_keepdim": _keepdim_reduction("logsumexp"),
    "var_keepdim": _keepdim_reduction("var"),
    "sum_all": lambda m, x: x.sum(),
    "norm_all": lambda m, x: m.norm(x * x + 0.1),
    "softmax": lambda m, x: _full(m, x).softmax(1),
    "log_softmax": lambda m, x: m.log_softmax(_full(m, x), 0),
    "transpose_reshape": lambda m, x: _full(m, x).T.reshape(3, 4),
    "index_repeat": lambda m, x: _full(m, x)[[0, 2, 2]],
    "slice_cat": lambda m, x: m.cat([_full(m, x)[1:], _full(m, x)[:1] * 2.0], 0),
    "unsqueeze_sum": lambda m, x: x.unsqueeze(0).sum(0),
    "prod_keepdim": _keepdim_reduction("prod"),
    "std_keepdim": _keepdim_reduction("std"),
    "clamp": lambda m, x: x.clamp(-0.5, 0.8),
    "relu": lambda m, x: m.relu(x - 0.1),
    "masked_sum": lambda m, x: x[x > 0.2].sum() + x * 0.5,
    "split_cat": lambda m, x: m.cat(_full(m, x).split([1, 3], 1)[::-1], 1),
    "cross_entropy": lambda m, x: m.nn.functional.cross_entropy(
        _full(m, x), m.tensor([0, 3, 1]), label_smoothing=0.1
    ),
    "bce_logits": lambda m, x: m.nn.functional.binary_cross_entropy_with_logits(
        x, m.sigmoid(x * 0.3)
    ),
    "norm3_keepdim": lambda m, x: m.norm(_full(m, x), p=3, dim=1, keepdim=True),
}
BINARY = {
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "mul": lambda m, a, b: a * b,
    "safe_div": lambda m, a, b: a / (1.0 + b * b),
    "maximum": lambda m, a, b: m.maximum(a, b),
    "where": lambda m, a, b: m.where(a > b, a, b * 2.0),
    "stack_mean": lambda m, a, b: m.stack([_full(m, a), _full(m, b)]).mean(0),
    "matmul": lambda m, a, b: (_full(m, a) @ _full(m, b).mT) @ _full(m, a) * 0.1,
    "einsum": lambda m, a, b: m.einsum("ij,kj->ik", _full(m, a), _full(m, b)) @ _full(m, b) * 0.1,
}
OPS = sorted(UNARY) + sorted(BINARY)


@st.composite
def programs(draw):
    n_leaves = draw(st.integers(1, 3))
    shapes = [draw(st.sampled_from(SHAPES)) for _ in range(n_leaves)]
    steps = []
    for k in range(draw(st.integers(2, 10))):
        available = n_leaves + k
        name = draw(st.sampled_from(OPS))
        arity = 2 if name in BINARY else 1
        # Operands lean towards the newest nodes, so that nodes are reused and diamonds form.
        recent = st.integers(max(0, available - 3), available - 1)
        operands = tuple(
            draw(st.one_of(recent, st.integers(0, available - 1))) for _ in range(arity)
        )
        steps.append((name, operands))
    seed = draw(st.integers(0, 2**16))
    return shapes, steps, seed


def run(m, program, leaves):
    """All node values of the program in library m, leaves first."""
    _, steps, _ = program
    nodes = list(leaves)
    for name, operands in steps:
        fn = BINARY.get(name) or UNARY[name]
        nodes.append(fn(m, *[nodes[i] for i in operands]))
    return nodes


def _loss(m, nodes, weights):
    """A weighted sum over the last three nodes (every leaf may reach it through several paths)."""
    total = 0.0
    for node, w in zip(nodes[-3:], weights, strict=False):
        total = total + (node * w).sum()
    return total


def _grad_or_zeros(g, like):
    if g is None:
        return np.zeros(like.shape)
    return g


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(programs())
def test_random_graph_values_gradients_and_second_order_match_pytorch(program):
    check_program(program)


def check_program(program):
    shapes, steps, seed = program
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    ours_leaves = [cr.tensor(a, requires_grad=True) for a in arrays]
    theirs_leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours, theirs = run(cr, program, ours_leaves), run(torch, program, theirs_leaves)
    for k, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        assert_close(o, t, f"node {k} of {steps}", rtol=1e-9)

    weights = [float(w) for w in rng.uniform(-1.5, 1.5, 3)]
    loss_ours, loss_theirs = _loss(cr, ours, weights), _loss(torch, theirs, weights)
    g_ours = cr.grad(loss_ours, ours_leaves, create_graph=True, allow_unused=True)
    g_theirs = torch.autograd.grad(loss_theirs, theirs_leaves, create_graph=True, allow_unused=True)
    for k, (a, e) in enumerate(zip(g_ours, g_theirs, strict=True)):
        assert_close(
            _grad_or_zeros(a, arrays[k]),
            _grad_or_zeros(e, arrays[k]),
            f"gradient of leaf {k} in {steps}",
            dtype=np.float64,
            rtol=1e-9,
        )

    vs = [rng.standard_normal(s) for s in shapes]
    pairs_ours = [(g, v) for g, v in zip(g_ours, vs, strict=True) if g is not None]
    pairs_theirs = [(g, v) for g, v in zip(g_theirs, vs, strict=True) if g is not None]
    s_ours = sum((g * cr.tensor(v)).sum() for g, v in pairs_ours if g.requires_grad)
    s_theirs = sum((g * torch.tensor(v)).sum() for g, v in pairs_theirs if g.requires_grad)
    if not isinstance(s_theirs, torch.Tensor):
        assert not isinstance(s_ours, cr.Tensor), f"only chainrule's gradient is recorded: {steps}"
        return
    gg_theirs = torch.autograd.grad(s_theirs, theirs_leaves, allow_unused=True)
    if not isinstance(s_ours, cr.Tensor):
        expected = [
            np.zeros(s) if e is None else e.detach().numpy()
            for e, s in zip(gg_theirs, shapes, strict=True)
        ]
        for k, e in enumerate(expected):
            assert_close(np.zeros(shapes[k]), e, f"second order of leaf {k} in {steps}")
        return
    gg_ours = cr.grad(s_ours, ours_leaves, allow_unused=True)
    for k, (a, e) in enumerate(zip(gg_ours, gg_theirs, strict=True)):
        assert_close(
            _grad_or_zeros(a, arrays[k]),
            _grad_or_zeros(e, arrays[k]),
            f"second-order gradient of leaf {k} in {steps}",
            dtype=np.float64,
            rtol=1e-9,
        )


@settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(programs())
def test_random_graph_values_and_gradients_match_pytorch_in_float32(program):
    shapes, steps, seed = program
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours_leaves = [cr.tensor(a, requires_grad=True) for a in arrays]
    theirs_leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours, theirs = run(cr, program, ours_leaves), run(torch, program, theirs_leaves)
    # Errors of a few float32 ulps per step compound along a chain of up to ten steps.
    tolerance = {"rtol": 1e-4, "atol": None}
    for k, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        assert_close(o, t, f"float32 node {k} of {steps}", **tolerance)
    weights = [float(w) for w in rng.uniform(-1.5, 1.5, 3)]
    g_ours = cr.grad(_loss(cr, ours, weights), ours_leaves, allow_unused=True)
    g_theirs = torch.autograd.grad(_loss(torch, theirs, weights), theirs_leaves, allow_unused=True)
    for k, (a, e) in enumerate(zip(g_ours, g_theirs, strict=True)):
        assert_close(
            _grad_or_zeros(a, arrays[k]),
            _grad_or_zeros(e, arrays[k]),
            f"float32 gradient of leaf {k} in {steps}",
            dtype=np.float32,
            **tolerance,
        )


def _uses(program):
    _, steps, _ = program
    counts = {}
    for _, operands in steps:
        for i in set(operands):
            counts[i] = counts.get(i, 0) + 1
    return counts


def test_generator_makes_graphs_with_reused_nodes():
    """Hypothesis can find a program with a node feeding three later steps and a leaf used twice."""
    program = find(
        programs(),
        lambda p: (
            max(_uses(p).values(), default=0) >= 3
            and any(_uses(p).get(i, 0) >= 2 for i in range(len(p[0])))
        ),
        settings=settings(derandomize=True, max_examples=500, database=None),
    )
    assert max(_uses(program).values()) >= 3


def test_ladder_of_diamonds_matches_pytorch():
    """A fixed program that is nothing but reuse: each rung uses the previous node twice."""
    steps = [("mul", (0, 1)), ("tanh", (2,))]
    for _ in range(6):
        k = len(steps) + 1
        steps += [("add", (k, k)), ("safe_div", (k + 1, k)), ("sin", (k + 2,))]
    check_program(([(3, 4), (1, 4)], steps, 5))
