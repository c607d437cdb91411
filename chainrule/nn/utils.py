"""`cr.nn.utils`: gradient clipping and flattening parameters, as torch.nn.utils."""

import numpy as np

from ..engine.tensor import Tensor

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "parameters_to_vector",
    "vector_to_parameters",
]


def _tensors(parameters):
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def _vector_norm(array, norm_type):
    if norm_type == np.inf:
        return np.abs(array).max(initial=0)
    if norm_type == -np.inf:
        return np.abs(array).min()
    if norm_type == 0:
        return np.asarray(np.count_nonzero(array), array.dtype)
    if norm_type == 2:
        return np.sqrt(np.vdot(array, array))
    return (np.abs(array) ** norm_type).sum() ** (1.0 / norm_type)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The norm of the tensors' norms (the norm of all their elements as one vector)."""
    tensors = _tensors(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return Tensor(0.0)
    norms = np.stack([_vector_norm(t._data.ravel(), norm_type) for t in tensors])
    total = _vector_norm(norms, norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    return Tensor._wrap(np.asarray(total))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients in place so that their total norm is at most `max_norm`, by
    min(1, max_norm / (total + 1e-6)) as PyTorch does; returns the total norm before clipping."""
    grads = [p.grad for p in _tensors(parameters) if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    if not grads:
        return total
    # In the norm's dtype, as PyTorch computes it, so float32 gradients scale by the same number.
    norm = total._data
    coefficient = np.minimum(norm.dtype.type(max_norm) / (norm + norm.dtype.type(1e-6)), 1.0)
    for g in grads:
        g._data *= coefficient.astype(g._data.dtype)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient in place to [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    for p in _tensors(parameters):
        if p.grad is not None:
            np.clip(p.grad._data, -clip_value, clip_value, out=p.grad._data)


def parameters_to_vector(parameters):
    return Tensor._wrap(np.concatenate([p._data.ravel() for p in _tensors(parameters)]))


def vector_to_parameters(vec, parameters):
    """Copy consecutive pieces of `vec` into the parameters, in place."""
    parameters = _tensors(parameters)
    total = sum(p._data.size for p in parameters)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(
            f"vector_to_parameters: expected a vector of {total} elements, got shape "
            f"{tuple(vec.shape)}"
        )
    start = 0
    for p in parameters:
        n = p._data.size
        p._data[...] = vec._data[start : start + n].reshape(p._data.shape)
        p._bump_version()
        start += n
