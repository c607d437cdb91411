"""In-place operations, for optimizers and data preparation.

PyTorch's rules, with messages that say what to do: a leaf that requires grad may be changed in
place only under `no_grad`; a tensor in a graph is rebound to the result (its old value stays intact
for the nodes that saved it); and any change bumps the tensor's version, so a backward that would
read a value saved before the change refuses.
"""

import numpy as np

from ..engine.state import modes, state
from ..engine.tensor import Tensor
from . import elementwise as ew
from .shape import broadcast_to, to


def _recording(x, other=None):
    return (state.default_modes or modes.grad_enabled) and (
        x.requires_grad or (isinstance(other, Tensor) and other.requires_grad)
    )


def _rebind(name, x, compute, value=None):
    """Record an in-place op on a tensor in a graph: x takes the value and node of
    `compute(old)`, where `old` is x as it was, as a tensor object of its own. The recorded node
    saves `old`, so the version bump that marks x as changed (for nodes that saved x before) does
    not condemn the in-place op's own node. `value`, when given, is the exact new content (fill_
    and copy_ compute theirs as `old * 0 + value`, which is NaN where old is inf)."""
    if x.grad_fn is None and x.requires_grad:
        raise RuntimeError(
            f"{name} on a leaf tensor that requires grad: an in-place change would be lost to "
            "autograd. Do it under `with cr.no_grad():` (as optimizers do) or on a copy"
        )
    old = Tensor._wrap(x._data, x.grad_fn)
    old._version = x._version
    result = compute(old)
    x._bump_version()
    data = result._data if value is None else value
    x._data, x.grad_fn, x.requires_grad = data.astype(x.dtype, copy=False), result.grad_fn, True
    return x


def _scaled(other, alpha):
    return other if alpha == 1 else ew.mul(other, alpha)


def add_(x, other, alpha=1):
    if _recording(x, other):
        return _rebind("add_", x, lambda old: ew.add(old, _scaled(other, alpha)))
    o = other._data if isinstance(other, Tensor) else other
    np.add(x._data, o if alpha == 1 else np.multiply(o, alpha), out=x._data)
    x._bump_version()
    return x


def sub_(x, other, alpha=1):
    if _recording(x, other):
        return _rebind("sub_", x, lambda old: ew.sub(old, _scaled(other, alpha)))
    o = other._data if isinstance(other, Tensor) else other
    np.subtract(x._data, o if alpha == 1 else np.multiply(o, alpha), out=x._data)
    x._bump_version()
    return x


def mul_(x, other):
    if _recording(x, other):
        return _rebind("mul_", x, lambda old: ew.mul(old, other))
    np.multiply(
        x._data,
        other._data if isinstance(other, Tensor) else other,
        out=x._data,
        casting="same_kind",
    )
    x._bump_version()
    return x


def div_(x, other):
    if _recording(x, other):
        return _rebind("div_", x, lambda old: ew.div(old, other))
    np.divide(
        x._data,
        other._data if isinstance(other, Tensor) else other,
        out=x._data,
        casting="same_kind",
    )
    x._bump_version()
    return x


def fill_(x, value):
    return _fill("fill_", x, value)


def zero_(x):
    return _fill("zero_", x, 0)


def _fill(name, x, value):
    if _recording(x, value):
        filled = np.full(x.shape, value._data if isinstance(value, Tensor) else value)
        return _rebind(name, x, lambda old: ew.add(ew.mul(old, 0.0), value), filled)
    x._data[...] = value._data if isinstance(value, Tensor) else value
    x._bump_version()
    return x


def copy_(x, src):
    src_data = src._data if isinstance(src, Tensor) else np.asarray(src)
    if np.broadcast_shapes(src_data.shape, x.shape) != x.shape:
        raise ValueError(f"copy_: cannot copy shape {src_data.shape} into shape {tuple(x.shape)}")
    if _recording(x, src):
        copied = np.broadcast_to(src_data, x.shape)
        return _rebind(
            "copy_",
            x,
            lambda old: to(broadcast_to(src, x.shape), x.dtype) + ew.mul(old, 0.0),
            copied,
        )
    np.copyto(x._data, src_data, casting="unsafe")
    x._bump_version()
    return x


def clamp_(x, min=None, max=None):  # noqa: A002 - PyTorch's argument names
    if _recording(x):
        return _rebind("clamp_", x, lambda old: ew.clamp(old, min, max))
    np.clip(x._data, -np.inf if min is None else min, np.inf if max is None else max, out=x._data)
    x._bump_version()
    return x


def masked_fill_(x, mask, value):
    """x.masked_fill(mask, value) written into x; the mask must broadcast to x's shape."""
    mask_shape = mask.shape if hasattr(mask, "shape") else np.shape(mask)
    if np.broadcast_shapes(tuple(mask_shape), x.shape) != x.shape:
        raise RuntimeError(
            f"masked_fill_: mask of shape {tuple(mask_shape)} does not broadcast to the shape "
            f"{tuple(x.shape)} of the tensor filled in place"
        )
    if _recording(x, value):
        return _rebind("masked_fill_", x, lambda old: ew.masked_fill(old, mask, value))
    filled = ew.masked_fill(x, mask, value)  # checks the mask's and the value's kinds
    np.copyto(x._data, filled._data)
    x._bump_version()
    return x
