"""Shape operations: their derivatives move the gradient back into the input's layout."""

import numpy as np

from ..engine.broadcast import BROADCAST_TO
from ..engine.broadcast import broadcast_to as _broadcast_any
from ..engine.dims import normalize_dim, normalize_dims
from ..engine.op import Op, vjp
from ..engine.tensor import Tensor
from . import array_or_tensor as xp
from .build import TO, as_tensor, call, to  # noqa: F401 - chainrule.ops.shape.to is public


def _sizes(shape):
    """Accept shape as *sizes or as one tuple/list, as PyTorch does."""
    if len(shape) == 1 and isinstance(shape[0], list | tuple):
        shape = shape[0]
    return tuple(int(s) for s in shape)


RESHAPE = Op(
    "reshape",
    np.reshape,
    params=("shape",),
    derivatives={
        "x": vjp("g.reshape(x.shape)", lambda g, x, out, shape: g.reshape(x.shape)),
    },
    formula="reshape(x)",
)


def reshape(x, *shape):
    shape = _sizes(shape)
    if x._data.shape == shape:
        return x
    size = int(np.prod(shape)) if -1 not in shape else None
    if size is not None and size != x._data.size:
        raise ValueError(
            f"reshape: cannot view a tensor of shape {tuple(x.shape)} ({x._data.size} elements) "
            f"as shape {shape} ({size} elements)"
        )
    return call(RESHAPE, (x,), shape=shape)


view = reshape


def flatten(x, start_dim=0, end_dim=-1):
    start, end = normalize_dim(start_dim, x.ndim), normalize_dim(end_dim, x.ndim)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if x.ndim == 0:
        return reshape(x, 1)
    return reshape(x, x.shape[:start] + (-1,) + x.shape[end + 1 :])


TRANSPOSE = Op(
    "transpose",
    lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1),
    params=("dim0", "dim1"),
    derivatives={
        "x": vjp(
            "swapaxes(g, dim0, dim1)", lambda g, x, out, dim0, dim1: xp.swapaxes(g, dim0, dim1)
        ),
    },
    formula="transpose(x)",
)


def transpose(x, dim0, dim1):
    dim0, dim1 = normalize_dim(dim0, x.ndim), normalize_dim(dim1, x.ndim)
    if x.ndim == 0:  # dims 0 and -1 of a 0-d tensor: nothing to swap, as in PyTorch
        return x
    return call(TRANSPOSE, (x,), dim0=dim0, dim1=dim1)


swapaxes = transpose

PERMUTE = Op(
    "permute",
    np.transpose,
    params=("axes",),
    derivatives={
        "x": vjp(
            "permute(g, inverse_permutation(axes))",
            lambda g, x, out, axes: xp.permute(g, xp.inverse_permutation(axes)),
        ),
    },
    formula="permute(x)",
)


def permute(x, *dims):
    dims = _sizes(dims)
    if len(dims) != x.ndim:
        raise ValueError(
            f"permute: {dims} is not a permutation of the {x.ndim} dims of shape {tuple(x.shape)}"
        )
    axes = tuple(normalize_dim(dim, x.ndim) for dim in dims)
    if len(set(axes)) != len(axes):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return call(PERMUTE, (x,), axes=axes)


def t(x):
    return x if x.ndim < 2 else transpose(x, 0, 1)


def mT(x):
    if x.ndim < 2:
        raise ValueError(f"mT: needs at least 2 dims, got shape {tuple(x.shape)}")
    return transpose(x, -2, -1)


def T(x):
    return x if x.ndim < 2 else permute(x, *reversed(range(x.ndim)))


def expand(x, *sizes):
    sizes = _sizes(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {tuple(x.shape)} to fewer dims {sizes}")
    if -1 in sizes[:lead]:
        raise ValueError(
            f"expand: -1 (keep the size) names no existing dim among the {lead} new leading dims "
            f"of {sizes} for a tensor of shape {tuple(x.shape)}"
        )
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    return broadcast_to(x, shape)


def broadcast_to(x, *shape):
    shape = _sizes(shape)
    x = as_tensor(x)
    try:
        np.broadcast_shapes(x.shape, shape)
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"broadcast_to: cannot broadcast shape {tuple(x.shape)} to {shape}"
        ) from None
    return _broadcast_any(x, shape)


def squeeze(x, dim=None):
    if dim is None:
        shape = tuple(n for n in x.shape if n != 1)
    else:
        dims = normalize_dims(tuple(dim) if isinstance(dim, tuple | list) else (dim,), x.ndim)
        shape = tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))
    return reshape(x, shape)


def unsqueeze(x, dim):
    dim = normalize_dim(dim, x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


# ---- cat / stack / split ------------------------------------------------------------------------

_cat_ops = {}


def _cat_op(n):
    """cat over n tensors: input i's gradient is its slice of g along `dim`."""
    if n not in _cat_ops:
        names = tuple(f"x{i}" for i in range(n))

        def rule(i):
            return vjp(
                f"narrow(g, dim, offsets[{i}], x{i}.shape[dim])",
                lambda g, *args, i=i, dim, offsets: _narrow_any(g, dim, offsets[i], offsets[i + 1]),
            )

        _cat_ops[n] = Op(
            "cat",
            lambda *xs, dim, offsets: np.concatenate(xs, axis=dim),
            names,
            {name: rule(i) for i, name in enumerate(names)},
            params=("dim", "offsets"),
            formula=f"cat({', '.join(names)})",
        )
    return _cat_ops[n]


def _narrow_any(g, dim, start, stop):
    index = (slice(None),) * (dim % g.ndim) + (slice(start, stop),)
    return g[index]


def result_dtype(tensors):
    """PyTorch's result dtype for several tensors: floats outrank integers (an int64 and a float32
    give float32), and within a kind the widest wins."""
    floats = [x.dtype for x in tensors if x.dtype.kind == "f"]
    kinds = floats or [x.dtype for x in tensors]
    dtype = kinds[0]
    for other in kinds[1:]:
        dtype = np.promote_types(dtype, other)
    return dtype


def cat(tensors, dim=0):
    tensors = [as_tensor(x) for x in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    first = tensors[0]
    for i, x in enumerate(tensors):
        if x.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    dim = normalize_dim(dim, first.ndim)
    for i, x in enumerate(tensors):
        if (
            x.ndim != first.ndim
            or x.shape[:dim] + x.shape[dim + 1 :] != first.shape[:dim] + first.shape[dim + 1 :]
        ):
            raise ValueError(
                f"cat: tensor {i} has shape {tuple(x.shape)}, which does not match tensor 0's "
                f"shape {tuple(first.shape)} outside dim {dim}"
            )
    dtype = result_dtype(tensors)
    tensors = [to(x, dtype) for x in tensors]
    offsets = tuple(int(o) for o in np.cumsum([0] + [x.shape[dim] for x in tensors]))
    return call(_cat_op(len(tensors)), tensors, dim=dim, offsets=offsets)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = [as_tensor(x) for x in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, x in enumerate(tensors):
        if x.shape != tensors[0].shape:
            raise ValueError(
                f"stack: tensor {i} has shape {tuple(x.shape)} but tensor 0 has {tuple(tensors[0].shape)}; "
                "stack needs equal shapes"
            )
    dim = normalize_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(x, dim) for x in tensors], dim=dim)


def split(x, split_size_or_sections, dim=0):
    _at_least_1d("split", x)
    dim = normalize_dim(dim, x.ndim)
    length = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split: split_size must be positive, got {split_size_or_sections}")
        sizes = [
            min(split_size_or_sections, length - s)
            for s in range(0, length, split_size_or_sections)
        ]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != length:
            raise ValueError(
                f"split: sections {sizes} add up to {sum(sizes)}, but dim {dim} has size {length}"
            )
    out, start = [], 0
    for size in sizes:
        out.append(narrow(x, dim, start, size))
        start += size
    return tuple(out)


def chunk(x, chunks, dim=0):
    _at_least_1d("chunk", x)
    dim = normalize_dim(dim, x.ndim)
    length = x.shape[dim]
    size = -(-length // chunks)
    return split(x, size, dim)


def _at_least_1d(name, x):
    if x.ndim == 0:
        raise RuntimeError(f"{name} expects at least a 1-dimensional tensor")


def _narrow(x, dim, start, length):
    return _narrow_any(x, dim, start, start + length)


def _pad_into(g, shape, dim, start):
    """The gradient of a slice: g placed at [start:start+len] along dim, zeros elsewhere."""
    if isinstance(g, Tensor):
        return call(PAD_INTO, (g,), shape=shape, dim=dim, start=start)
    full = np.zeros(shape, dtype=g.dtype)
    _narrow_any(full, dim, start, start + g.shape[dim])[...] = g
    return full


NARROW = Op(
    "narrow",
    _narrow,
    params=("dim", "start", "length"),
    derivatives={
        "x": vjp(
            "pad_into(g, x.shape, dim, start)",
            lambda g, x, out, dim, start, length: _pad_into(g, x.shape, dim, start),
        ),
    },
    formula="narrow(x)",
)
PAD_INTO = Op(
    "pad_into",
    _pad_into,
    ("g",),
    params=("shape", "dim", "start"),
    derivatives={
        "g": vjp(
            "narrow(h, dim, start, g.shape[dim])",
            lambda h, g, out, shape, dim, start: _narrow_any(h, dim, start, start + g.shape[dim]),
        ),
    },
    formula="pad_into(g)",
)


def narrow(x, dim, start, length):
    if x.ndim == 0:
        raise RuntimeError("narrow() cannot be applied to a 0-dim tensor.")
    return call(NARROW, (x,), dim=normalize_dim(dim, x.ndim), start=start, length=length)


def clone(x):
    return call(CLONE, (x,))


CLONE = Op(
    "clone", np.copy, derivatives={"x": vjp("g", lambda g, x, out: g, factor="1")}, formula="x"
)


# ---- triangles, rolls and flips: the gradient is the same rearrangement (or its inverse) of g ----


def _triangle_op(name, keep):
    return Op(
        name,
        keep,
        params=("diagonal",),
        derivatives={
            "x": vjp(
                f"{name}(g, diagonal)", lambda g, x, out, diagonal: getattr(xp, name)(g, diagonal)
            ),
        },
        formula=f"{name}(x)",
    )


TRIL = _triangle_op("tril", lambda x, diagonal: np.tril(x, diagonal))
TRIU = _triangle_op("triu", lambda x, diagonal: np.triu(x, diagonal))


def _triangle(op, x, diagonal):
    x = as_tensor(x)
    if x.ndim < 2:
        raise RuntimeError(
            f"{op.name}: input tensor must have at least 2 dimensions, got shape {tuple(x.shape)}"
        )
    return call(op, (x,), diagonal=int(diagonal))


def tril(input, diagonal=0):  # noqa: A002 - PyTorch's argument names
    """The lower triangle of the last two dims (above `diagonal` set to 0), as torch.tril."""
    return _triangle(TRIL, input, diagonal)


def triu(input, diagonal=0):  # noqa: A002
    """The upper triangle of the last two dims (below `diagonal` set to 0), as torch.triu."""
    return _triangle(TRIU, input, diagonal)


def _roll(x, shifts, dims):
    return np.roll(x, shifts, dims)


ROLL = Op(
    "roll",
    _roll,
    params=("shifts", "dims"),
    derivatives={
        "x": vjp(
            "roll(g, negated(shifts), dims)",
            lambda g, x, out, shifts, dims: xp.roll(g, xp.negated(shifts), dims),
        ),
    },
    formula="roll(x)",
)


def roll(input, shifts, dims=None):  # noqa: A002
    """Elements shifted along `dims` (all of them, flattened, when None), wrapping around."""
    x = as_tensor(input)
    many = isinstance(shifts, tuple | list)
    shifts = tuple(int(s) for s in shifts) if many else int(shifts)
    if dims is None:
        if many and len(shifts) != 1:
            raise RuntimeError(f"roll: without dims, give one shift, not {len(shifts)} ({shifts})")
        return call(ROLL, (x,), shifts=shifts[0] if many else shifts, dims=None)
    dims = tuple(dims) if isinstance(dims, tuple | list) else (dims,)
    shifts = shifts if many else (shifts,)
    if len(shifts) != len(dims):
        raise RuntimeError(
            f"roll: shifts and dimensions must align. shifts: {len(shifts)}, dims: {len(dims)}"
        )
    dims = tuple(normalize_dim(d, x.ndim) for d in dims)
    return call(ROLL, (x,), shifts=shifts, dims=dims)


FLIP = Op(
    "flip",
    lambda x, dims: np.flip(x, dims),
    params=("dims",),
    derivatives={"x": vjp("flip(g, dims)", lambda g, x, out, dims: xp.flip(g, dims))},
    formula="flip(x)",
)


def flip(input, *dims):  # noqa: A002
    """The order of elements reversed along each of `dims`, as torch.flip."""
    x = as_tensor(input)
    dims = normalize_dims(_sizes(dims), x.ndim)
    if x.ndim == 0:
        return x
    return call(FLIP, (x,), dims=dims)


__all__ = [
    "BROADCAST_TO",
    "broadcast_to",
    "cat",
    "chunk",
    "clone",
    "concat",
    "expand",
    "flatten",
    "flip",
    "mT",
    "narrow",
    "permute",
    "reshape",
    "roll",
    "split",
    "squeeze",
    "stack",
    "swapaxes",
    "t",
    "T",
    "to",
    "transpose",
    "tril",
    "triu",
    "unsqueeze",
    "view",
]
