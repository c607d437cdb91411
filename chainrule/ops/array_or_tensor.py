"""The functions derivative code is written in, each working on NumPy arrays and on Tensors alike
(the op modules import this as `xp`, as array-API code names its array namespace). On arrays they
are NumPy (a fast backward); on Tensors they are chainrule ops, through the Tensor's methods, so
that `create_graph=True` records the backward pass itself.

Formula strings are evaluated in this namespace by the tests, so every name a formula uses is here.
"""

import numpy as np
from scipy import special

from ..engine.broadcast import broadcast_to, sum_to  # noqa: F401 - formulas name sum_to
from ..engine.dims import normalize_dims
from ..engine.tensor import Tensor


def _either(name, array_fn):
    """`array_fn` on arrays; on a Tensor, its method `name` (chainrule.ops attaches the methods
    before any Tensor can reach here)."""

    def fn(x, *args, **kwargs):
        if isinstance(x, Tensor):
            return getattr(x, name)(*args, **kwargs)
        return array_fn(x, *args, **kwargs)

    fn.__name__ = name
    return fn


def _sigmoid(x):
    return special.expit(x)


exp = _either("exp", np.exp)
log = _either("log", np.log)
log1p = _either("log1p", np.log1p)
sqrt = _either("sqrt", np.sqrt)
sin = _either("sin", np.sin)
cos = _either("cos", np.cos)
tanh = _either("tanh", np.tanh)
sigmoid = _either("sigmoid", _sigmoid)
sign = _either("sign", np.sign)
abs = _either("abs", np.abs)  # noqa: A001 - formulas say abs(x)
erf = _either("erf", special.erf)
tril = _either("tril", np.tril)
triu = _either("triu", np.triu)
roll = _either("roll", np.roll)
flip = _either("flip", np.flip)
cumsum = _either("cumsum", np.cumsum)


def negated(shifts):
    """-shifts for one shift or a tuple of them (roll's inverse)."""
    return tuple(-s for s in shifts) if isinstance(shifts, tuple) else -shifts


def where(cond, a, b):
    if isinstance(a, Tensor):
        return a.where(cond, b)
    if isinstance(b, Tensor):  # where(cond, a, b) is where(not cond, b, a)
        return b.where(~cond if isinstance(cond, Tensor) else np.logical_not(cond), a)
    if isinstance(cond, Tensor):
        raise TypeError("where: with a Tensor condition, give at least one Tensor branch")
    return np.where(cond, a, b)


def zeros_like(x):
    if isinstance(x, Tensor):
        return x.new_zeros(x.shape)
    return np.zeros_like(x)


def sum(x, dim=None, keepdim=False):  # noqa: A001
    if isinstance(x, Tensor):
        return x.sum(dim, keepdim)
    return np.sum(x, axis=dim, keepdims=keepdim)


def mean(x, dim=None, keepdim=False):
    if isinstance(x, Tensor):
        return x.mean(dim, keepdim)
    return np.mean(x, axis=dim, keepdims=keepdim)


def reshape(x, shape):
    return x.reshape(shape)


def swapaxes(x, d0, d1):
    if isinstance(x, Tensor):
        return x.transpose(d0, d1)
    return np.swapaxes(x, d0, d1)


def permute(x, dims):
    if isinstance(x, Tensor):
        return x.permute(dims)
    return np.transpose(x, dims)


def inverse_permutation(dims):
    return tuple(int(i) for i in np.argsort(dims))


def unreduce(g, shape, dim, keepdim):
    """Undo a reduction's shape change: put the reduced axes back (size 1) and broadcast."""
    if not keepdim and dim is not None:
        g = g.reshape(_kept_shape(shape, dim))
    elif dim is None and not keepdim:
        g = g.reshape((1,) * len(shape))
    if isinstance(g, Tensor):
        return broadcast_to(g, shape)
    # A filled array rather than np.broadcast_to's view: as fast for the sizes reductions see, and
    # writable, so a leaf can keep it as its gradient without a copy.
    full = np.empty(shape, dtype=g.dtype)
    full[...] = g
    return full


def _kept_shape(shape, dim):
    if dim is None:
        dims = range(len(shape))
    else:
        dims = normalize_dims(dim if isinstance(dim, tuple | list) else (dim,), len(shape))
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def softmax(x, dim):
    """The tree's one softmax: on arrays it is the `softmax` op's forward (ops.nn.SOFTMAX), on a
    Tensor that op."""
    if isinstance(x, Tensor):
        return x.softmax(dim)
    e = np.empty_like(x)  # in place from here on: an array of its own even for a 0-d x
    np.subtract(x, np.max(x, axis=dim, keepdims=True), out=e)
    np.exp(e, out=e)
    e /= np.sum(e, axis=dim, keepdims=True)
    return e


# Python floats: a NumPy float64 scalar would turn float32 arrays into float64 (NumPy 2 rules).
_INV_SQRT_2PI = float(1 / np.sqrt(2 * np.pi))
_SQRT_HALF = float(np.sqrt(0.5))


def onehot(index, classes, dtype=np.float64):
    """Rows of the identity: the target distribution of class indices."""
    return np.eye(classes, dtype=dtype)[index]


def normal_pdf(x):
    return exp(-0.5 * x * x) * _INV_SQRT_2PI


def normal_cdf(x):
    return 0.5 * (1 + erf(x * _SQRT_HALF))


def ties(x, out, shape, dim, keepdim):
    """Where x equals its max/min along `dim`, each tie's share (1/count) of the gradient."""
    mask = x == unreduce(out, shape, dim, keepdim)
    mask = mask.to(x.dtype) if isinstance(mask, Tensor) else mask.astype(x.dtype)
    return mask / sum(mask, dim, True)


__all__ = [name for name in dir() if not name.startswith("_")]
