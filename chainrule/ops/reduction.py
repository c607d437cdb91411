"""Reductions. `dim` is an int, a tuple or None (everything); the rule puts the reduced axes back."""

import builtins
from collections import namedtuple

import numpy as np

from ..engine import dtypes
from ..engine.dims import normalize_dim, normalize_dims
from ..engine.op import Op, vjp
from ..engine.tensor import Tensor
from . import array_or_tensor as xp
from .build import as_tensor, call, to
from .elementwise import abs as abs_
from .elementwise import maximum, minimum
from .shape import permute, reshape, squeeze, unsqueeze


def _dims(x, dim):
    """Normalise `dim` to a sorted tuple of non-negative axes, or None for all of them."""
    if dim is None:
        return None
    dims = tuple(dim) if isinstance(dim, tuple | list) else (dim,)
    if not dims:  # an empty list of dims means all of them, as in PyTorch
        return None
    normalized = tuple(sorted(normalize_dims(dims, x.ndim)))
    return normalized if x.ndim else None


def _count(x, dims):
    return x._data.size if dims is None else int(np.prod([x.shape[i] for i in dims]))


def _sum(x, dim, keepdim):
    return np.add.reduce(x, axis=dim, keepdims=keepdim)


SUM = Op(
    "sum",
    _sum,
    params=("dim", "keepdim"),
    derivatives={
        "x": vjp(
            "unreduce(g, x.shape, dim, keepdim)",
            lambda g, x, out, dim, keepdim: xp.unreduce(g, x.shape, dim, keepdim),
            factor="1",
        ),
    },
    formula="sum(x)",
)


def sum(x, dim=None, keepdim=False, dtype=None):  # noqa: A001 - PyTorch's name
    x = as_tensor(x)
    if dtype is not None:
        x = to(x, dtype)
    elif x.dtype.kind in "bi" and x.dtype != dtypes.int64:
        x = Tensor._wrap(x._data.astype(dtypes.int64))
    return call(SUM, (x,), dim=_dims(x, dim), keepdim=keepdim)


def _mean(x, dim, keepdim, n):
    return np.mean(x, axis=dim, keepdims=keepdim)


MEAN = Op(
    "mean",
    _mean,
    params=("dim", "keepdim", "n"),
    derivatives={
        "x": vjp(
            "unreduce(g, x.shape, dim, keepdim) / n",
            lambda g, x, out, dim, keepdim, n: xp.unreduce(g / n, x.shape, dim, keepdim),
            factor="1 / n",
        ),
    },
    formula="mean(x)",
)


def _float_only(name, x):
    if x.dtype.kind != "f":
        raise TypeError(
            f"{name}: needs a floating-point tensor, got {x.dtype}; convert with .float()"
        )


def mean(x, dim=None, keepdim=False):
    x = as_tensor(x)
    _float_only("mean", x)
    dims = _dims(x, dim)
    return call(MEAN, (x,), dim=dims, keepdim=keepdim, n=_count(x, dims))


def _var(x, dim, keepdim, n, correction):
    return np.var(x, axis=dim, keepdims=keepdim, ddof=correction)


def _var_rule(g, x, out, dim, keepdim, n, correction):
    # NumPy's float division: n - correction = 0 gives inf (and NaN gradients), as in PyTorch.
    scale = np.float64(2.0) / np.float64(builtins.max(n - correction, 0))
    return (x - xp.mean(x, dim, True)) * xp.unreduce(g * float(scale), x.shape, dim, keepdim)


VAR = Op(
    "var",
    _var,
    params=("dim", "keepdim", "n", "correction"),
    derivatives={
        "x": vjp(
            "2 * (x - mean(x, dim, True)) * unreduce(g, x.shape, dim, keepdim) / (n - correction)",
            _var_rule,
        ),
    },
    formula="var(x)",
)


def var(x, dim=None, unbiased=None, keepdim=False, correction=None):
    return _spread(VAR, x, dim, unbiased, keepdim, correction)


def _spread(op, x, dim, unbiased, keepdim, correction):
    """var or std: `correction` (PyTorch's name; `unbiased` is its older spelling) is subtracted
    from the count in the denominator."""
    x = as_tensor(x)
    _float_only(op.name, x)
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    dims = _dims(x, dim)
    return call(op, (x,), dim=dims, keepdim=keepdim, n=_count(x, dims), correction=correction)


def _std(x, dim, keepdim, n, correction):
    return np.std(x, axis=dim, keepdims=keepdim, ddof=correction)


def _std_rule(g, x, out, dim, keepdim, n, correction):
    # Where the deviation is 0 the gradient is 0 (PyTorch's convention), not 0/0.
    scale = float(np.float64(1.0) / np.float64(builtins.max(n - correction, 0)))
    safe = xp.where(out == 0, 0.0, g / xp.where(out == 0, 1.0, out))
    return (x - xp.mean(x, dim, True)) * xp.unreduce(safe * scale, x.shape, dim, keepdim)


STD = Op(
    "std",
    _std,
    params=("dim", "keepdim", "n", "correction"),
    derivatives={
        "x": vjp(
            "(x - mean(x, dim, True)) * unreduce(g / out, x.shape, dim, keepdim) / (n - correction)",
            _std_rule,
        ),
    },
    formula="std(x)",
)


def std(x, dim=None, unbiased=None, keepdim=False, correction=None):
    return _spread(STD, x, dim, unbiased, keepdim, correction)


def _ties_rule(g, x, out, dim, keepdim):
    return xp.unreduce(g, x.shape, dim, keepdim) * xp.ties(x, out, x.shape, dim, keepdim)


AMAX = Op(
    "amax",
    lambda x, dim, keepdim: np.amax(x, axis=dim, keepdims=keepdim),
    params=("dim", "keepdim"),
    derivatives={
        "x": vjp(
            "unreduce(g, x.shape, dim, keepdim) * ties(x, out, x.shape, dim, keepdim)", _ties_rule
        )
    },
    formula="amax(x)",
)
AMIN = Op(
    "amin",
    lambda x, dim, keepdim: np.amin(x, axis=dim, keepdims=keepdim),
    params=("dim", "keepdim"),
    derivatives={
        "x": vjp(
            "unreduce(g, x.shape, dim, keepdim) * ties(x, out, x.shape, dim, keepdim)", _ties_rule
        )
    },
    formula="amin(x)",
)


def _nonempty(name, x):
    if x._data.size == 0:
        raise ValueError(f"{name}: cannot reduce an empty tensor of shape {tuple(x.shape)}")


def amax(x, dim=(), keepdim=False):
    x = as_tensor(x)
    _nonempty("amax", x)
    return call(AMAX, (x,), dim=_dims(x, None if dim == () else dim), keepdim=keepdim)


def amin(x, dim=(), keepdim=False):
    x = as_tensor(x)
    _nonempty("amin", x)
    return call(AMIN, (x,), dim=_dims(x, None if dim == () else dim), keepdim=keepdim)


# ---- max/min along a dim give values and indices; the gradient goes to the chosen index ---------

MaxMin = namedtuple("MaxMin", ["values", "indices"])


def _gather(x, dim, index):
    return np.take_along_axis(x, index, axis=dim)


def _scatter_add(g, shape, dim, index):
    if isinstance(g, Tensor):
        return call(SCATTER_ADD, (g,), shape=shape, dim=dim, index=index)
    full = np.zeros(shape, dtype=g.dtype)
    grid = list(np.ix_(*[np.arange(n) for n in index.shape]))
    grid[dim] = index
    np.add.at(full, tuple(grid), g)
    return full


GATHER = Op(
    "gather",
    _gather,
    params=("dim", "index"),
    derivatives={
        "x": vjp(
            "scatter_add(zeros(x.shape), dim, index, g)",
            lambda g, x, out, dim, index: _scatter_add(g, x.shape, dim, index),
        ),
    },
    formula="gather(x)",
)
SCATTER_ADD = Op(
    "scatter_add",
    _scatter_add,
    ("g",),
    params=("shape", "dim", "index"),
    derivatives={
        "g": vjp(
            "gather(h, dim, index)", lambda h, g, out, shape, dim, index: _gather_any(h, dim, index)
        ),
    },
    formula="scatter_add(g)",
)


def _gather_any(h, dim, index):
    if isinstance(h, Tensor):
        return call(GATHER, (h,), dim=dim, index=index)
    return _gather(h, dim, index)


def gather(x, dim, index):
    """`out[i][j] = x[i][index[i][j]]` along `dim` (PyTorch's gather); the gradient scatter-adds."""
    x = as_tensor(x)
    index = np.asarray(index._data if isinstance(index, Tensor) else index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be an integer tensor, got {index.dtype}")
    if index.ndim != x.ndim:
        raise ValueError(
            f"gather: index has {index.ndim} dims but input has {x.ndim} (shape {tuple(x.shape)})"
        )
    dim = normalize_dim(dim, x.ndim)
    if x.ndim == 0:  # its dims are 0 and -1, as in PyTorch: gather from it as from a 1-d tensor
        return reshape(call(GATHER, (reshape(x, 1),), dim=0, index=index.reshape(1)), ())
    return call(GATHER, (x,), dim=dim, index=index)


def _extreme(name, arg, whole, x, dim, keepdim):
    x = as_tensor(x)
    _nonempty(name, x)
    if dim is None:
        return whole(x)
    dim = normalize_dim(dim, x.ndim)
    if x.ndim == 0:
        return MaxMin(x, Tensor._wrap(np.array(0)))
    indices = np.expand_dims(arg(x._data, axis=dim), dim)
    values = gather(x, dim, indices)
    if not keepdim:
        values = squeeze(values, dim)
        indices = np.squeeze(indices, dim)
    return MaxMin(values, Tensor._wrap(indices.astype(np.int64)))


def max(x, dim=None, keepdim=False):  # noqa: A001 - PyTorch's name
    """With no `dim` the largest value (ties share the gradient); with a `dim`, (values, indices);
    with a tensor in place of `dim`, the elementwise maximum (torch.max(a, b))."""
    if isinstance(dim, Tensor | np.ndarray):
        return maximum(x, dim)
    return _extreme("max", np.argmax, amax, x, dim, keepdim)


def min(x, dim=None, keepdim=False):  # noqa: A001 - PyTorch's name
    if isinstance(dim, Tensor | np.ndarray):
        return minimum(x, dim)
    return _extreme("min", np.argmin, amin, x, dim, keepdim)


def _arg_dim(x, dim):
    """NumPy's axis for argmax/argmin: None for all of a 0-d tensor, whose dims are 0 and -1."""
    if dim is None:
        return None
    dim = normalize_dim(dim, x.ndim)
    return dim if x.ndim else None


def argmax(x, dim=None, keepdim=False):
    x = as_tensor(x)
    dim = _arg_dim(x, dim)
    return Tensor._wrap(np.asarray(np.argmax(x._data, axis=dim, keepdims=keepdim), dtype=np.int64))


def argmin(x, dim=None, keepdim=False):
    x = as_tensor(x)
    dim = _arg_dim(x, dim)
    return Tensor._wrap(np.asarray(np.argmin(x._data, axis=dim, keepdims=keepdim), dtype=np.int64))


# ---- prod, logsumexp, norm ----------------------------------------------------------------------


def _prod(x, dim, keepdim):
    return np.prod(x, axis=dim, keepdims=keepdim)


def _prod_rule(g, x, out, dim, keepdim):
    # Without zeros, the product of the others is prod / x (the product recomputed: `out` lacks
    # the reduced axes and is not saved); with zeros, it is multiplied out exactly.
    if isinstance(x, Tensor):
        if not (x._data == 0).any():
            return xp.unreduce(g, x.shape, dim, keepdim) * (prod(x, dim, True) / x)
        return xp.unreduce(g, x.shape, dim, keepdim) * _product_of_others_recorded(x, dim)
    if not (x == 0).any():
        return xp.unreduce(g, x.shape, dim, keepdim) * (np.prod(x, axis=dim, keepdims=True) / x)
    return xp.unreduce(g, x.shape, dim, keepdim) * _product_of_others(x, dim)


def _product_of_others_recorded(x, dim):
    """`_product_of_others` from recorded ops, for create_graph: each element's row of the
    reduction with that element replaced by 1, multiplied out. Quadratic in the reduced size, but
    exact with zeros and differentiable again (its own prod takes this path where zeros remain)."""
    dims = tuple(range(x.ndim)) if dim is None else dim
    rest = tuple(i for i in range(x.ndim) if i not in dims)
    moved = permute(x, rest + dims)
    n = int(np.prod([x.shape[i] for i in dims]))
    flat = reshape(moved, moved.shape[: len(rest)] + (n,))
    rows = unsqueeze(flat, -2) * np.ones((n, 1), dtype=x.dtype)
    others = prod(xp.where(np.eye(n, dtype=bool), 1.0, rows), -1)
    return permute(reshape(others, moved.shape), tuple(np.argsort(rest + dims).tolist()))


def _product_of_others(x, dim):
    """For each element, the product of the other elements of its reduction (exact with zeros)."""
    dims = tuple(range(x.ndim)) if dim is None else dim
    rest = tuple(i for i in range(x.ndim) if i not in dims)
    moved = np.transpose(x, rest + dims)
    flat = moved.reshape(moved.shape[: len(rest)] + (-1,))
    ones = np.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (left * right).reshape(moved.shape)
    return np.transpose(others, np.argsort(rest + dims))


PROD = Op(
    "prod",
    _prod,
    params=("dim", "keepdim"),
    derivatives={
        "x": vjp("unreduce(g, x.shape, dim, keepdim) * product_of_others(x, dim)", _prod_rule),
    },
    formula="prod(x)",
)


def prod(x, dim=None, keepdim=False):
    x = as_tensor(x)
    return call(PROD, (x,), dim=_dims(x, dim), keepdim=keepdim)


def _logsumexp(x, dim, keepdim):
    peak = np.amax(x, axis=dim, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)
    out = np.log(np.sum(np.exp(x - peak), axis=dim, keepdims=True)) + peak
    return out if keepdim else np.squeeze(out, axis=dim)


LOGSUMEXP = Op(
    "logsumexp",
    _logsumexp,
    params=("dim", "keepdim"),
    derivatives={
        "x": vjp(
            "unreduce(g, x.shape, dim, keepdim) * exp(x - unreduce(out, x.shape, dim, keepdim))",
            lambda g, x, out, dim, keepdim: (
                xp.unreduce(g, x.shape, dim, keepdim)
                * xp.exp(x - xp.unreduce(out, x.shape, dim, keepdim))
            ),
        ),
    },
    formula="logsumexp(x)",
)


def logsumexp(x, dim=None, keepdim=False):
    x = as_tensor(x)
    _float_only("logsumexp", x)
    return call(LOGSUMEXP, (x,), dim=_dims(x, dim), keepdim=keepdim)


def _norm2(x, dim, keepdim):
    return np.sqrt(np.sum(x * x, axis=dim, keepdims=keepdim))


NORM2 = Op(
    "norm",
    _norm2,
    params=("dim", "keepdim"),
    derivatives={
        "x": vjp(
            "x * unreduce(g / out, x.shape, dim, keepdim)",
            lambda g, x, out, dim, keepdim: (
                x
                * xp.unreduce(
                    xp.where(out == 0, 0.0, g / xp.where(out == 0, 1.0, out)), x.shape, dim, keepdim
                )
            ),
        ),
    },
    formula="norm(x)",
)


def _normp(x, dim, keepdim, p):
    return np.sum(np.abs(x) ** p, axis=dim, keepdims=keepdim) ** (1.0 / p)


def _normp_rule(g, x, out, dim, keepdim, p):
    # PyTorch's subgradient conventions: 0 where the norm is 0, and for p < 1 also where an
    # element is 0 (|x|**(p - 1) would be infinite there).
    if p < 1:
        slope = xp.sign(x) * xp.where(x == 0, 0.0, xp.abs(xp.where(x == 0, 1.0, x)) ** (p - 1))
        return slope * xp.unreduce(g * out ** (1 - p), x.shape, dim, keepdim)
    scale = xp.where(out == 0, 0.0, g / xp.where(out == 0, 1.0, out) ** (p - 1))
    return xp.sign(x) * xp.abs(x) ** (p - 1) * xp.unreduce(scale, x.shape, dim, keepdim)


NORMP = Op(
    "norm",
    _normp,
    params=("dim", "keepdim", "p"),
    derivatives={
        "x": vjp(
            "sign(x) * abs(x)**(p - 1) * unreduce(g / out**(p - 1), x.shape, dim, keepdim)",
            _normp_rule,
        ),
    },
    formula="norm(x)",
    variant="p",
)


def norm(x, p=2, dim=None, keepdim=False):
    """The vector p-norm over `dim` (all elements by default); p may be a number, inf or 'fro'."""
    x = as_tensor(x)
    _float_only("norm", x)
    if p == "fro" or p == 2:
        return call(NORM2, (x,), dim=_dims(x, dim), keepdim=keepdim)
    if p == np.inf:
        return amax(abs_(x), () if dim is None else dim, keepdim)
    if p == -np.inf:
        return amin(abs_(x), () if dim is None else dim, keepdim)
    if p == 1:
        return sum(abs_(x), dim, keepdim)
    if isinstance(p, int | float) and p > 0:
        return call(NORMP, (x,), dim=_dims(x, dim), keepdim=keepdim, p=float(p))
    raise ValueError(f"norm: p must be a positive number, inf, -inf or 'fro', not {p!r}")


# ---- cumulative sums ----------------------------------------------------------------------------


def _cumsum(x, dim):
    return np.cumsum(x, axis=dim)


CUMSUM = Op(
    "cumsum",
    _cumsum,
    params=("dim",),
    derivatives={
        # Each input element reaches every later output: the sums of g from the end backwards.
        "x": vjp(
            "flip(cumsum(flip(g, dim), dim), dim)",
            lambda g, x, out, dim: xp.flip(xp.cumsum(xp.flip(g, dim), dim), dim),
        ),
    },
    formula="cumsum(x)",
)


def cumsum(input, dim, dtype=None):  # noqa: A002 - PyTorch's argument names
    """Running sums along `dim`; integers and bools sum in int64, as in PyTorch."""
    x = as_tensor(input)
    if dtype is not None:
        x = to(x, dtype)
    elif x.dtype.kind in "bi" and x.dtype != dtypes.int64:
        x = Tensor._wrap(x._data.astype(dtypes.int64))
    dim = normalize_dim(dim, x.ndim)
    if x.ndim == 0:  # its dims are 0 and -1, as in PyTorch: a sum of one element
        return reshape(call(CUMSUM, (reshape(x, 1),), dim=0), ())
    return call(CUMSUM, (x,), dim=dim)


# ---- sorting: values are gathered at the sorted indices, so the gradient goes back to them ------

Sorted = namedtuple("Sorted", ["values", "indices"])
TopK = namedtuple("TopK", ["values", "indices"])


def _sorted_indices(data, dim, descending):
    """Stable order along `dim`; descending keeps equal elements in their original order (as
    PyTorch's stable sort does), NaN counting as the largest value."""
    if not descending:
        return np.argsort(data, axis=dim, kind="stable")
    n = data.shape[dim]
    # Stable ascending order of the reversed data, read backwards: descending, ties in order.
    reversed_order = np.argsort(np.flip(data, dim), axis=dim, kind="stable")
    return n - 1 - np.flip(reversed_order, dim)


def argsort(input, dim=-1, descending=False, stable=False):  # noqa: A002
    """Indices that sort `input` along `dim` (always a stable sort: PyTorch's order for ties
    whether or not stable=True is asked for)."""
    x = as_tensor(input)
    if x.ndim == 0:
        return Tensor._wrap(np.array(0, dtype=np.int64))
    dim = normalize_dim(dim, x.ndim)
    return Tensor._wrap(_sorted_indices(x._data, dim, descending).astype(np.int64))


def sort(input, dim=-1, descending=False, stable=False):  # noqa: A002
    """(values, indices) sorted along `dim`; the gradient of values goes back to where each came
    from. `sort(x, stable=True)` and `x.sort(descending=True)` read as in PyTorch."""
    x = as_tensor(input)
    if x.ndim == 0:
        return Sorted(x, Tensor._wrap(np.array(0, dtype=np.int64)))
    dim = normalize_dim(dim, x.ndim)
    indices = _sorted_indices(x._data, dim, descending).astype(np.int64)
    return Sorted(gather(x, dim, indices), Tensor._wrap(indices))


def topk(input, k, dim=-1, largest=True, sorted=True):  # noqa: A002
    """The k largest (or smallest) elements along `dim` and their indices, largest first (ties
    in their original order)."""
    x = as_tensor(input)
    size = x.shape[normalize_dim(dim, x.ndim)] if x.ndim else 1
    if not 0 <= int(k) <= size:
        raise RuntimeError(
            f"topk: k ({k}) is out of range for dim {dim} of size {size} (shape {tuple(x.shape)})"
        )
    if x.ndim == 0:
        return TopK(x, Tensor._wrap(np.array(0, dtype=np.int64)))
    dim = normalize_dim(dim, x.ndim)
    order = _sorted_indices(x._data, dim, descending=largest)
    indices = np.ascontiguousarray(np.moveaxis(np.moveaxis(order, dim, 0)[: int(k)], 0, dim))
    indices = indices.astype(np.int64)
    return TopK(gather(x, dim, indices), Tensor._wrap(indices))
