"""Turning op declarations into the functions users call: operand coercion, dtype promotion and
recording, with fast paths for the one- and two-input cases that dominate small-tensor work."""

import numbers

import numpy as np

from ..engine import dtypes
from ..engine.op import Op, apply, apply_unary, record_binary, record_unary, shape_error, vjp
from ..engine.state import modes, state
from ..engine.tensor import Tensor


def as_tensor(value, like=None):
    """A Tensor for `value` (no copy for arrays). Python floats take the default dtype."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return Tensor._wrap(value)
    return Tensor(value)


def scalar_operand(value, other):
    """Python numbers stay Python numbers so that NumPy keeps the tensor's dtype (a float32 tensor
    times 2.5 stays float32), except where PyTorch's rules give another dtype."""
    if type(value) is float:
        return (
            value
            if other._data.dtype.kind == "f"
            else Tensor._wrap(np.array(value, dtype=dtypes.get_default_dtype()))
        )
    if type(value) is int or type(value) is bool:
        return value
    if isinstance(value, np.generic):
        return scalar_operand(value.item(), other)
    if isinstance(value, numbers.Number):
        return scalar_operand(float(value), other)
    return as_tensor(value)


def promote_pair(a, b):
    target = dtypes.promote(a._data, b._data)
    if a._data.dtype != target:
        a = cast(a, target)
    if b._data.dtype != target:
        b = cast(b, target)
    return a, b


# ---- the cast that dtype promotion needs -------------------------------------------------------


def _to(x, dtype, source):
    return x.astype(dtype)


TO = Op(
    "to",
    _to,
    params=("dtype", "source"),
    derivatives={
        "x": vjp("g.to(source)", lambda g, x, out, dtype, source: _cast(g, source), factor="1"),
    },
    formula="x",
)


def _cast(g, dtype):
    return to(g, dtype) if isinstance(g, Tensor) else g.astype(dtype)


def to(x, dtype):
    """A copy in `dtype` (the same tensor when it already has it), differentiable between floats."""
    dtype = dtypes.as_dtype(dtype)
    if x._data.dtype == dtype:
        return x
    if x.requires_grad and dtype.kind != "f":
        return Tensor._wrap(x._data.astype(dtype))
    return call(TO, (x,), dtype=dtype, source=x.dtype)


cast = to


def binary(op):
    """The public function for a two-input elementwise op."""
    forward = op.forward
    differentiable = op.differentiable

    def fn(a, b):
        if isinstance(a, Tensor):
            ad = a._data
            need_a = a.requires_grad
            if isinstance(b, Tensor):
                bd = b._data
                if ad.dtype is not bd.dtype and ad.dtype != bd.dtype:
                    return fn(*promote_pair(a, b))
                need_b = b.requires_grad
            elif type(b) is float and ad.dtype.kind == "f":
                # A 0-d array of the tensor's dtype: what NumPy would convert the weak scalar to
                # anyway, and several times faster in the backward rules that multiply by it.
                b = bd = np.array(b, ad.dtype)
                need_b = False
            else:
                b = scalar_operand(b, a)
                if isinstance(b, Tensor):
                    return fn(a, b)
                bd, need_b = b, False
        elif isinstance(b, Tensor):
            a = scalar_operand(a, b)
            if isinstance(a, Tensor):
                return fn(a, b)
            ad, bd = a, b._data
            need_a, need_b = False, b.requires_grad
        else:
            return fn(as_tensor(a), b)
        try:
            out = forward(ad, bd)
        except ValueError as error:
            raise shape_error(op, (a, b), error) from None
        if type(out) is not np.ndarray:  # ufuncs turn 0-d results into NumPy scalars
            out = np.asarray(out)
        if (
            (need_a or need_b)
            and (state.default_modes or modes.grad_enabled)
            and differentiable
            and out.dtype.kind == "f"
        ):
            return record_binary(op, a, b, out, need_a, need_b)
        return Tensor._wrap(out)

    fn.__name__ = op.name
    fn.op = op
    return fn


def unary(op, real=False):
    """The public function for a one-input op without parameters. `real`: an op of real analysis
    (exp, sin, ...), which computes integer input in the default float dtype, as in PyTorch."""
    forward = op.forward

    def fn(x):
        if not isinstance(x, Tensor):
            x = as_tensor(x)
        data = x._data
        if real and data.dtype.kind != "f":
            data = data.astype(dtypes.get_default_dtype())
        out = forward(data)
        if type(out) is not np.ndarray:
            out = np.asarray(out)
        if x.requires_grad and (state.default_modes or modes.grad_enabled):
            return record_unary(op, x, out, None)
        return Tensor._wrap(out)

    fn.__name__ = op.name
    fn.op = op
    return fn


def float_unary(op):
    return unary(op, real=True)


def call(op, inputs, **params):
    """Generic application, for ops with parameters or many inputs."""
    if len(inputs) == 1:
        x = inputs[0]
        return apply_unary(op, x if isinstance(x, Tensor) else as_tensor(x), params)
    return apply(op, tuple(x if isinstance(x, Tensor) else as_tensor(x) for x in inputs), params)


__all__ = ["TO", "apply", "as_tensor", "binary", "call", "cast", "float_unary", "to", "unary"]
