"""Every op that takes a dim checks it as PyTorch does: a dim in [-rank, rank - 1] works (negative
dims count from the end; a 0-d tensor takes 0 and -1), anything else is an IndexError with PyTorch's
message, the same for every op because one function (engine.dims.normalize_dim) checks them all."""

import numpy as np
import pytest
import torch
from conftest import assert_close

import chainrule as cr


def _index(lib, x):
    return lib.zeros(tuple(x.shape), dtype=lib.int64)


# Each op written once for both libraries: (lib, x, dim) -> result.
OPS = {
    "squeeze": lambda lib, x, dim: x.squeeze(dim),
    "squeeze_tuple": lambda lib, x, dim: x.squeeze((0, dim)) if x.ndim else x.squeeze((dim,)),
    "unsqueeze": lambda lib, x, dim: x.unsqueeze(dim),
    "transpose_first": lambda lib, x, dim: x.transpose(dim, 0),
    "transpose_second": lambda lib, x, dim: x.transpose(0, dim),
    "flatten_start": lambda lib, x, dim: x.flatten(dim),
    "flatten_end": lambda lib, x, dim: x.flatten(0, dim),
    # permute takes every dim, so a 0-d tensor cannot be given one: use it as a 1-d tensor
    "permute": lambda lib, x, dim: (x if x.ndim else x.reshape(1)).permute(dim, *range(1, x.ndim)),
    "narrow": lambda lib, x, dim: x.narrow(dim, 0, 1),
    "split": lambda lib, x, dim: x.split(1, dim),
    "chunk": lambda lib, x, dim: x.chunk(2, dim),
    "cat": lambda lib, x, dim: lib.cat([x, x], dim),
    "stack": lambda lib, x, dim: lib.stack([x, x], dim),
    "gather": lambda lib, x, dim: x.gather(dim, _index(lib, x)),
    "sum": lambda lib, x, dim: x.sum(dim),
    "sum_tuple": lambda lib, x, dim: x.sum((dim,)),
    "mean": lambda lib, x, dim: x.mean(dim),
    "var": lambda lib, x, dim: x.var(dim),
    "std": lambda lib, x, dim: x.std(dim),
    "prod": lambda lib, x, dim: x.prod(dim),
    "logsumexp": lambda lib, x, dim: x.logsumexp(dim),
    "norm": lambda lib, x, dim: x.norm(dim=dim),
    "amax": lambda lib, x, dim: x.amax(dim),
    "amin": lambda lib, x, dim: x.amin(dim),
    "max": lambda lib, x, dim: x.max(dim).values,
    "min": lambda lib, x, dim: x.min(dim).values,
    "argmax": lambda lib, x, dim: x.argmax(dim),
    "argmin": lambda lib, x, dim: x.argmin(dim),
    "softmax": lambda lib, x, dim: x.softmax(dim),
    "log_softmax": lambda lib, x, dim: x.log_softmax(dim),
    "size": lambda lib, x, dim: x.size(dim),
}

SHAPES = [(2, 3), (), (4,), (2, 1, 3)]


def _outcome(fn):
    try:
        return fn(), None
    except Exception as error:  # noqa: BLE001 - compared with PyTorch's below
        return None, error


def _as_arrays(result):
    if isinstance(result, tuple | list):
        return [_as_arrays(r) for r in result]
    if isinstance(result, int):
        return result
    return np.asarray(result.detach().numpy() if hasattr(result, "detach") else result)


def _compare(name, shape, dim):
    data = np.random.default_rng(0).standard_normal(shape)
    ours, our_error = _outcome(lambda: OPS[name](cr, cr.tensor(data), dim))
    theirs, their_error = _outcome(lambda: OPS[name](torch, torch.tensor(data), dim))
    if their_error is not None:
        assert our_error is not None, f"{name}{shape} dim {dim}: PyTorch raises, chainrule does not"
        assert type(our_error) is type(their_error), (our_error, their_error)
        assert str(our_error) == str(their_error)
        return
    assert our_error is None, f"{name}{shape} dim {dim}: chainrule raised {our_error!r}"
    ours, theirs = _as_arrays(ours), _as_arrays(theirs)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_close(a, b, f"{name}{shape} dim {dim}")
    elif isinstance(theirs, int):
        assert ours == theirs
    else:
        assert ours.shape == theirs.shape
        assert_close(ours, theirs, f"{name}{shape} dim {dim}")


def _rank(name, shape):
    return len(shape) + 1 if name in ("unsqueeze", "stack") else len(shape)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(OPS))
def test_out_of_range_dims_raise_pytorchs_index_error(name, shape):
    rank = max(_rank(name, shape), 1)
    for dim in (rank, rank + 3, -rank - 1, -rank - 5):
        _compare(name, shape, dim)


# var and std over a dim of size one are NaN in both libraries, with warnings.
@pytest.mark.filterwarnings("ignore:.*[Dd]egrees of freedom", "ignore:invalid value encountered")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(OPS))
def test_every_valid_dim_negative_ones_included_works_as_in_pytorch(name, shape):
    rank = max(_rank(name, shape), 1)
    for dim in range(-rank, rank):
        _compare(name, shape, dim)


def test_squeeze_of_a_dim_out_of_range_is_not_accepted_silently():
    with pytest.raises(IndexError, match=r"expected to be in range of \[-2, 1\], but got 5"):
        cr.zeros(2, 3).squeeze(5)


def test_a_dim_named_twice_is_refused_as_in_pytorch():
    x = cr.zeros(2, 3)
    with pytest.raises(RuntimeError, match="dim 0 appears multiple times in the list of dims"):
        x.sum((0, -2))
    with pytest.raises(RuntimeError, match="dim 1 appears multiple times"):
        x.squeeze((1, -1))
    with pytest.raises(RuntimeError, match="duplicate dims"):
        x.permute(1, -1)


def test_a_dim_that_is_not_an_integer_is_a_type_error():
    with pytest.raises(TypeError, match="dim must be an integer, not float"):
        cr.zeros(2, 3).squeeze(1.0)
    with pytest.raises(TypeError, match="not a bool"):
        cr.zeros(2, 3).sum(True)
