"""The engine: Tensor, graph nodes, the backward walk, grad modes. It knows no individual operation."""

from . import dtypes
from .autograd import (
    AnomalyError,
    backward,
    deliver_gradients,
    detect_anomaly,
    enable_grad,
    grad,
    inference_mode,
    is_anomaly_enabled,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .op import Derivative, Node, Op, apply, declared_ops, local, record, vjp
from .state import modes, state
from .tensor import Tensor

__all__ = [
    "AnomalyError",
    "Derivative",
    "Node",
    "Op",
    "Tensor",
    "apply",
    "backward",
    "declared_ops",
    "deliver_gradients",
    "detect_anomaly",
    "dtypes",
    "enable_grad",
    "grad",
    "inference_mode",
    "is_anomaly_enabled",
    "is_grad_enabled",
    "is_inference_mode_enabled",
    "local",
    "modes",
    "no_grad",
    "record",
    "set_grad_enabled",
    "state",
    "vjp",
]
