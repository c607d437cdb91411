"""`paths(output, wrt)`: the chain rule written out, path by path, the way the slides do it.

Each path from the output back to `wrt` is a product of local partial derivatives (as formulas in
the user's names and as numbers); the paths' sum is the gradient the engine computes. Where a path
goes through matrix products or reshapes, it is shown as the sequence of matrix-form backward
steps (`g @ x.T`) with their shapes instead.
"""

import ast
import html

import numpy as np

from ..engine.broadcast import sum_to_array
from ..engine.op import IDENTITY, LOCAL, NEGATE
from ..engine.tensor import Tensor
from . import expr
from .layers import is_layer, layers_on_the_way, rule_shapes
from .recorded import Recorded, Vertex

MAX_PATHS = 64


def paths(output, wrt, *, gradient=None, names=None, inline=None, max_paths=MAX_PATHS):
    """Every path from `output` back to `wrt` (a tensor, or a list of them), each edge with its
    local derivative as formula and number, each path's product, and their sum, `wrt`'s gradient.

    names: {tensor: "name"} for tensors without a `.name` (e.g. a model's named_parameters()).
    inline: write unnamed intermediates out inside formulas (True), name every step (False), or
    decide from whether any intermediate is named (None).
    """
    recorded = output if isinstance(output, Recorded) else Recorded(output, gradient, names, inline)
    if isinstance(wrt, list | tuple):
        return Explanations([Derivation(recorded, recorded.find(w), max_paths) for w in wrt])
    return Derivation(recorded, recorded.find(wrt), max_paths)


class Edge:
    """A visible edge of a path: d consumer / d producer, possibly through unnamed steps."""

    __slots__ = ("consumer", "producer", "formula", "value", "raw")

    def __init__(self, consumer, producer, formula, value, raw):
        self.consumer, self.producer = consumer, producer
        self.formula, self.value, self.raw = formula, value, raw

    @property
    def text(self):
        return expr.to_text(self.formula)


class Path:
    """One path: its raw edges (node, input) from the output back, and its contribution."""

    def __init__(self, recorded, raw, target):
        self.recorded = recorded
        self.raw = raw
        self.target = target
        self.value = self._propagate()
        self.notes = [n for n in (recorded.broadcast_note(v, i) for v, i in raw) if n]
        self.edges = self._visible_edges()
        self.product = self._product()

    @property
    def is_product(self):
        """Whether this path is shown as a product of local derivatives (else as matrix steps)."""
        return self.product is not None

    def vertices(self):
        out = [self.raw[0][0]] if self.raw else [self.target]
        for v, i in self.raw:
            out.append(v.inputs[i][1])
        return out

    def _propagate(self):
        """The gradient this path delivers to the target; None where an edge passes none on
        (a custom Function's backward returned None for that input)."""
        g = self.recorded._seed
        for v, i in self.raw:
            g = self.recorded.apply_edge(v, i, g)
            if g is None:
                return None
        return g

    def _visible_edges(self):
        edges, trees, values, raw, start = [], [], [], [], None
        for v, i in self.raw:
            if start is None:
                start = v
            raw.append((v, i))
            rec = self.recorded
            trees.append(rec.factor_formula(v, i) if rec.factor_edge(v, i) else rec.formula(v, i))
            values.append(rec.local_value(v, i) if rec.factor_edge(v, i) else None)
            producer = v.inputs[i][1]
            if producer.visible or producer is self.target:
                formula = expr.simplify(expr.product(trees))
                value = None
                if all(x is not None for x in values):
                    value = values[0]
                    for x in values[1:]:
                        value = _multiply(value, x)
                edges.append(Edge(start, producer, formula, value, raw))
                trees, values, raw, start = [], [], [], None
        return edges

    def _product(self):
        if not self.edges or any(e.value is None for e in self.edges):
            return None
        value = self.edges[0].value
        try:
            for e in self.edges[1:]:
                value = _multiply(value, e.value)
            value = (
                _multiply(value, self.recorded._seed)
                if self.recorded._seed.size > 1
                else value * self.recorded._seed.reshape(())
            )
            shape = np.shape(self.target.value)
            value = np.broadcast_to(value, np.broadcast_shapes(np.shape(value), shape))
            reduced = sum_to_array(np.asarray(value), shape)
        except ValueError:
            return None
        # The product form is only an honest description when it gives the engine's number.
        if not _close(reduced, self.value):
            return None
        return value

    @property
    def summed(self):
        """Whether the product has more elements than wrt, so the last step is a sum (Σ)."""
        return self.product is not None and np.size(self.product) > np.size(self.target.value)

    # ---- rendering --------------------------------------------------------------------------
    def chain_text(self, output_name):
        return " * ".join(f"d{e.consumer.name}/d{e.producer.name}" for e in self.edges)

    def formula_text(self):
        sigma = "Σ " if self.summed else ""
        return sigma + " * ".join(_factor(e.text) for e in self.edges)

    def numbers_text(self):
        sigma = "Σ " if self.summed else ""
        return sigma + " * ".join(_factor(format_array(e.value)) for e in self.edges)

    def steps(self):
        """The matrix-form backward steps: (gradient name, formula text, shapes, value)."""
        rec = self.recorded
        first = self.raw[0][0] if self.raw else self.target
        rows = [(f"g_{first.name}", format_array(rec._seed), "", rec._seed)]
        g = rec._seed
        for v, i in self.raw:
            producer = v.inputs[i][1]
            g = rec.apply_edge(v, i, g)
            d = rec.derivative(v, i)
            if d.kind in (IDENTITY, NEGATE, LOCAL):
                local = expr.to_text(rec.formula(v, i))
                text = (
                    f"g_{v.name}"
                    if local == "1"
                    else (f"-g_{v.name}" if local == "-1" else f"g_{v.name} * {_factor(local)}")
                )
            else:
                text = expr.to_text(rec.formula(v, i, g_name=f"g_{v.name}"))
            rows.append((f"g_{producer.name}", text, _shapes(rec, v, i), g))
        return rows


class Derivation:
    """d output / d wrt as the sum over paths of the products of local derivatives."""

    def __init__(self, recorded, target, max_paths=MAX_PATHS):
        self.recorded = recorded
        self.target = target
        self.output = recorded.output
        if not target.differentiable:
            raise ValueError(
                f"explain: {target.name} is a constant (it does not require grad), so there is "
                "no derivative with respect to it"
            )
        counts = _path_counts(recorded, target)
        raw_paths, self.count = _enumerate(recorded, target, max_paths, counts)
        # The layers of many neurons the gradient passes through, as matrix products.
        self.layers = layers_on_the_way(recorded, [v for v in counts if v is not target])
        self.paths = []
        for raw in raw_paths:
            path = Path(recorded, raw, target)
            if path.value is None:
                self.count -= 1  # the graph has the edge, but no gradient flows along it
            else:
                self.paths.append(path)
        shape = np.shape(target.value)
        self.total = sum((p.value for p in self.paths), np.zeros(shape))
        engine = target.grad
        self.grad = np.zeros(shape) if engine is None else engine

    @property
    def value(self):
        """The gradient, as the engine computed it (equal to the sum over the listed paths when
        every path is listed)."""
        return self.grad

    @property
    def complete(self):
        return len(self.paths) == self.count

    @property
    def name(self):
        return f"d{self.output.name}/d{self.target.name}"

    def lines(self):
        return self._sum_lines() + self._layer_lines()

    def _sum_lines(self):
        name = self.name
        if self.count == 0:
            return [f"{name} = 0 ({self.target.name} does not affect {self.output.name})"]
        if len(self.paths) == 1:
            return self._path_lines(self.paths[0], name, "")
        lines = [f"{name} = sum over {self.count} paths:"]
        for k, p in enumerate(self.paths, 1):
            lines += self._path_lines(p, f"path {k}", "  ")
        if not self.complete:
            lines.append(f"  ... {self.count - len(self.paths)} more paths not listed")
        terms = " + ".join(format_array(p.value) for p in self.paths)
        lines.append(f"{name} = {terms} = {format_array(self.grad)}")
        return lines

    def _layer_lines(self):
        return all_layer_lines(self.layers, self.output.name)

    def _path_lines(self, p, label, indent):
        if p.is_product:
            chain = p.chain_text(self.output.name)
            head = (
                f"{indent}{label} = {chain}"
                if label.startswith("d")
                else f"{indent}{label}: {chain}"
            )
            line = f"{head} = {p.formula_text()} = {p.numbers_text()} = {format_array(p.value)}"
            return [line] + [f"{indent}  ({n})" for n in _unique(p.notes)]
        names = " <- ".join(v.name for v in p.vertices())
        lines = [f"{indent}{label}: {names} (matrix form; g_X is d{self.output.name}/dX)"]
        rows = p.steps()
        width = max(len(r[0]) for r in rows)
        for gname, text, shapes, value in rows:
            shape_text = f"   [{shapes}]" if shapes else ""
            lines.append(
                f"{indent}  {gname:<{width}} = {text}{shape_text}   = {format_array(value)}"
            )
        lines += [f"{indent}  ({n})" for n in _unique(p.notes)]
        return lines

    def __str__(self):
        return "\n".join(self.lines())

    def __repr__(self):
        return str(self)

    def to_latex(self):
        """The derivation as a LaTeX `aligned` block (use inside $$...$$)."""
        out, wrt = expr.latex_name(self.output.name), expr.latex_name(self.target.name)
        lhs = rf"\frac{{\partial {out}}}{{\partial {wrt}}}"
        rows = []
        for p in self.paths:
            if p.is_product:
                chain = r" \cdot ".join(
                    rf"\frac{{\partial {expr.latex_name(e.consumer.name)}}}"
                    rf"{{\partial {expr.latex_name(e.producer.name)}}}"
                    for e in p.edges
                )
                sigma = r"\sum " if p.summed else ""
                formulas = r" \cdot ".join(_latex_factor(e.formula) for e in p.edges)
                numbers = r" \cdot ".join(_latex_number(format_array(e.value)) for e in p.edges)
                rows.append(
                    rf"&= {chain} = {sigma}{formulas} = {sigma}{numbers} "
                    rf"= {_latex_number(format_array(p.value))}"
                )
            else:
                for gname, text, shapes, _value in p.steps():
                    rows.append(
                        rf"&\quad \text{{{_latex_escape(gname)} = "
                        rf"{_latex_escape(text)}}} \; [{_latex_escape(shapes)}]"
                    )
        if len(self.paths) > 1:
            terms = " + ".join(_latex_number(format_array(p.value)) for p in self.paths)
            rows.append(rf"&= {terms} = {_latex_number(format_array(self.grad))}")
        rows += [rf"&\quad \text{{{_latex_escape(text)}}}" for text in self._layer_lines()]
        return lhs + r" \begin{aligned}[t]" + r" \\ ".join(rows) + r"\end{aligned}"

    def _repr_html_(self):
        return _pre_html(str(self))

    def _repr_latex_(self):
        return "$$" + self.to_latex() + "$$"


class Explanations(list):
    """Several derivations (one per wrt), printed one after another, then the layers they pass
    through, once each."""

    def __str__(self):
        layers = {}
        for d in self:
            layers.update((layer.vertex, layer) for layer in d.layers)
        ordered = sorted(layers.values(), key=lambda layer: -layer.vertex.index)
        lines = [line for d in self for line in d._sum_lines()]
        if self:
            lines += all_layer_lines(ordered, self[0].output.name)
        return "\n".join(lines)

    def to_latex(self):
        return r" \\ ".join(d.to_latex() for d in self)

    def _repr_html_(self):
        return _pre_html(str(self))


def _pre_html(text):
    return (
        '<div class="chainrule-derivation"><pre style="font-family: monospace; '
        f'white-space: pre-wrap; margin: 0">{html.escape(text)}</pre></div>'
    )


def _path_counts(recorded, target):
    """For each vertex from which target can be reached (target included), how many paths lead
    from it to target."""
    count = {target: 1}
    for v in recorded.op_vertices():
        n = 0
        for _, item in v.inputs:
            if isinstance(item, Vertex) and item in count and item.differentiable:
                n += count[item]
        if n and v is not target:
            count[v] = n
    return count


def _enumerate(recorded, target, limit, count):
    """Raw paths (lists of (op vertex, input index)) from the output to target, at most `limit`,
    and how many there are in all (counted without listing them); `count` is _path_counts'."""
    reaches = count.keys()
    start = recorded.output
    if start not in reaches:
        return [], 0
    found = []
    stack = [(start, [])]
    while stack and len(found) < limit:
        v, trail = stack.pop()
        if v is target:
            found.append(trail)
            continue
        for i, item in reversed(v.inputs):
            if isinstance(item, Vertex) and item in reaches and item.differentiable:
                stack.append((item, trail + [(v, i)]))
    return found, count[start]


def all_layer_lines(layers, output_name):
    """Each layer of many neurons on the way back, as the matrix products of its backward."""
    if not layers:
        return []
    lines = [
        f"the backward through each layer of many neurons, as matrix products (g_Y is "
        f"d{output_name}/dY, calculated once and used by every product of its layer):"
    ]
    for layer in layers:
        lines += [f"  {text}" for text in layer_lines(layer, output_name)]
    return lines


def layer_lines(layer, output_name):
    """A layer's backward as text: its forward and sizes, the gradient arriving at its output,
    and the product each input gets from it, with shapes and numbers."""
    neurons = f"{layer.neurons} neuron{'s' if layer.neurons != 1 else ''}"
    inputs = f"{layer.size['in']} input{'s' if layer.size['in'] != 1 else ''} each"
    batch = f"a batch of {layer.batch}"
    if len(layer.batch_shape) > 1:
        batch += f" (its leading dims {_size_tuple(layer.batch_shape)} as one)"
    head = f"{layer.name} = {layer.forward}: a layer of {neurons}, {inputs}, on {batch}"
    labels, sizes = layer.forward_shapes
    lines = [head + (f"   [{labels}; {sizes}]" if labels else "")]
    used = [p for p in layer.products if p.computed]
    shape = _size_tuple((layer.batch, layer.neurons))
    lines.append(
        f"  {layer.g_name} = d{output_name}/d{layer.name} = {format_array(layer.gradient)}   "
        f"[(batch, out) = {shape}], used by {len(used)} product{'s' if len(used) != 1 else ''}:"
    )
    width = max(len(f"d{output_name}/d{p.input.name}") for p in used) if used else 0
    for p in used:
        lhs = f"d{output_name}/d{p.input.name}"
        shapes = f"   [{p.shapes}]" if p.shapes else ""
        line = f"    {lhs:<{width}} = {p.formula}{shapes}   = {format_array(p.value)}"
        if p.feeds:
            line += ", on to " + ", ".join(v.name for v in p.feeds)
        if p.shared:
            uses = len(p.input.consumers)
            line += f" (this layer's share: {p.input.name} is used {uses} times)"
        lines.append(line)
    for p in layer.products:
        if not p.computed:
            lines.append(f"    ({p.input.name} needs no gradient, so {p.formula} is not computed)")
    return lines


def _size_tuple(shape):
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _multiply(a, b):
    return np.multiply(a, b)


def _close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-6 * scale))


def _factor(text):
    """A factor inside a product: parenthesised when it is itself a sum or a difference."""
    if text.startswith(("[", "(", "<")):
        return text
    depth = 0
    for k, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and ch in "+-" and k > 0 and text[k - 1] == " ":
            return f"({text})"
    return text


def _shapes(recorded, v, i):
    """For a matrix product in a rule, the operands' shapes: `(2, 4) @ (4, 3) -> (2, 3)`; for a
    layer, with its dims named: `(out, in) = (out, batch) @ (batch, in); (4, 3) = (4, 5) @ (5, 3)`."""
    named = rule_shapes(recorded, v, i) if is_layer(v) else None
    if named is not None:
        return named
    tree = expr.parse(recorded.derivative(v, i).formula)
    item = v.inputs[i][1]
    products = [
        n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)
    ]
    if not products:
        return f"{np.shape(v.value)} -> {np.shape(item.value)}"
    tree = products[0]
    names = recorded.namespace(v)
    names["g"] = np.zeros_like(v.value)
    try:
        left = np.shape(expr.evaluate(tree.left, names))
        right = np.shape(expr.evaluate(tree.right, names))
    except (NameError, TypeError, ValueError) as error:
        # An operand that needs a function this numeric namespace lacks: say so in place of the
        # shapes rather than guess them.
        return f"shapes not worked out: {error}"
    item = v.inputs[i][1]
    return f"{left} @ {right} -> {np.shape(item.value)}"


def format_array(value, max_items=8):
    """A number, a short array written out, or a large one summarised."""
    if value is None:
        return "?"
    if isinstance(value, Tensor):
        value = value._data
    a = np.asarray(value)
    if a.size == 1:
        return expr.format_number(a.reshape(()).item())
    if a.size <= max_items:
        return _nested(a)
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return f"<{a.shape} array, no finite values>"
    return (
        f"<{a.shape} array: mean {expr.format_number(float(finite.mean()))}, min "
        f"{expr.format_number(float(finite.min()))}, max {expr.format_number(float(finite.max()))}>"
    )


def _nested(a):
    if a.ndim == 1:
        return "[" + ", ".join(expr.format_number(x) for x in a.tolist()) + "]"
    return "[" + ", ".join(_nested(row) for row in a) + "]"


def _unique(items):
    seen, out = set(), []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _latex_factor(tree):
    text = expr.to_latex(tree)
    return rf"\left({text}\right)" if expr._is_sum(tree) else text


def _latex_number(text):
    return text.replace("<", r"\langle ").replace(">", r"\rangle ")


def _latex_escape(text):
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("#", r"\#"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("$", r"\$"),
        ("^", r"\^{}"),
        ("<", r"\textless{}"),
        (">", r"\textgreater{}"),
    ):
        text = text.replace(a, b)
    return text
