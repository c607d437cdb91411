"""The dtypes chainrule supports, the default float dtype, and PyTorch's promotion rules."""

import numpy as np

from .state import state

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

SUPPORTED = (float32, float64, int32, int64, bool_)


class UnsupportedDtype:
    """A PyTorch dtype NumPy has no counterpart for (bfloat16): it can be named, e.g. in
    `autocast(dtype=cr.bfloat16)`, but making a tensor with it is refused."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"cr.{self.name}"


bfloat16 = UnsupportedDtype("bfloat16")
# PyTorch dtypes that name a NumPy type chainrule does not compute in, with what to use instead.
_INSTEAD = {
    "float16": "float32 (cr.float32): chainrule computes in float32 or float64 on the CPU, "
    "where half precision brings no speed",
    "bfloat16": "float32 (cr.float32): NumPy has no bfloat16",
    "uint8": "bool (cr.bool) for masks, int64 (cr.long) for numbers",
    "int8": "int32 (cr.int) or int64 (cr.long)",
    "int16": "int32 (cr.int) or int64 (cr.long)",
}
FLOATS = (float32, float64)


def get_default_dtype():
    return state.default_dtype


def set_default_dtype(dtype):
    dtype = as_dtype(dtype)
    if dtype not in FLOATS:
        raise TypeError(
            f"set_default_dtype: only float32 and float64 can be the default, not {dtype}"
        )
    state.default_dtype = dtype  # process-wide, as in PyTorch


def as_dtype(dtype):
    """Resolve a dtype given as a chainrule/NumPy dtype, a NumPy type or a name, or refuse it."""
    resolved = None
    if not isinstance(dtype, UnsupportedDtype):
        try:
            resolved = np.dtype(dtype)
        except TypeError:
            pass
        if resolved in SUPPORTED:
            return resolved
    names = ", ".join(str(d) for d in SUPPORTED)
    name = getattr(resolved if resolved is not None else dtype, "name", None)
    if name in _INSTEAD:
        raise TypeError(
            f"dtype {name} is not supported; use {_INSTEAD[name]} (chainrule supports {names})"
        )
    raise TypeError(f"dtype {dtype!r} is not supported; chainrule supports {names}")


def promote(a, b):
    """PyTorch's result dtype for two tensors: a higher category (bool < integer < float) wins;
    within a category, dimensioned tensors outrank 0-d ones, and then the wider type wins."""
    da, db = a.dtype, b.dtype
    if da == db:
        return da
    ca, cb = category(da), category(db)
    if ca != cb:
        return da if ca > cb else db
    if (a.ndim == 0) != (b.ndim == 0):
        return db if a.ndim == 0 else da
    return np.promote_types(da, db)


_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2}


def category(dtype):
    """0 for bool, 1 for integers, 2 for floats: PyTorch promotes to the higher category."""
    return _CATEGORY[dtype.kind]
