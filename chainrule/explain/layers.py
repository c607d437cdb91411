"""A layer of many neurons, as the slides end: "traversing backward is a series of matrix
multiplications", each "calculated once and used many times".

For each linear layer Y = X @ W.T + b on the way from the output back to a tensor, the gradient
that arrives at Y (dloss/dY, computed once by the engine) is turned into one product per input:
dloss/dW = g_Y.T @ X, dloss/db = g_Y summed over the batch, dloss/dX = g_Y @ W, which carries on to
the layer below. The formulas are the op's own declaration (chainrule/ops/nn.py) in the user's
names; the numbers are the engine's own backward rule applied to the engine's own dloss/dY; the
shapes are worked out on the formula, both as (batch, in, out) and as sizes.
"""

import ast

import numpy as np

from . import expr
from .recorded import Vertex

# The dimensions of each input of a layer op, by the op's parameter names ("g" and "out" are the
# gradient arriving at the output and the output). A batch of more than one leading dim is one
# batch of rows here, as the backward rule itself reshapes it.
LAYER_DIMS = {
    "linear": {
        "x": ("batch", "in"),
        "weight": ("out", "in"),
        "bias": ("out",),
        "g": ("batch", "out"),
        "out": ("batch", "out"),
    },
}

# The input through which a layer's gradient goes on to the layers below.
CARRIED_BACK = {"linear": "x"}


class Product:
    """What the gradient at a layer's output gives one of its inputs: d output / d input."""

    __slots__ = ("index", "input", "formula", "shapes", "value", "shared", "feeds")

    def __init__(self, recorded, layer, i):
        vertex = layer.vertex
        self.index = i
        self.input = vertex.inputs[i][1]
        self.formula = expr.to_text(recorded.formula(vertex, i, g_name=layer.g_name))
        self.shapes = rule_shapes(recorded, vertex, i)
        # The engine's own rule on the engine's own dloss/dY; None where the engine computes
        # nothing, because the input needs no gradient.
        computed = self.input.differentiable and layer.gradient is not None
        self.value = recorded.apply_edge(vertex, i, layer.gradient) if computed else None
        # Used elsewhere too, this product is one share of the input's gradient.
        self.shared = len(self.input.consumers) > 1
        # The parameters further back that this product's result goes on to.
        self.feeds = _parameters_below(self.input) if self.input.kind == "op" else []

    @property
    def computed(self):
        return self.value is not None


class Layer:
    """One layer op on the way back: its forward, its sizes, the gradient that reaches it and the
    products that gradient is used in."""

    def __init__(self, recorded, vertex, g_name):
        self.vertex = vertex
        self.g_name = g_name
        op = vertex.node.op
        args = dict(zip(op.inputs, recorded.args(vertex), strict=False))
        self.size, labelled = _labelled_dims(recorded, vertex)
        self.batch = self.size["batch"]
        self.batch_shape = np.shape(vertex.value)[:-1]
        self.forward = expr.to_text(vertex.expr)
        absent = {param: expr.const(None) for param in op.inputs if args.get(param) is None}
        forward = expr.drop_missing(expr.substitute(expr.parse(op.formula), absent))
        self.forward_shapes = _shapes(forward, labelled)
        self.gradient = vertex.grad
        present = [i for i, param in enumerate(op.inputs) if args.get(param) is not None]
        self.products = [Product(recorded, self, i) for i in present]
        # The layer's own parameters first, then the product that carries the gradient back.
        carried = op.inputs.index(CARRIED_BACK[op.name])
        self.products.sort(key=lambda p: p.index == carried)

    @property
    def name(self):
        return self.vertex.name

    @property
    def neurons(self):
        return self.size["out"]


def layers_on_the_way(recorded, on_path):
    """The layer ops among the vertices `on_path`, in the order backward reaches them (the output
    first), each with the gradient name `g_<name>`."""
    found = [v for v in on_path if is_layer(v)]
    found.sort(key=lambda v: -v.index)
    return [Layer(recorded, v, f"g_{v.name}") for v in found]


def is_layer(vertex):
    return vertex.kind == "op" and vertex.node.op.name in LAYER_DIMS


def rule_shapes(recorded, vertex, i):
    """The shapes in a layer op's backward rule for input i, as labels and as sizes:
    "(out, in) = (out, batch) @ (batch, in); (4, 3) = (4, 5) @ (5, 3)" (None if not worked out)."""
    labels, sizes = _shapes(
        expr.parse(recorded.derivative(vertex, i).formula), _labelled_dims(recorded, vertex)[1]
    )
    return None if labels is None else f"{labels}; {sizes}"


def _labelled_dims(recorded, vertex):
    """The layer's sizes ({"batch": 5, "in": 3, "out": 4}) and, for each of the op's names that
    has a value, its dims as (label, size) pairs; leading dims beyond the labels join the first."""
    op = vertex.node.op
    values = dict(zip(op.inputs, recorded.args(vertex), strict=False))
    values["out"] = values["g"] = vertex.value
    size, labelled = {}, {}
    for param, labels in LAYER_DIMS[op.name].items():
        if values.get(param) is None:
            continue
        shape = np.shape(values[param])
        lead = len(shape) - len(labels) + 1
        sizes = (int(np.prod(shape[:lead], dtype=np.int64)),) + tuple(shape[lead:])
        size.update(zip(labels, sizes, strict=True))
        labelled[param] = tuple(zip(labels, sizes, strict=True))
    return size, labelled


def _parameters_below(vertex):
    """The leaves that require grad behind `vertex`, in graph order: where its gradient goes on to."""
    seen, stack, leaves = {vertex}, [vertex], []
    while stack:
        v = stack.pop()
        for _, item in v.inputs:
            if not isinstance(item, Vertex) or item in seen:
                continue
            seen.add(item)
            if item.kind == "leaf":
                leaves.append(item)
            elif item.kind == "op":
                stack.append(item)
    return sorted(leaves, key=lambda v: v.index)


def _shapes(tree, labelled):
    """A formula's shapes, as labels and as sizes: ("(out, in) = (out, batch) @ (batch, in)",
    "(4, 3) = (4, 5) @ (5, 3)"); (None, None) where the formula is not made of matrix products,
    transposes, sums and sum_to."""
    worked = _walk(tree, labelled)
    if worked is None:
        return None, None
    texts, result = worked
    return tuple(f"{_tuple(result, k)} = {texts[k]}" for k in (0, 1))


def _walk(node, labelled):
    """(label text, size text), dims of the result; None where a part is not understood."""
    if isinstance(node, ast.Name):
        dims = labelled.get(node.id)
        return None if dims is None else ((_tuple(dims, 0), _tuple(dims, 1)), dims)
    if isinstance(node, ast.Attribute) and node.attr in ("T", "mT"):
        inner = _walk(node.value, labelled)
        if inner is None or len(inner[1]) < 2:
            return None
        dims = inner[1][:-2] + (inner[1][-1], inner[1][-2])
        return (_tuple(dims, 0), _tuple(dims, 1)), dims
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult | ast.Add):
        left, right = _walk(node.left, labelled), _walk(node.right, labelled)
        if left is None or right is None:
            return None
        symbol = "@" if isinstance(node.op, ast.MatMult) else "+"
        texts = tuple(f"{left[0][k]} {symbol} {right[0][k]}" for k in (0, 1))
        if symbol == "@":
            return texts, left[1][:-1] + right[1][-1:]
        return texts, left[1] if len(left[1]) >= len(right[1]) else right[1]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "sum_to"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Attribute)
        and node.args[1].attr == "shape"
        and isinstance(node.args[1].value, ast.Name)
    ):
        inner = _walk(node.args[0], labelled)
        target = labelled.get(node.args[1].value.id)
        if inner is None or target is None:
            return None
        gone = [d for d in inner[1] if d not in target]
        if not gone:  # the product already has the target's shape (the weight's g.T @ x)
            return inner
        over = (", ".join(d[0] for d in gone), ", ".join(str(d[1]) for d in gone))
        texts = tuple(f"{inner[0][k]} summed over {over[k]}" for k in (0, 1))
        return texts, target
    return None


def _tuple(dims, k):
    items = [str(d[k]) for d in dims]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
