"""The dtypes chainrule supports, the default float dtype, and PyTorch's promotion rules."""

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

SUPPORTED = (float32, float64, int32, int64, bool_)
FLOATS = (float32, float64)

_default = [float32]


def get_default_dtype():
    return _default[0]


def set_default_dtype(dtype):
    dtype = as_dtype(dtype)
    if dtype not in FLOATS:
        raise TypeError(
            f"set_default_dtype: only float32 and float64 can be the default, not {dtype}"
        )
    _default[0] = dtype


def as_dtype(dtype):
    """Resolve a dtype given as a chainrule/NumPy dtype, a NumPy type or a name, or refuse it."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved not in SUPPORTED:
        names = ", ".join(str(d) for d in SUPPORTED)
        raise TypeError(f"dtype {dtype!r} is not supported; chainrule supports {names}")
    return resolved


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
