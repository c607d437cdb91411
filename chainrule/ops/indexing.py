"""Indexing: `x[index]` with ints, slices, None, ..., integer arrays and boolean masks. The gradient
scatter-adds into zeros, so an index that repeats collects every contribution."""

import numpy as np

from ..engine.broadcast import sum_to
from ..engine.op import Op, vjp
from ..engine.state import modes, state
from ..engine.tensor import Tensor
from .build import as_tensor, call, scalar_operand


def _normalize(index):
    """Turn Tensors and lists inside an index into NumPy arrays NumPy can index with."""
    if isinstance(index, tuple):
        return tuple(_normalize_one(i) for i in index)
    return _normalize_one(index)


def _normalize_one(item):
    if isinstance(item, Tensor):
        return item._data
    if isinstance(item, list):
        return np.asarray(item)
    return item


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, int | slice | type(None) | type(Ellipsis)) for i in items)


def _scatter_into(g, shape, index):
    if isinstance(g, Tensor):
        return call(INDEX_ADD, (g,), shape=shape, index=index)
    rows = _row_index(index) if g.size >= _SPARSE_FROM else None
    if rows is not None:
        return _add_rows(g, shape, rows)
    full = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        full[index] = g
    else:
        np.add.at(full, index, g)
    return full


# np.add.at is quick for a few thousand elements; beyond, its per-element cost (about 30 ns)
# outgrows a sparse product's fixed cost (constructing the matrix, some 60 us).
_SPARSE_FROM = 4096


def _row_index(index):
    """The integer array of an index that picks whole rows (`weight[ids]`, an embedding's
    lookup), else None."""
    if isinstance(index, tuple):
        if len(index) != 1:
            return None
        index = index[0]
    if isinstance(index, np.ndarray) and index.dtype.kind in "iu" and index.size:
        return index
    return None


def _add_rows(g, shape, rows):
    """Zeros of `shape` with each row g[k] added at rows[k], repeats adding up: the product of
    a sparse (rows x lookups) one-hot matrix with g, in SciPy's compiled loop (60 times
    faster than np.add.at for a GPT's 768 token lookups, which PyTorch's own step takes as long
    as)."""
    from scipy import sparse  # only backward passes through lookups need it

    count = rows.size
    picks = sparse.csc_matrix(
        (np.ones(count, dtype=g.dtype), rows.reshape(-1) % shape[0], np.arange(count + 1)),
        shape=(shape[0], count),
    )
    return np.asarray(picks @ g.reshape(count, -1)).reshape(shape)


def _take(x, index):
    return x[index]


GETITEM = Op(
    "getitem",
    _take,
    params=("index",),
    derivatives={
        "x": vjp(
            "index_add(zeros(x.shape), index, g)",
            lambda g, x, out, index: _scatter_into(g, x.shape, index),
        ),
    },
    formula="getitem(x)",
)
INDEX_ADD = Op(
    "index_add",
    _scatter_into,
    ("g",),
    params=("shape", "index"),
    derivatives={
        "g": vjp("h[index]", lambda h, g, out, shape, index: h[index]),
    },
    formula="index_add(g)",
)


def getitem(x, index):
    index = _normalize(index)
    try:
        return call(GETITEM, (x,), index=index)
    except ValueError as error:
        raise IndexError(str(error)) from None


def _put(x, value, index):
    out = x.copy()
    out[index] = value
    return out


def _value_grad(g, x, value, out, index):
    taken = g[index]
    shape = value.shape if hasattr(value, "shape") else ()
    return sum_to(taken, shape)


def _masked_out(g, index):
    if isinstance(g, Tensor):
        zeros = Tensor._wrap(np.zeros(_shape_at(g, index), dtype=g.dtype))
        return call(INDEX_PUT, (g, zeros), index=index)
    g = g.copy()
    g[index] = 0
    return g


def _shape_at(g, index):
    return np.empty(g.shape, dtype=bool)[index].shape


INDEX_PUT = Op(
    "index_put",
    _put,
    ("x", "value"),
    params=("index",),
    derivatives={
        "x": vjp("zero_at(g, index)", lambda g, x, value, out, index: _masked_out(g, index)),
        "value": vjp("sum_to(g[index], value.shape)", _value_grad),
    },
    formula="index_put(x, value)",
)


def setitem(x, index, value):
    """`x[index] = value`. On a tensor in a graph this records the assignment (x takes the new node,
    as PyTorch rebinds in-place ops); on a leaf that requires grad it refuses, as PyTorch does."""
    index = _normalize(index)
    value = scalar_operand(value, x) if not isinstance(value, Tensor) else value
    needs_grad = (state.default_modes or modes.grad_enabled) and (
        x.requires_grad or getattr(value, "requires_grad", False)
    )
    if not needs_grad:
        data = value._data if isinstance(value, Tensor) else value
        x._data[index] = data
        x._bump_version()
        return
    if x.grad_fn is None and x.requires_grad:
        raise RuntimeError(
            "x[index] = value on a leaf tensor that requires grad: wrap it in `with cr.no_grad():` "
            "or assign into a copy (x.clone())"
        )
    if not isinstance(value, Tensor):
        value = as_tensor(np.asarray(value, dtype=x.dtype))
    result = call(INDEX_PUT, (x, value), index=index)
    x._bump_version()
    x._data, x.grad_fn, x.requires_grad = result._data, result.grad_fn, True
