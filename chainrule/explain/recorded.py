"""Reading a recorded graph: every node, leaf and constant behind an output, with names, values,
gradients and each edge's local derivative.

Nothing here changes the engine or its graph. Values the engine did not keep are recomputed by
running each op's forward over the graph from the leaves and the constants the nodes hold (which
a backward without retain_graph leaves them: see engine.op.keep_constants); gradients come from
the engine's own walk (`grad_with_values`, given the recomputed values where backward freed the
saved ones), so what is shown is what backward computes, bit for bit. No op's forward draws
random numbers (dropout's mask is a constant input, kept like any other), so replaying it gives
the forward's values exactly.
"""

import ast

import numpy as np
from scipy import special

from ..engine.autograd import deliver_gradients, grad_with_values, graph_nodes
from ..engine.op import IDENTITY, LOCAL, NEGATE, Node, Released, Shape, constant_inputs
from ..engine.tensor import Tensor
from ..nn.owners import parameter_names
from . import expr

# Unnamed intermediates are written out inside the formulas that use them while they stay short;
# a longer one gets its own (automatic) name instead.
INLINE_LIMIT = 40


class Vertex:
    """One thing in the explained graph: an op's output ("op"), a leaf that requires grad ("leaf")
    or a constant tensor ("const")."""

    __slots__ = (
        "kind",
        "node",
        "tensor",
        "name",
        "user_named",
        "value",
        "grad",
        "visible",
        "expr",
        "inputs",
        "consumers",
        "index",
        "group",
    )

    def __init__(self, kind, node=None, tensor=None):
        self.kind, self.node, self.tensor = kind, node, tensor
        self.name = None
        self.user_named = False
        self.value = None
        self.grad = None
        self.visible = True
        self.expr = None
        self.inputs = []  # op vertices: (input index, Vertex or plain constant)
        self.consumers = []  # (op vertex, input index)
        self.index = 0
        self.group = None

    @property
    def differentiable(self):
        return self.kind != "const"

    def ref(self):
        """How formulas refer to this vertex: its name, its inlined expression when hidden, or
        its number for an unnamed one-element constant."""
        if self.kind == "const" and not self.user_named and np.size(self.value) == 1:
            return expr._number(np.asarray(self.value).item())
        return expr.name(self.name) if self.visible else self.expr

    def short(self):
        """A short label for notes: the name, or the inlined text when that is short."""
        if self.visible:
            return self.name
        text = expr.to_text(self.expr)
        return text if len(text) <= 24 else self.name

    def __repr__(self):
        return f"<Vertex {self.kind} {self.name}>"


class GraphError(RuntimeError):
    pass


class Recorded:
    """The graph behind `output`, read once: vertices in topological order (inputs first)."""

    def __init__(self, output, gradient=None, names=None, inline=None):
        if not isinstance(output, Tensor):
            raise TypeError(f"explain: expected the output Tensor, got {type(output).__name__}")
        if output.grad_fn is None:
            raise GraphError(
                "explain: this tensor has no recorded graph (it is a leaf, or was computed under "
                "no_grad or from tensors that do not require grad)"
            )
        self.output_tensor = output
        self.vertices = []
        self._by_node = {}
        self._by_tensor = {}
        self._collect(output.grad_fn)
        self.output = self._by_node[output.grad_fn]
        self._name_all(names or {}, output)
        self._set_visibility(inline)
        self._compute_values()
        self._seed = self._make_seed(gradient)
        self._compute_grads()

    # ---- structure --------------------------------------------------------------------------
    def _collect(self, root):
        for node in graph_nodes([root]):
            v = Vertex("op", node=node)
            constants = constant_inputs(node)
            for i, (parent, constant) in enumerate(zip(node.next, constants, strict=False)):
                if type(parent) is Node:
                    item = self._by_node[parent]
                elif isinstance(parent, Tensor):
                    item = self._tensor_vertex(parent)
                elif type(constant) is Released:
                    raise _released_error(node, i, constant)
                elif isinstance(constant, Tensor):
                    item = self._tensor_vertex(constant)
                else:
                    item = constant
                if isinstance(item, Vertex):
                    item.consumers.append((v, i))
                v.inputs.append((i, item))
            self._add(v)
            self._by_node[node] = v

    def _tensor_vertex(self, tensor):
        v = self._by_tensor.get(id(tensor))
        if v is None:
            # A tensor that reaches a node without a gradient edge (data, or a value from another
            # graph used where no derivative flows) is a constant here.
            leaf = tensor.requires_grad and tensor.grad_fn is None
            v = Vertex("leaf" if leaf else "const", tensor=tensor)
            v.value = tensor._data
            self._by_tensor[id(tensor)] = v
            self._add(v)
        return v

    def _add(self, v):
        v.index = len(self.vertices)
        self.vertices.append(v)

    def op_vertices(self):
        return [v for v in self.vertices if v.kind == "op"]

    def find(self, tensor):
        """The vertex of a tensor the user holds (a leaf, or an intermediate by its node)."""
        if isinstance(tensor, Vertex):
            return tensor
        if not isinstance(tensor, Tensor):
            raise TypeError(f"explain: expected a Tensor, got {type(tensor).__name__}")
        v = self._by_node.get(tensor.grad_fn) if tensor.grad_fn is not None else None
        if v is None:
            v = self._by_tensor.get(id(tensor))
        if v is None:
            label = f" {tensor.name!r}" if tensor.name else ""
            raise GraphError(
                f"explain: the tensor{label} of shape {tuple(tensor.shape)} is not part of the "
                f"graph that computed {self.output.name!r}"
            )
        return v

    # ---- names ------------------------------------------------------------------------------
    def _name_all(self, names, output):
        given = {id(t): n for t, n in _pairs(names)}
        taken = set()
        for v in self.vertices:
            user = v.node.name if v.node is not None else v.tensor.name
            if v.tensor is not None and id(v.tensor) in given:
                user = given[id(v.tensor)]
            if user:
                v.name, v.user_named = str(user), True
                taken.add(v.name)
        for v, name in _model_names(self.vertices, taken).items():
            v.name, v.user_named = name, True
            taken.add(name)
        if self.output.name is None:
            wanted = "loss" if output._data.size == 1 else "out"
            self.output.name = wanted if wanted not in taken else _fresh(wanted, taken)
            taken.add(self.output.name)
        for v in self.vertices:
            if v.name is None:
                base = v.node.op.name if v.kind == "op" else ("t" if v.kind == "leaf" else "c")
                v.name = _fresh(base, taken)

    def _set_visibility(self, inline):
        if inline is None:
            # The user's names say which steps matter: with some intermediates named, the unnamed
            # ones are written out inside the formulas (the slides' `2(yhat - y)`); with none
            # named, every step is shown under an automatic name.
            inline = any(v.user_named for v in self.op_vertices() if v is not self.output)
        for v in self.vertices:
            if v.kind != "op":
                continue
            v.expr = self._forward_expr(v)
            hidden = inline and not v.user_named and v is not self.output
            if hidden and len(expr.to_text(v.expr)) > INLINE_LIMIT:
                hidden = False
            v.visible = not hidden

    def _forward_expr(self, v):
        """The op's forward formula in the names of this node's inputs."""
        refs = self.input_refs(v)
        tree = expr.substitute(expr.parse(v.node.op.formula), refs)
        if any(isinstance(r, ast.Constant) and r.value is None for r in refs.values()):
            tree = expr.drop_missing(tree)  # an absent input, such as a bias
        return expr.simplify(tree)

    def input_refs(self, v):
        """The op's parameter names -> how each input is written (name, inlined text or number)."""
        mapping = {}
        for (_i, item), param in zip(v.inputs, v.node.op.inputs, strict=False):
            if isinstance(item, Vertex):
                mapping[param] = item.ref()
            else:
                mapping[param] = _constant_tree(item)
        return mapping

    # ---- values and gradients ----------------------------------------------------------------
    def _compute_values(self):
        for v in self.vertices:
            if v.kind != "op":
                if v.tensor is not None:
                    self._check_unmodified(v)
                continue
            node = v.node
            if node.out is not None:
                v.value = node.out
                continue
            args = self.args(v)
            try:
                out = (
                    node.op.forward(*args, **node.params) if node.params else node.op.forward(*args)
                )
            except (ArithmeticError, IndexError, TypeError, ValueError) as error:
                raise GraphError(
                    f"explain: could not recompute the value of {v.name} ({node.op.name}) from "
                    f"its inputs: {type(error).__name__}: {error}"
                ) from error
            v.value = np.asarray(out)

    def _check_unmodified(self, v):
        """The values are recomputed from the leaves and constants: as the forward saw them."""
        for consumer, _ in v.consumers:
            if v.tensor._version > consumer.node.seq:
                cause = "an optimizer step?" if v.kind == "leaf" else "an in-place op on it?"
                raise GraphError(
                    f"explain: {v.name} (shape {tuple(v.tensor.shape)}) was modified in place "
                    f"after {consumer.node.op.name} used it ({cause}), so the values the forward "
                    "computed are gone; explain before changing it, or change a copy"
                )

    def args(self, v):
        return [item.value if isinstance(item, Vertex) else item for _, item in v.inputs]

    def _make_seed(self, gradient):
        out = self.output_tensor
        if gradient is None:
            if out._data.size != 1:
                raise GraphError(
                    f"explain: the output has shape {tuple(out.shape)}; explanations start from a "
                    "scalar (a loss), or pass gradient= of the output's shape"
                )
            return np.ones_like(out._data)
        seed = np.asarray(
            gradient._data if isinstance(gradient, Tensor) else gradient, dtype=out._data.dtype
        )
        if seed.shape != out.shape:
            raise GraphError(
                f"explain: gradient has shape {seed.shape} but the output has shape {out.shape}"
            )
        return seed

    def _compute_grads(self):
        targets, owners, freed = [], [], {}
        for v in self.vertices:
            if v.kind == "op":
                targets.append(Tensor._wrap(v.value, v.node))
                owners.append(v)
                if v.node.saved is None:
                    freed[v.node] = (self.args(v), v.value)
            elif v.kind == "leaf" and v.tensor.requires_grad:
                targets.append(v.tensor)
                owners.append(v)
        grads = grad_with_values(self.output_tensor, targets, Tensor._wrap(self._seed), freed)
        for v, g in zip(owners, grads, strict=False):
            v.grad = None if g is None else g._data

    # ---- edges ------------------------------------------------------------------------------
    def derivative(self, v, i):
        return v.node.op.derivatives[i]

    def local_value(self, v, i):
        """The numeric local derivative d v / d input_i, for elementwise rules and declared
        factors (else None)."""
        d = self.derivative(v, i)
        if d.kind is IDENTITY:
            return np.asarray(1.0)
        if d.kind is NEGATE:
            return np.asarray(-1.0)
        if d.kind is LOCAL:
            args, params = self.args(v), v.node.params
            value = d.fn(*args, v.value, **params) if params else d.fn(*args, v.value)
            return (
                np.asarray(value, dtype=v.value.dtype)
                if np.asarray(value).dtype == bool
                else np.asarray(value)
            )
        if d.factor is not None:
            return np.asarray(expr.evaluate(expr.parse(d.factor), self.namespace(v)), dtype=float)
        return None

    def factor_edge(self, v, i):
        """Whether d v / d input_i is a plain per-element factor (a product can carry it)."""
        d = self.derivative(v, i)
        if d.kind in (IDENTITY, NEGATE, LOCAL):
            return True
        if d.factor is None:
            return False
        params = v.node.params or {}
        if "dim" not in params:
            return True
        dim, keepdim = params["dim"], params.get("keepdim", False)
        # A reduction of leading axes (or of all, or keeping them) lines up with broadcasting.
        return dim is None or keepdim or tuple(dim) == tuple(range(len(dim)))

    def apply_edge(self, v, i, g):
        """What flows back to input i when `g` arrives at v: the engine's own dispatch, on
        arrays; None where the rule gives no gradient (a custom Function's backward said None)."""
        args = self.args(v)
        parents = [None] * len(args)
        shapes = [None] * len(args)
        if self.derivative(v, i) is not None:
            parents[i] = i
            shapes[i] = Shape(np.shape(args[i]))
        received = {}
        deliver_gradients(v.node, g, args, v.value, parents, shapes, received, [], False, None)
        gi = received.get(i)
        return None if gi is None else np.asarray(gi)

    def formula(self, v, i, g_name="g"):
        """Input i's derivative formula, in the user's names, tidied: shapes written as tuples,
        `where` resolved to the branch the recorded values took, `unreduce` read as `expand`."""
        d = self.derivative(v, i)
        tree = self._resolve(v, expr.parse(d.formula))
        mapping = self.input_refs(v)
        mapping["out"] = v.ref()
        mapping["g"] = expr.name(g_name)
        for key, value in (v.node.params or {}).items():
            mapping[key] = _constant_tree(value)
        return expr.simplify(expr.substitute(tree, mapping))

    def factor_formula(self, v, i):
        """The per-element factor of a factor edge (1 for a sum, 1/n for a mean)."""
        d = self.derivative(v, i)
        if d.kind in (IDENTITY, NEGATE, LOCAL):
            return self.formula(v, i)
        mapping = {key: _constant_tree(value) for key, value in (v.node.params or {}).items()}
        return expr.simplify(expr.substitute(expr.parse(d.factor), mapping))

    def namespace(self, v):
        """The op's names bound to this node's numbers (to evaluate parts of its formulas)."""
        names = {
            p: (x.value if isinstance(x, Vertex) else x)
            for (_, x), p in zip(v.inputs, v.node.op.inputs, strict=False)
        }
        names["out"] = v.value
        names.update(v.node.params or {})
        return names

    def _resolve(self, v, tree):
        """Rewrite a formula tree for reading, using this node's numbers where they decide it."""
        names = None

        class Rewrite(ast.NodeTransformer):
            def visit_Attribute(self, node):
                self.generic_visit(node)
                if node.attr == "shape" and isinstance(node.value, ast.Name):
                    value = env().get(node.value.id)
                    if value is not None and node.value.id != "g":
                        return expr.const(tuple(np.shape(value)))
                return node

            def visit_Call(self, node):
                self.generic_visit(node)
                func = node.func.id if isinstance(node.func, ast.Name) else None
                if func == "where" and len(node.args) == 3:
                    # Resolving is for reading only: a condition this numeric namespace cannot
                    # evaluate (a function it lacks) leaves the where as written, which is true.
                    try:
                        cond = np.asarray(expr.evaluate(node.args[0], _numeric_names(env())))
                    except _UNEVALUATED:
                        return node
                    if cond.size and cond.all():
                        return node.args[1]
                    if cond.size and not cond.any():
                        return node.args[2]
                if func == "sum_to" and len(node.args) == 2:
                    # sum_to(X, shape) is a no-op where X already has that shape.
                    try:
                        inner = expr.evaluate(node.args[0], _numeric_names(env(), g=True))
                        target = expr.evaluate(node.args[1], _numeric_names(env(), g=True))
                        if np.shape(inner) == tuple(target):
                            return node.args[0]
                    except _UNEVALUATED:
                        return node
                if func == "unreduce" and len(node.args) == 4:
                    return ast.Call(func=expr.name("expand"), args=node.args[:2], keywords=[])
                return node

        def env():
            nonlocal names
            if names is None:
                names = self.namespace(v)
            return names

        return Rewrite().visit(expr._deepcopy(tree))

    def broadcast_note(self, v, i):
        """Where the engine summed a gradient because input i was broadcast, say so."""
        if not v.node.op.elementwise:
            return None
        item = v.inputs[i][1]
        shape = np.shape(item.value if isinstance(item, Vertex) else item)
        full = v.value.shape
        if shape == full:
            return None
        lead = len(full) - len(shape)
        axes = list(range(lead)) + [
            lead + k for k, n in enumerate(shape) if n == 1 and full[lead + k] != 1
        ]
        label = "axis" if len(axes) == 1 else "axes"
        where = ", ".join(str(a) for a in axes)
        name = item.short() if isinstance(item, Vertex) else "the constant"
        return f"summed over {label} {where}: {name} was broadcast from {shape} to {full}"


def _released_error(node, i, released):
    name = node.op.inputs[i] if i < len(node.op.inputs) else f"input {i}"
    what = f"shape {released.shape}" if released.shape is not None else released.kind
    return GraphError(
        f"explain: {node.op.name}'s constant input {name!r} ({what}) was freed by backward(): "
        "without retain_graph=True a graph keeps only small constants and those held elsewhere "
        "(a dropout mask or a custom Function's ctx is held only by the graph); explain before "
        "backward(), or call backward(retain_graph=True)"
    )


# What evaluating part of a formula on this node's numbers may raise when the formula needs
# something the numeric namespace does not have; anything else is a bug and propagates.
_UNEVALUATED = (NameError, TypeError, ValueError)


def _model_names(vertices, taken):
    """Unnamed tensors that are parameters of a model (frozen ones too) -> the name the model's
    named_parameters() gives them ("weight", "0.bias"). Where two separate models would give the
    same name (two Linear layers used side by side), each model's names get its class and a
    number in front ("Linear1.weight", "Linear2.weight")."""
    unnamed = [v for v in vertices if v.tensor is not None and v.name is None]
    found = parameter_names(v.tensor for v in unnamed)
    named = {v: found[id(v.tensor)] for v in unnamed if id(v.tensor) in found}
    names = [name for name, _ in named.values()]
    if len(set(names)) == len(names) and not any(name in taken for name in names):
        return {v: name for v, (name, _) in named.items()}
    prefix, count = {}, {}
    for _, model in named.values():
        if id(model) not in prefix:
            cls = type(model).__name__
            count[cls] = count.get(cls, 0) + 1
            prefix[id(model)] = f"{cls}{count[cls]}."
    return {v: prefix[id(model)] + name for v, (name, model) in named.items()}


def _fresh(base, taken):
    k = 1
    while f"{base}{k}" in taken:
        k += 1
    taken.add(f"{base}{k}")
    return f"{base}{k}"


def _pairs(names):
    if isinstance(names, dict):
        items = names.items()
    else:
        items = names
    for key, value in items:
        if isinstance(key, str):  # {"w1": tensor} is as good as {tensor: "w1"}
            key, value = value, key
        yield key, value


def _constant_tree(value):
    if value is None:
        return expr.const(None)
    if isinstance(value, np.ndarray | np.generic):
        if value.size == 1:
            return expr._number(value.item())
        return expr.const(f"array{value.shape}")
    if isinstance(value, bool):
        return expr.const(value)
    if isinstance(value, int | float):
        return expr._number(value)
    if isinstance(value, tuple):
        return expr.const(value)
    return expr.const(repr(value))


def _numeric_names(names, g=False):
    out = dict(names)
    if g:
        out["g"] = np.zeros_like(names["out"])
    out.update(
        sigmoid=special.expit,
        exp=np.exp,
        log=np.log,
        abs=np.abs,
        sign=np.sign,
        sqrt=np.sqrt,
        tanh=np.tanh,
        cos=np.cos,
        sin=np.sin,
    )
    return out
