"""`count_multiplications(output)`: the slides' "calculate once and use many times", counted.

For the gradient of `output` with respect to every leaf that requires grad (what `backward()`
fills in), three ways to get the same numbers, each counted in multiplications from the recorded
graph:

- backward: reverse mode, as the engine runs it. Each edge of the graph multiplies the gradient
  arriving at its consumer by the edge's local derivatives once, and the result is shared by every
  path that goes on from there.
- paths: every path from the output back to a parameter multiplied out on its own, as
  `paths(output, wrt)` writes it, with nothing shared between paths.
- forward mode: one forward tangent pass per scalar parameter, each pushing that parameter's
  tangent through every edge that depends on the parameter.

The counting convention, one rule for all three: a multiplication is one scalar gradient (or
tangent) times one scalar local derivative ∂out_c / ∂in_u, where that local derivative is
structurally nonzero (whatever its value at this point, and also where it is 1, as the slides
write `· 1`). Additions (where paths meet, and the sums over broadcast axes) are not counted. So
an edge costs the number of its structurally nonzero local derivatives:

- an elementwise op: one per element of its output, for each input (a broadcast input gets
  several);
- a sum or a mean (an edge that spreads the gradient back and scales it): one per input element;
- a matrix product, a linear layer, an einsum or a convolution: the multiplications of the matrix
  product the backward performs (for `(m, k) @ (k, n)`, m·k·n per operand);
- an op that only moves elements (reshape, transpose, indexing, cat, padding): one per element
  moved.

A path of k edges from the output to one scalar parameter costs k multiplications (the seed times
each local derivative in turn), and paths are counted between scalars: through a layer of many
neurons, each weight has a path through every output its row feeds. Forward mode counts, for each
scalar parameter, every edge whose input depends on that parameter's tensor (a pass with dense
tangents). Ops outside the list above (softmax, var, max pooling, a custom Function) have no rule
here and raise an error that names them. Counts are exact integers up to 2**53 (and infinity
past float64's range, for graphs with astronomically many paths).
"""

import html

import numpy as np

from ..engine.autograd import deliver_gradients
from ..engine.broadcast import sum_to_array
from ..engine.op import Shape
from .recorded import GraphError, Recorded, Vertex

# Ops whose backward, evaluated with every differentiable input set to ones, applies the 0/1
# pattern of their Jacobian: products linear in each operand, and ops that only move elements.
_MULTILINEAR = frozenset({"matmul", "linear", "einsum", "conv2d"})
_MOVING = frozenset(
    {
        "reshape",
        "transpose",
        "permute",
        "narrow",
        "pad_into",
        "getitem",
        "index_add",
        "index_put",
        "gather",
        "scatter_add",
        "cat",
        "sum_to",
        "broadcast_to",
    }
)


def count_multiplications(output, *, gradient=None, names=None):
    """Multiplications that the gradient of `output` costs by the backward pass, by multiplying
    out every path on its own, and by forward mode (see the module's docstring for the counting
    convention). names: {tensor: "name"} for parameters without a `.name`, as for `paths`.
    Returns a `Multiplications`; `str()` of it is a short table."""
    recorded = output if isinstance(output, Recorded) else Recorded(output, gradient, names)
    return Multiplications(recorded)


class Multiplications:
    """The three counts for one graph.

    backward, paths, forward: the multiplications of each way; path_count: how many scalar paths
    there are from the output to the parameters; parameters: how many scalar parameters (the
    forward passes); leaves: (name, number of elements) of each parameter tensor; edges:
    (consumer name, producer name, multiplications) of each edge, in the order backward meets
    them."""

    def __init__(self, recorded):
        self.output_name = recorded.output.name
        edges = _edges(recorded)
        leaves = [v for v in recorded.vertices if v.kind == "leaf"]
        self.leaves = [(v.name, int(np.size(v.value))) for v in leaves]
        self.parameters = sum(n for _, n in self.leaves)

        cost = {}
        for v, i, u in edges:
            cost[(v, i)] = _total(_pattern(v, i, u, np.ones(np.shape(v.value))))
        self.edges = [(v.name, u.name, cost[(v, i)]) for v, i, u in edges]
        self.backward = sum(cost.values())

        # Paths, scalar by scalar: for each element, how many paths reach it from the output
        # and their total length so far; one more multiplication per path at each edge.
        seed = np.ones(np.shape(recorded.output.value))
        count = {recorded.output: seed}
        length = {recorded.output: np.zeros_like(seed)}
        with np.errstate(over="ignore"):  # past float64's range a count is infinity
            for v, i, u in edges:
                if v not in count:
                    continue
                arriving = _pattern(v, i, u, count[v])
                longer = _pattern(v, i, u, length[v] + count[v])
                count[u] = count[u] + arriving if u in count else arriving
                length[u] = length[u] + longer if u in length else longer
        self.path_count = sum(_total(count[v]) for v in leaves if v in count)
        self.paths = sum(_total(length[v]) for v in leaves if v in length)

        # Forward mode: an edge is in the pass of every scalar parameter its input depends on.
        depends = {v: {v} if v.kind == "leaf" else set() for v in recorded.vertices}
        for v in recorded.op_vertices():
            for _, item in v.inputs:
                if isinstance(item, Vertex):
                    depends[v] |= depends[item]
        self.forward = sum(
            cost[(v, i)] * sum(int(np.size(leaf.value)) for leaf in depends[u]) for v, i, u in edges
        )

    def rows(self):
        """(way, multiplications, what they are) for the three ways."""
        return [
            (
                "backward pass",
                self.backward,
                "each local derivative used once, shared steps reused",
            ),
            (
                "every path on its own",
                self.paths,
                f"{_format(self.path_count)} {_plural(self.path_count, 'path')}, each multiplied "
                "out",
            ),
            (
                "forward mode",
                self.forward,
                f"{self.parameters:,} {_plural(self.parameters, 'pass', 'passes')}, one per "
                "parameter",
            ),
        ]

    def title(self):
        """What is counted: "the gradient of SSR, 7 numbers (w1, b1, ...)"."""
        params = ", ".join(name if n == 1 else f"{name}: {n:,}" for name, n in self.leaves)
        number = _plural(self.parameters, "number")
        return f"the gradient of {self.output_name}, {self.parameters:,} {number} ({params})"

    def lines(self, caption=None):
        """The table as text, headed by `caption` where given."""
        title = self.title()
        head = f"{caption}: {title}" if caption else title[:1].upper() + title[1:]
        lines = [head + ", costs:"]
        rows = self.rows()
        width = max(len(way) for way, _, _ in rows)
        digits = max(len(_format(n)) for _, n, _ in rows)
        for way, n, how in rows:
            lines.append(f"  {way:<{width}}  {_format(n):>{digits}} multiplications  ({how})")
        return lines

    def __str__(self):
        return "\n".join(self.lines())

    def __repr__(self):
        return (
            f"Multiplications(backward={self.backward}, paths={self.paths}, "
            f"forward={self.forward}, path_count={self.path_count}, parameters={self.parameters})"
        )

    def html_table(self, caption=None):
        head = f"<caption>{html.escape(self.lines(caption)[0])}</caption>"
        body = "".join(
            f"<tr><td>{html.escape(way)}</td><td>{_format(n)}</td><td>{html.escape(how)}</td></tr>"
            for way, n, how in self.rows()
        )
        return (
            f'<table class="chainrule-counts">{head}<tr><th>way</th><th>multiplications</th>'
            f"<th>made of</th></tr>{body}</table>"
        )

    def _repr_html_(self):
        return self.html_table()


def _edges(recorded):
    """(consumer, input index, producer) of every edge a gradient flows along, from the output
    back (each consumer before the vertices it takes inputs from)."""
    out = []
    for v in reversed(recorded.op_vertices()):
        for i, item in v.inputs:
            if (
                isinstance(item, Vertex)
                and item.differentiable
                and v.node.op.derivatives[i] is not None
            ):
                out.append((v, i, item))
    return out


def _pattern(v, i, u, g):
    """What arrives at input i of v when `g` arrives at v and every structurally nonzero local
    derivative of the edge is taken as 1: the edge's Jacobian pattern, transposed, applied to g."""
    op = v.node.op
    shape = np.shape(u.value)
    if op.elementwise:
        return sum_to_array(np.broadcast_to(g, np.shape(v.value)), shape)
    derivative = op.derivatives[i]
    if derivative.factor is not None:
        factor = np.asarray(_deliver(v, i, _recorded_args(v), v.value, np.ones(np.shape(g))))
        spread = np.asarray(_deliver(v, i, _recorded_args(v), v.value, g))
        return spread / factor
    if op.name in _MULTILINEAR or op.name in _MOVING:
        ones = [
            np.ones(np.shape(value)) if d is not None and value is not None else value
            for value, d in zip(_recorded_args(v), op.derivatives, strict=False)
        ]
        return np.asarray(_deliver(v, i, ones, np.ones(np.shape(v.value)), g))
    raise GraphError(
        f"count_multiplications: no counting rule for {op.name} (at {v.name}); counted are "
        "elementwise ops, sums and means, matrix products, linear layers, einsum, convolutions "
        "and ops that only move elements (reshape, transpose, indexing, cat, padding)"
    )


def _recorded_args(v):
    return [item.value if isinstance(item, Vertex) else item for _, item in v.inputs]


def _deliver(v, i, args, out, g):
    """Input i's share of `g` by the engine's own rule for v's op, computed with `args`."""
    parents = [None] * len(args)
    shapes = [None] * len(args)
    parents[i] = i
    shapes[i] = Shape(np.shape(args[i]))
    received = {}
    deliver_gradients(v.node, g, args, out, parents, shapes, received, [], False, None)
    return received[i]


def _total(array):
    """An array of counts summed, as an int (float infinity past what float64 holds)."""
    total = float(np.sum(array))
    return int(round(total)) if np.isfinite(total) else total


def _format(n):
    return f"{n:,}" if np.isfinite(n) else "more than 10^308"


def _plural(n, word, plural=None):
    return word if n == 1 else (plural or word + "s")
