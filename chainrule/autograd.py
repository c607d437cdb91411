"""`cr.autograd`: the PyTorch-style namespace for the engine's autograd entry points."""

from .engine.autograd import (
    backward,
    detect_anomaly,
    enable_grad,
    grad,
    inference_mode,
    is_anomaly_enabled,
    no_grad,
    set_grad_enabled,
)
from .engine.function import Function, FunctionCtx
from .gradcheck import gradcheck, gradgradcheck

__all__ = [
    "Function",
    "FunctionCtx",
    "backward",
    "detect_anomaly",
    "enable_grad",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "inference_mode",
    "is_anomaly_enabled",
    "no_grad",
    "set_grad_enabled",
]
