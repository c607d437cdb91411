"""Operation declarations and the recording of graph nodes.

An `Op` is data: its forward as array code and as a formula, and for each differentiable input a
`Derivative` holding the formula people read and the array code the engine runs. The engine never
looks inside an op; the explainer reads the same declaration to show its work, and the tests
generate their tables from the registry of declarations (`declared_ops`).
"""

import re
import traceback
import weakref

import numpy as np

from .state import modes, state
from .tensor import Tensor

LOCAL, VJP, IDENTITY, NEGATE = "local", "vjp", "identity", "negate"


class Derivative:
    """One input's partial derivative.

    kind LOCAL: `fn(*inputs, out, **params)` is d out / d input elementwise; the engine multiplies it by
    the incoming gradient and sums away broadcast axes. kind VJP: `fn(g, *inputs, out, **params)` is the
    whole vector-Jacobian product, already in the input's shape. IDENTITY and NEGATE are locals of 1 and
    -1 that the engine applies without arithmetic.

    `factor`, for a VJP that only spreads g back over the input and scales it (a sum's 1, a mean's
    1 / n, a cast's 1), is that per-element factor as a formula: the explainer can then show the
    edge as one factor of a product of local derivatives.
    """

    __slots__ = ("kind", "formula", "fn", "factor")

    def __init__(self, kind, formula, fn=None, factor=None):
        self.kind, self.formula, self.fn, self.factor = kind, formula, fn, factor

    def __repr__(self):
        return f"{self.kind}({self.formula!r})"


def local(formula, fn):
    if formula == "1":
        return Derivative(IDENTITY, formula)
    if formula == "-1":
        return Derivative(NEGATE, formula)
    return Derivative(LOCAL, formula, fn)


def vjp(formula, fn, factor=None):
    return Derivative(VJP, formula, fn, factor)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)?")


# Every op chainrule declares, in declaration order (the tests generate their tables from it).
# An op made for a user's autograd.Function is not one of them.
_DECLARED = []


def declared_ops():
    """Every op chainrule declares (an op family's members as they are made, e.g. cat of 3)."""
    return list(_DECLARED)


class Op:
    """An operation, declared once: forward (as array code and as a formula), per-input
    derivatives, and what backward must save.

    `formula` is the forward as people read it, in the op's input names: the explainer prints it
    (substituting the user's names) and the symbolic derivation evaluates it. Where the forward is
    not an expression of simpler functions it is a call, `reshape(x)`, whose meaning includes the
    node's params. `derivatives` names every input: a `Derivative`, or None for an input that
    takes no gradient (a condition, an index); an op without derivatives is not differentiable.
    `variant` tells apart declarations of one name (gelu and its tanh approximation).

    What is saved is read off the formulas: an input named in the formula of a derivative that this
    call needs is kept until backward, and so is `out`; an input used only as `x.shape` costs
    nothing. (`keep` names inputs a rule needs although its formula does not show them.) A generated
    test evaluates each formula against its array code, so the two cannot drift apart.
    """

    __slots__ = (
        "name",
        "forward",
        "formula",
        "inputs",
        "derivatives",
        "elementwise",
        "params",
        "variant",
        "differentiable",
        "uses",
        "keep",
        "plans",
    )

    def __init__(
        self,
        name,
        forward,
        inputs=("x",),
        derivatives=None,
        *,
        formula=None,
        elementwise=False,
        params=(),
        keep=(),
        variant=None,
        declared=True,
    ):
        _check_declaration(name, formula, inputs, derivatives)
        derivatives = derivatives or {}
        self.name = name
        self.forward = forward
        self.formula = formula
        self.inputs = tuple(inputs)
        self.derivatives = tuple(derivatives.get(i) for i in inputs)
        self.differentiable = any(d is not None for d in self.derivatives)
        self.elementwise = elementwise
        self.params = tuple(params)
        self.variant = variant
        self.keep = frozenset(keep)
        self.uses = tuple(
            _names_used(d.formula) if d is not None else (frozenset(), frozenset())
            for d in self.derivatives
        )
        self.plans = {}
        if declared:
            _DECLARED.append(self)

    @property
    def key(self):
        """The declaration's name among all ops: its name, and its variant where it has one."""
        return self.name if self.variant is None else f"{self.name}[{self.variant}]"

    def plan(self, needs):
        """For a pattern of which inputs need a gradient: which inputs to keep, which to keep the
        shape of, and whether to keep the output."""
        plan = self.plans.get(needs)
        if plan is None:
            values, shapes = set(self.keep), set()
            for need, (used_values, used_shapes) in zip(needs, self.uses):
                if need:
                    values |= used_values
                    shapes |= used_shapes
            plan = (
                tuple(name in values for name in self.inputs),
                tuple(name in shapes for name in self.inputs),
                "out" in values,
            )
            self.plans[needs] = plan
        return plan

    def __repr__(self):
        return f"Op({self.name})"


def _check_declaration(name, formula, inputs, derivatives):
    """A declaration that leaves something out fails here, not later as a dropped gradient."""
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError(f"op {name}: give its forward as a formula (formula=...)")
    if not derivatives:
        return  # not differentiable at all
    unknown = set(derivatives) - set(inputs)
    if unknown:
        raise ValueError(f"op {name}: derivatives given for unknown inputs {sorted(unknown)}")
    missing = [i for i in inputs if i not in derivatives]
    if missing:
        raise ValueError(
            f"op {name}: no derivative declared for inputs {missing}; give each one, or None for "
            "an input that takes no gradient"
        )
    for i, d in derivatives.items():
        if d is None:
            continue
        if not isinstance(d, Derivative):
            raise TypeError(f"op {name}: the derivative of {i!r} must be local(...) or vjp(...)")
        if d.fn is None and d.kind in (LOCAL, VJP):
            raise ValueError(f"op {name}: the derivative of {i!r} ({d.formula!r}) has no code")


def _names_used(formula):
    """The names a formula reads the value of, and those it reads only the shape of."""
    values, shapes = set(), set()
    for ident in _IDENTIFIER.findall(formula):
        base, _, attr = ident.partition(".")
        (shapes if attr in ("shape", "ndim") else values).add(base)
    return frozenset(values), frozenset(shapes)


class Shape:
    """Stands in for an input that backward needs only the shape of, so its data can be freed."""

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape

    @property
    def ndim(self):
        return len(self.shape)


class Node:
    """One recorded application of an op: the edges back to its inputs and what backward needs.

    `saved` holds, per input, the Tensor or constant that backward needs, a `Shape`, or None;
    `arrays` is the same with Tensors replaced by their arrays (what a normal backward computes
    with; `saved` serves create_graph and the in-place checks). Both become None when a backward
    without retain_graph frees them; `constants` then keeps the constant inputs (see
    `keep_constants`), so that the graph can still be explained.
    """

    # Rarely set, so class defaults rather than a store per node: this is created once per op.
    # (pre_hooks and retained, the hooks on the output tensor and its weak reference when it
    # called retain_grad(), are stored on every node instead: backward reads them for each one,
    # and an instance attribute reads faster than a class default.)
    name = None  # the user's name for the output tensor
    trace = None  # where user code created it, under detect_anomaly
    out_modified = False  # the output was changed in place after it was computed
    constants = None  # after a backward freed `saved`: what keep_constants kept of it

    def __repr__(self):
        return f"<Node {self.op.name}#{self.seq}{' ' + self.name if self.name else ''}>"

    @property
    def next_functions(self):
        """PyTorch's view of the edges back to the inputs: a `(node, 0)` pair per input, where
        a leaf's node is an `AccumulateGrad` holding it as `.variable` and an input that takes no
        gradient has `(None, 0)`. Made when asked for, so recording pays nothing for it."""
        return tuple(
            (None, 0)
            if edge is None
            else (edge, 0)
            if type(edge) is Node
            else (AccumulateGrad(edge), 0)
            for edge in self.next
        )


class AccumulateGrad:
    """Where a leaf's gradient ends up (its `.grad`), as PyTorch names it in `next_functions`."""

    __slots__ = ("variable",)
    next_functions = ()

    def __init__(self, variable):
        self.variable = variable

    def __eq__(self, other):
        return isinstance(other, AccumulateGrad) and other.variable is self.variable

    def __hash__(self):
        return id(self.variable)

    def __repr__(self):
        return "<AccumulateGrad>"


# What a freed node keeps of its constants without looking further: these hold no array.
LIGHT_TYPES = frozenset({float, int, bool, complex, type(None), Shape})

# A freed node keeps a constant array (or a constant tensor) of at most this many bytes: the
# numbers a lesson or a slide writes inline, which nothing else holds. Anything bigger (a batch, a
# dropout mask) it keeps only while something else holds it, so that a graph that outlives its
# backward, as the last step's loss does in a training loop, holds no more memory than before.
SMALL_CONSTANT_BYTES = 4096


class Released:
    """A constant input that a freed node holds weakly: `ref` (None where the object takes no
    weak reference), `copy`, a stand-in for a small one that was a view of a bigger array (it
    would otherwise keep the whole array alive) or computed in another graph, and what to call
    it in a message."""

    __slots__ = ("ref", "copy", "shape", "kind")

    def __init__(self, x, copy=None):
        try:
            self.ref = weakref.ref(x)
        except TypeError:
            self.ref = None
        self.copy = copy
        self.shape = tuple(x.shape) if isinstance(x, Tensor | np.ndarray) else None
        self.kind = type(x).__name__

    def value(self):
        """The constant, or None where nothing kept it."""
        x = None if self.ref is None else self.ref()
        return self.copy if x is None else x


def keep_constants(nexts, saved):
    """What a node keeps of `saved` when backward frees it: per input, its constant (an input
    without a gradient edge, whose value nothing else in the graph holds), None for the rest.
    Small constants are kept; others become `Released`."""
    kept = []
    for parent, x in zip(nexts, saved):
        if parent is not None or type(x) in LIGHT_TYPES:
            kept.append(None if parent is not None else x)
        elif isinstance(x, Tensor | np.ndarray):
            array = x._data if isinstance(x, Tensor) else x
            if array.nbytes > SMALL_CONSTANT_BYTES:
                kept.append(Released(x))
            elif array.base is None and getattr(x, "grad_fn", None) is None:
                kept.append(x)
            elif isinstance(x, Tensor):
                stand_in = Tensor._wrap(array.copy())
                stand_in._name = x.name
                kept.append(Released(x, stand_in))
            else:
                kept.append(Released(x, array.copy()))
        elif isinstance(x, np.generic | str):
            kept.append(x)
        else:  # an object that may hold anything (a custom Function's ctx holds its saved tensors)
            kept.append(Released(x))
    return tuple(kept)


def constant_inputs(node):
    """Per input of `node`, the constant it was given (None where the input has a gradient
    edge); after a backward freed the node, a constant nothing holds any more is `Released`."""
    values = node.saved if node.saved is not None else node.constants
    if values is None:  # freed, and it had no constants
        return (None,) * len(node.next)
    return tuple(
        None if parent is not None else _resolve(x)
        for parent, x in zip(node.next, values, strict=False)
    )


def _resolve(x):
    if type(x) is not Released:
        return x
    value = x.value()
    return x if value is None else value


def _new_node(op, nexts, saved, arrays, out_array, keep_out, params):
    node = Node()
    node.op = op
    node.next = nexts
    node.saved = saved
    node.arrays = arrays
    node.out = out_array if keep_out else None
    node.params = params
    node.pre_hooks = node.retained = None
    node.seq = next(state.sequence)
    if not state.default_modes and modes.anomaly:
        node.trace = _user_frame()
    return Tensor._wrap(out_array, node)


def record(op, inputs, out_array, params):
    """Build the node for `op(*inputs) -> out_array` and return the output tensor."""
    needs = tuple(
        isinstance(x, Tensor) and x.requires_grad and d is not None
        for x, d in zip(inputs, op.derivatives)
    )
    keep, keep_shape, keep_out = op.plans.get(needs) or op.plan(needs)
    out_shape = out_array.shape
    nexts, saved, arrays = [], [], []
    for x, need, k, ks in zip(inputs, needs, keep, keep_shape):
        if not need:
            # Constants are kept whether or not a rule needs them: the explainer recomputes
            # values from the graph, and a constant cannot be recovered any other way.
            nexts.append(None)
            saved.append(x)
            arrays.append(x._data if isinstance(x, Tensor) else x)
            continue
        nexts.append(x.grad_fn or x)
        if k:
            saved.append(x)
            arrays.append(x._data)
        elif ks or (op.elementwise and x._data.shape != out_shape):
            placeholder = Shape(x._data.shape)
            saved.append(placeholder)
            arrays.append(placeholder)
        else:
            saved.append(None)
            arrays.append(None)
    return _new_node(op, tuple(nexts), tuple(saved), tuple(arrays), out_array, keep_out, params)


def record_binary(op, a, b, out_array, need_a, need_b):
    """`record` for two-input elementwise ops, unrolled: this is the hot path of small-tensor work."""
    needs = (need_a, need_b)
    # The plan is looked up here rather than through op.plan: this runs once per recorded op.
    keep, keep_shape, keep_out = op.plans.get(needs) or op.plan(needs)
    out_shape = out_array.shape
    if need_a:
        ea = a.grad_fn or a
        if keep[0]:
            sa, aa = a, a._data
        elif keep_shape[0] or a._data.shape != out_shape:
            sa = aa = Shape(a._data.shape)
        else:
            sa = aa = None
    else:
        ea, sa = None, a
        aa = a._data if isinstance(a, Tensor) else a
    if need_b:
        eb = b.grad_fn or b
        if keep[1]:
            sb = b
            ab = b._data
        elif keep_shape[1] or b._data.shape != out_shape:
            sb = ab = Shape(b._data.shape)
        else:
            sb = ab = None
    else:
        eb, sb = None, b
        ab = b._data if isinstance(b, Tensor) else b
    return _new_node(op, (ea, eb), (sa, sb), (aa, ab), out_array, keep_out, None)


_ONE_INPUT = (True,)


def record_unary(op, x, out_array, params):
    """`record` for the one-input case, without the loops."""
    keep, keep_shape, keep_out = op.plans.get(_ONE_INPUT) or op.plan(_ONE_INPUT)
    if keep[0]:
        saved, array = x, x._data
    elif keep_shape[0] or (op.elementwise and x._data.shape != out_array.shape):
        saved = array = Shape(x._data.shape)
    else:
        saved = array = None
    return _new_node(op, (x.grad_fn or x,), (saved,), (array,), out_array, keep_out, params)


def apply(op, inputs, params=None):
    """Run `op` on Tensors/constants and record a node when a gradient may be needed."""
    arrays = [x._data if isinstance(x, Tensor) else x for x in inputs]
    try:
        out = op.forward(*arrays, **params) if params else op.forward(*arrays)
    except (ValueError, IndexError) as error:
        raise shape_error(op, inputs, error) from None
    if not isinstance(out, np.ndarray):
        out = np.asarray(out)
    if (state.default_modes or modes.grad_enabled) and op.differentiable and out.dtype.kind == "f":
        for x in inputs:
            if isinstance(x, Tensor) and x.requires_grad:
                return record(op, inputs, out, params)
    return Tensor._wrap(out)


def apply_unary(op, x, params):
    """`apply` for one Tensor input: the common case of reductions and ops with parameters."""
    try:
        out = op.forward(x._data, **params) if params else op.forward(x._data)
    except (ValueError, IndexError) as error:
        raise shape_error(op, (x,), error) from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if (
        x.requires_grad
        and (state.default_modes or modes.grad_enabled)
        and op.differentiable
        and out.dtype.kind == "f"
    ):
        return record_unary(op, x, out, params)
    return Tensor._wrap(out)


def shape_error(op, inputs, error):
    shapes = " and ".join(
        str(tuple(x._data.shape)) if isinstance(x, Tensor) else type(x).__name__ for x in inputs
    )
    return ValueError(f"{op.name}: cannot apply to inputs of shapes {shapes}: {error}")


_PACKAGE_DIR = __file__.rsplit("/engine/", 1)[0]


def _user_frame():
    """The innermost stack frame outside chainrule: where the user's code created this node."""
    for frame in reversed(traceback.extract_stack()):
        if not frame.filename.startswith(_PACKAGE_DIR):
            return frame
    return None
