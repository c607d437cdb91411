"""`cr.cuda.amp`: PyTorch's deprecated spellings of `cr.amp.GradScaler("cuda")` and
`cr.amp.autocast("cuda")`, disabled here (with PyTorch's warning) as PyTorch disables them
without a GPU."""

from .. import amp as _amp


def GradScaler(*args, **kwargs):  # noqa: N802 - PyTorch's name
    return _amp.GradScaler("cuda", *args, **kwargs)


def autocast(enabled=True, dtype=None, cache_enabled=True):
    return _amp.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


__all__ = ["GradScaler", "autocast"]
