"""`cr.explain.count_multiplications`: the counts of the backward pass, of every path multiplied out
on its own, and of forward mode, checked against brute force. On scalar programs, three naive
differentiators (reverse mode, explicit path enumeration, one forward pass per parameter) count
each multiplication they do; on array programs, the scalar graph is spelled out from the engine's
own vector-Jacobian products (one one-hot gradient per output element) and every scalar path is
enumerated. Each brute force also checks that it gets the engine's gradient, so it is a real
differentiator and not a restatement of the count."""

import math
import random

import numpy as np
import pytest

import chainrule as cr
from chainrule import lesson
from chainrule.engine.op import declared_ops
from chainrule.explain import GraphError, count_multiplications
from chainrule.explain.counts import _MOVING, _MULTILINEAR
from chainrule.explain.recorded import Recorded, Vertex

# ---- scalar programs and three naive differentiators ------------------------------------------


class Naive:
    """A scalar with the local derivative of each input it was made from."""

    def __init__(self, value, parents=(), parameter=False):
        self.value = value
        self.parents = list(parents)  # (Naive, local derivative)
        self.parameter = parameter

    @property
    def differentiable(self):
        return self.parameter or any(p.differentiable for p, _ in self.parents)


# op: (chainrule function, naive value, naive local derivatives)
SCALAR_OPS = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, lambda a, b: (1.0, 1.0)),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, lambda a, b: (1.0, -1.0)),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, lambda a, b: (b, a)),
    "tanh": (cr.tanh, math.tanh, lambda a: (1 - math.tanh(a) ** 2,)),
    "square": (lambda a: a**2, lambda a: a * a, lambda a: (2 * a,)),
}


def random_program(seed, n_params=3, n_consts=2, n_steps=8):
    """The same random scalar program in chainrule tensors and in Naive scalars: parameters,
    constants, then steps that each take earlier values (so values are shared)."""
    rng = random.Random(seed)
    tensors, naives = [], []
    params = []
    for k in range(n_params):
        v = rng.uniform(-1, 1)
        t = cr.tensor(v, dtype=cr.float64, requires_grad=True, name=f"p{k}")
        params.append((t, Naive(v, parameter=True)))
        tensors.append(t)
        naives.append(params[-1][1])
    for _ in range(n_consts):
        v = rng.uniform(-1, 1)
        tensors.append(cr.tensor(v, dtype=cr.float64))
        naives.append(Naive(v))
    for _ in range(n_steps):
        name = rng.choice(sorted(SCALAR_OPS))
        fn, value, local = SCALAR_OPS[name]
        arity = 1 if name in ("tanh", "square") else 2
        picks = [rng.randrange(len(tensors)) for _ in range(arity)]
        # Lean towards the latest values, so that the program is deep as well as wide.
        picks[0] = max(picks[0], len(tensors) - 2)
        args = [naives[k].value for k in picks]
        naive = Naive(value(*args), zip([naives[k] for k in picks], local(*args), strict=True))
        tensors.append(fn(*[tensors[k] for k in picks]))
        naives.append(naive)
    # The output adds a parameter, so that it always depends on one.
    t, n = params[rng.randrange(n_params)]
    out = Naive(naives[-1].value + n.value, [(naives[-1], 1.0), (n, 1.0)])
    return tensors[-1] + t, out, params


def ancestors(out):
    """Every differentiable Naive the output was made from, inputs before the values made from
    them."""
    order, seen = [], set()

    def visit(n):
        if id(n) in seen or not n.differentiable:
            return
        seen.add(id(n))
        for p, _ in n.parents:
            visit(p)
        order.append(n)

    visit(out)
    return order


def naive_reverse(out):
    order = ancestors(out)
    grad = {id(out): 1.0}
    multiplications = 0
    for n in reversed(order):
        for p, local in n.parents:
            if p.differentiable:
                grad[id(p)] = grad.get(id(p), 0.0) + grad[id(n)] * local
                multiplications += 1
    return grad, multiplications


def naive_paths(out):
    """Every path from the output to a parameter, listed, then each multiplied out from the
    seed on its own."""
    listed = []
    stack = [(out, [])]
    while stack:
        n, locals_ = stack.pop()
        if n.parameter:
            listed.append((n, locals_))
            continue
        for p, local in n.parents:
            if p.differentiable:
                stack.append((p, locals_ + [local]))
    grad, multiplications = {}, 0
    for param, locals_ in listed:
        product = 1.0
        for local in locals_:
            product *= local
            multiplications += 1
        grad[id(param)] = grad.get(id(param), 0.0) + product
    return grad, multiplications, len(listed)


def naive_forward(out, parameters):
    order = ancestors(out)
    grad, multiplications = {}, 0
    for param in parameters:
        tangent = {id(param): 1.0}
        for n in order:
            if n is param:
                continue
            terms = []
            for p, local in n.parents:
                if id(p) in tangent:
                    terms.append(local * tangent[id(p)])
                    multiplications += 1
            if terms:
                tangent[id(n)] = sum(terms)
        grad[id(param)] = tangent.get(id(out), 0.0)
    return grad, multiplications


@pytest.mark.parametrize("seed", range(40))
def test_scalar_counts_equal_naive_differentiators_counting_their_own_multiplications(seed):
    out, naive_out, params = random_program(seed)
    counts = count_multiplications(out)
    reached = [(t, n) for t, n in params if any(n is a for a in ancestors(naive_out))]
    engine = cr.autograd.grad(out, [t for t, _ in reached])

    grad, multiplications = naive_reverse(naive_out)
    assert counts.backward == multiplications
    path_grad, path_multiplications, path_count = naive_paths(naive_out)
    assert (counts.paths, counts.path_count) == (path_multiplications, path_count)
    forward_grad, forward_multiplications = naive_forward(naive_out, [n for _, n in reached])
    assert counts.forward == forward_multiplications
    assert counts.parameters == len(reached)
    for (_, n), g in zip(reached, engine, strict=True):
        for differentiator in (grad, path_grad, forward_grad):
            assert differentiator[id(n)] == pytest.approx(g.item(), rel=1e-9, abs=1e-12)


def test_scalar_programs_cover_shared_values_and_repeated_paths():
    """The seeds above include programs where paths share steps (backward beats paths)."""
    wins = 0
    for seed in range(40):
        counts = count_multiplications(random_program(seed)[0])
        wins += counts.backward < counts.paths
    assert wins >= 10


# ---- array programs, spelled out scalar by scalar ---------------------------------------------


def scalar_jacobians(recorded):
    """For each edge a gradient flows along: (consumer, producer, J) with J[c, u] = d consumer_c /
    d producer_u, from the engine's backward with a one-hot gradient per output element."""
    edges = []
    for v in recorded.op_vertices():
        for i, item in v.inputs:
            if not (isinstance(item, Vertex) and item.differentiable):
                continue
            if v.node.op.derivatives[i] is None:
                continue
            size_out, size_in = np.size(v.value), np.size(item.value)
            J = np.zeros((size_out, size_in))
            for c in range(size_out):
                onehot = np.zeros(size_out)
                onehot[c] = 1.0
                back = recorded.apply_edge(v, i, onehot.reshape(np.shape(v.value)))
                J[c] = np.ravel(back)
            edges.append((v, item, J))
    return edges


def brute_force(output):
    """Backward, path and forward-mode counts from the spelled-out scalar graph; each checked to
    give the engine's gradient."""
    recorded = Recorded(output)
    edges = scalar_jacobians(recorded)
    leaves = [v for v in recorded.vertices if v.kind == "leaf"]
    backward = sum(int(np.count_nonzero(J)) for _, _, J in edges)

    # every scalar path, enumerated: (vertex, element, product so far, length so far)
    into = {}
    for v, u, J in edges:
        into.setdefault(v, []).append((u, J))
    grads = {v: np.zeros(np.size(v.value)) for v in leaves}
    path_count = path_multiplications = 0
    stack = [(recorded.output, c, 1.0, 0) for c in range(np.size(recorded.output.value))]
    while stack:
        v, c, product, length = stack.pop()
        if v.kind == "leaf":
            grads[v][c] += product
            path_count += 1
            path_multiplications += length
            continue
        for u, J in into.get(v, []):
            for k in np.flatnonzero(J[c]):
                stack.append((u, k, product * J[c, k], length + 1))
    for v in leaves:
        np.testing.assert_allclose(grads[v], np.ravel(v.grad), rtol=1e-9, atol=1e-12)

    # forward mode: one dense tangent pass per scalar parameter, through the explicit Jacobians
    forward = 0
    order = recorded.op_vertices()
    for leaf in leaves:
        for k in range(np.size(leaf.value)):
            tangent = {leaf: np.eye(np.size(leaf.value))[k]}
            for v in order:
                for u, J in into.get(v, []):
                    if u in tangent:
                        tangent[v] = tangent.get(v, 0.0) + J @ tangent[u]
                        forward += int(np.count_nonzero(J))
            assert tangent[recorded.output].item() == pytest.approx(
                np.ravel(leaf.grad)[k], rel=1e-9, abs=1e-12
            )
    return backward, path_multiplications, path_count, forward


def _linear_layer():
    cr.manual_seed(1)
    layer = cr.nn.Linear(3, 2)
    x, target = cr.randn(4, 3, dtype=cr.float64), cr.randn(4, 2, dtype=cr.float64)
    layer.double()
    return cr.nn.functional.mse_loss(layer(x), target)


def _two_layers():
    cr.manual_seed(2)
    net = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.Tanh(), cr.nn.Linear(4, 2)).double()
    x, target = cr.randn(2, 3, dtype=cr.float64), cr.randn(2, 2, dtype=cr.float64)
    return cr.nn.functional.mse_loss(net(x), target)


def _matmul_and_moves():
    rng = np.random.default_rng(3)
    a = cr.tensor(rng.normal(size=(2, 3)), requires_grad=True)
    b = cr.tensor(rng.normal(size=(3, 2)), requires_grad=True)
    bias = cr.tensor(rng.normal(size=(2,)), requires_grad=True)
    h = (a @ b + bias).tanh()
    moved = cr.cat([h.T.reshape(-1), h[0]]) * h.sum(0).mean()
    return (moved**2).sum()


def _lesson_ssr():
    # The brute force finds a Jacobian's entries by their values, so no dosage is 0 here (at
    # dosage 0, dx1/dw1 is 0 although the edge is there).
    p = lesson.known_parameters(0.0, requires_grad=lesson.PARAMETERS)
    dosage = cr.tensor([0.1, 0.5, 0.9], dtype=cr.float64)
    observed = cr.tensor(lesson.EFFICACY, dtype=cr.float64)
    return ((observed - lesson.predict(dosage, p)) ** 2).sum()


@pytest.mark.parametrize(
    "program",
    [lesson.slides_model, _lesson_ssr, _linear_layer, _two_layers, _matmul_and_moves],
    ids=["slides", "lesson", "linear_layer", "two_layers", "matmul_and_moves"],
)
def test_array_counts_equal_brute_force_over_every_scalar_path(program):
    out = program()
    if isinstance(out, tuple):
        out = out[0]
    counts = count_multiplications(out)
    assert (counts.backward, counts.paths, counts.path_count, counts.forward) == brute_force(out)


def test_a_linear_layer_of_many_neurons_backward_costs_its_matrix_products():
    cr.manual_seed(0)
    layer = cr.nn.Linear(64, 32)
    x, target = cr.randn(16, 64), cr.randn(16, 32)
    counts = count_multiplications(cr.nn.functional.mse_loss(layer(x), target))
    weight_product = 16 * 32 * 64  # g.mT @ x: (32, 16) @ (16, 64)
    elementwise = 16 * 32  # per output element: the bias, the difference, the square's two, mean
    assert counts.backward == weight_product + 5 * elementwise
    assert counts.parameters == 32 * 64 + 32
    assert counts.forward > 1000 * counts.backward > counts.paths


def test_the_slides_model_shares_dloss_dyhat_between_its_three_parameters():
    loss, _ = lesson.slides_model()
    counts = count_multiplications(loss)
    # edges: Loss-(yhat - y), (yhat - y)-yhat, yhat-(b + a1), yhat-a2, (b + a1)-b, (b + a1)-a1,
    # a1-w1, a2-w2; the paths to b, w1, w2 have 4, 5 and 4 edges
    assert (counts.backward, counts.paths, counts.path_count, counts.forward) == (8, 13, 3, 13)
    text = str(counts)
    assert "backward pass           8 multiplications" in text
    assert "3 paths, each multiplied out" in text and "3 passes, one per parameter" in text


def test_counts_name_the_op_that_has_no_counting_rule():
    x = cr.tensor([[1.0, 2.0, 3.0]], requires_grad=True, name="scores")
    loss = cr.softmax(x, dim=1).sum()
    with pytest.raises(GraphError, match=r"no counting rule for softmax \(at softmax1\)"):
        count_multiplications(loss)


def test_counting_rules_name_ops_that_exist():
    # cat, einsum and conv2d declare their ops when first used
    a = cr.ones(2, 2)
    cr.cat([a, a])
    cr.einsum("ij,jk->ik", a, a)
    cr.nn.functional.conv2d(cr.ones(1, 1, 3, 3), cr.ones(1, 1, 2, 2))
    names = {op.name for op in declared_ops()}
    assert _MULTILINEAR | _MOVING <= names


def test_counts_in_the_report_are_a_table_of_their_own(tmp_path):
    loss, _ = lesson.slides_model()
    counts = count_multiplications(loss)
    page = cr.explain.write_report(
        tmp_path / "r.html", multiplications=[("The slides' model", counts)]
    ).read_text()
    assert "Calculate once and use many times" in page
    assert page.count('<table class="chainrule-counts">') == 1
    assert "<td>backward pass</td><td>8</td>" in page


def test_a_ladder_of_diamonds_doubles_the_paths_at_each_rung_and_not_the_backward_pass():
    x = cr.tensor(0.7, dtype=cr.float64, requires_grad=True, name="x")
    h = x
    for _ in range(30):
        h = cr.sin(h) + cr.cos(h)
    counts = count_multiplications(h)
    # each rung: two ways through (sin or cos), two edges each way
    assert counts.path_count == 2**30 == cr.explain.paths(h, x, max_paths=1).count
    assert counts.paths == 60 * 2**30
    assert counts.backward == counts.forward == 4 * 30


def test_counts_past_float64s_range_say_so_rather_than_overflow():
    x = cr.tensor(0.7, dtype=cr.float64, requires_grad=True, name="x")
    h = x
    for _ in range(1100):
        h = cr.sin(h) + cr.cos(h)
    counts = count_multiplications(h)
    assert counts.backward == 4400 and counts.paths == float("inf")
    assert "more than 10^308 paths" in str(counts)
