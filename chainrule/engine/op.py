"""Operation declarations and the recording of graph nodes.

An `Op` is data: its forward (array code), and for each differentiable input a `Derivative` holding
the formula people read and the array code the engine runs. The engine never looks inside an op; the
explainer reads the same declaration to show its work.
"""

import re
import traceback

import numpy as np

from .state import state
from .tensor import Tensor

LOCAL, VJP, IDENTITY, NEGATE = "local", "vjp", "identity", "negate"


class Derivative:
    """One input's partial derivative.

    kind LOCAL: `fn(*inputs, out, **params)` is d out / d input elementwise; the engine multiplies it by
    the incoming gradient and sums away broadcast axes. kind VJP: `fn(g, *inputs, out, **params)` is the
    whole vector-Jacobian product, already in the input's shape. IDENTITY and NEGATE are locals of 1 and
    -1 that the engine applies without arithmetic.
    """

    __slots__ = ("kind", "formula", "fn")

    def __init__(self, kind, formula, fn=None):
        self.kind, self.formula, self.fn = kind, formula, fn

    def __repr__(self):
        return f"{self.kind}({self.formula!r})"


def local(formula, fn):
    if formula == "1":
        return Derivative(IDENTITY, formula)
    if formula == "-1":
        return Derivative(NEGATE, formula)
    return Derivative(LOCAL, formula, fn)


def vjp(formula, fn):
    return Derivative(VJP, formula, fn)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)?")


class Op:
    """An operation, declared once: forward, per-input derivatives, and what backward must save.

    What is saved is read off the formulas: an input named in some formula is kept until backward, and
    so is `out`; an input used only as `x.shape` costs nothing. A generated test evaluates each formula
    against its array code, so the two cannot drift apart.
    """

    __slots__ = ("name", "forward", "inputs", "derivatives", "save_inputs", "save_out",
                 "elementwise", "params", "doc", "differentiable")

    def __init__(self, name, forward, inputs=("x",), derivatives=None, elementwise=False,
                 params=(), doc=""):
        derivatives = derivatives or {}
        unknown = set(derivatives) - set(inputs)
        if unknown:
            raise ValueError(f"op {name}: derivatives given for unknown inputs {sorted(unknown)}")
        self.name = name
        self.forward = forward
        self.inputs = tuple(inputs)
        self.derivatives = tuple(derivatives.get(i) for i in inputs)
        self.differentiable = any(d is not None for d in self.derivatives)
        self.elementwise = elementwise
        self.params = tuple(params)
        self.doc = doc
        used = set()
        for d in derivatives.values():
            for ident in _IDENTIFIER.findall(d.formula):
                base, _, attr = ident.partition(".")
                if attr not in ("shape", "ndim"):
                    used.add(base)
        self.save_inputs = tuple(i in used for i in inputs)
        self.save_out = "out" in used

    def __repr__(self):
        return f"Op({self.name})"


class Shape:
    """Stands in for an input that backward needs only the shape of, so its data can be freed."""

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape

    @property
    def ndim(self):
        return len(self.shape)


class Node:
    """One recorded application of an op: the edges back to its inputs and what backward needs."""

    __slots__ = ("op", "next", "saved", "out", "params", "seq", "name", "pre_hooks", "retained",
                 "trace", "freed", "out_modified", "out_shape", "__weakref__")

    def __repr__(self):
        return f"<Node {self.op.name}#{self.seq}{' ' + self.name if self.name else ''}>"


def record(op, inputs, out_array, params):
    """Build the node for `op(*inputs) -> out_array` and return the output tensor."""
    nexts = []
    saved = []
    for x, d, keep in zip(inputs, op.derivatives, op.save_inputs):
        if isinstance(x, Tensor):
            if x.requires_grad and d is not None:
                nexts.append(x.grad_fn or x)
                saved.append(x if keep else Shape(x.data.shape))
            else:
                # Constants are kept whether or not a rule needs them: the explainer recomputes
                # values from the graph, and a constant cannot be recovered any other way.
                nexts.append(None)
                saved.append(x)
        else:
            nexts.append(None)
            saved.append(x)
    node = Node()
    node.op = op
    node.next = tuple(nexts)
    node.saved = tuple(saved)
    node.out = out_array if op.save_out else None
    node.out_shape = out_array.shape
    node.params = params
    state.counter += 1
    node.seq = state.counter
    node.name = None
    node.pre_hooks = None
    node.retained = None
    node.freed = False
    node.out_modified = False
    node.trace = _user_frame() if state.anomaly else None
    return Tensor._wrap(out_array, node)


def record_unary(op, x, out_array, params):
    """`record` for the common one-input case, without the loops."""
    node = Node()
    node.op = op
    node.next = (x.grad_fn or x,)
    node.saved = (x,) if op.save_inputs[0] else (Shape(x.data.shape),)
    node.out = out_array if op.save_out else None
    node.out_shape = out_array.shape
    node.params = params
    state.counter += 1
    node.seq = state.counter
    node.name = None
    node.pre_hooks = None
    node.retained = None
    node.freed = False
    node.out_modified = False
    node.trace = _user_frame() if state.anomaly else None
    return Tensor._wrap(out_array, node)


def apply(op, inputs, params=None):
    """Run `op` on Tensors/constants and record a node when a gradient may be needed."""
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    try:
        out = op.forward(*arrays, **params) if params else op.forward(*arrays)
    except (ValueError, IndexError) as error:
        raise shape_error(op, inputs, error) from None
    if not isinstance(out, np.ndarray):
        out = np.asarray(out)
    if state.enabled and op.differentiable and out.dtype.kind == "f":
        for x in inputs:
            if isinstance(x, Tensor) and x.requires_grad:
                return record(op, inputs, out, params)
    return Tensor._wrap(out)


def shape_error(op, inputs, error):
    shapes = " and ".join(
        str(tuple(x.data.shape)) if isinstance(x, Tensor) else type(x).__name__ for x in inputs
    )
    return ValueError(f"{op.name}: cannot apply to inputs of shapes {shapes}: {error}")


_PACKAGE_DIR = __file__.rsplit("/engine/", 1)[0]


def _user_frame():
    """The innermost stack frame outside chainrule: where the user's code created this node."""
    for frame in reversed(traceback.extract_stack()):
        if not frame.filename.startswith(_PACKAGE_DIR):
            return frame
    return None
