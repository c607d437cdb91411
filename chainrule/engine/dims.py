"""The one check of a `dim` argument against a tensor's rank, in PyTorch's words.

Every op that takes a dim (squeeze, transpose, flatten, sum, softmax, cat, narrow, size, ...)
normalises it here, so that out-of-range dims fail alike everywhere. As in PyTorch, a 0-d tensor
takes the dims of a 1-d one (0 and -1).
"""

import operator


def normalize_dim(dim, ndim):
    """`dim` as an axis in [0, ndim), counting from the end when negative; IndexError naming the
    allowed range otherwise. (Ops that insert a dim, unsqueeze and stack, pass ndim + 1.)"""
    if isinstance(dim, bool):
        raise TypeError(f"dim must be an integer, not a bool ({dim!r})")
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"dim must be an integer, not {type(dim).__name__} ({dim!r})") from None
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], "
            f"but got {dim})"
        )
    return dim % rank


def normalize_dims(dims, ndim):
    """A sequence of dims, each normalised, in the order given; two naming the same axis is an
    error, as in PyTorch."""
    normalized = tuple(normalize_dim(dim, ndim) for dim in dims)
    for i, dim in enumerate(normalized):
        if dim in normalized[:i]:
            raise RuntimeError(f"dim {dim} appears multiple times in the list of dims")
    return normalized
