"""Adadelta with PyTorch's arithmetic, step for step."""

import numpy as np

from .optimizer import Optimizer


class Adadelta(Optimizer):
    """s <- rho s + (1 - rho) g^2; d = sqrt(a + eps) / sqrt(s + eps) * g;
    a <- rho a + (1 - rho) d^2; p <- p - lr d (g plus weight_decay * p)."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False):
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Adadelta: rho must be in [0, 1], got rho={rho!r}")
        super().__init__(
            params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        )

    def _update(self, param, grad, state, group):
        lr, rho, eps, weight_decay = group["lr"], group["rho"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0.0
            state["square_avg"] = np.zeros_like(param)
            state["acc_delta"] = np.zeros_like(param)
        state["step"] += 1
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        # (value * a) * b, in the order of PyTorch's addcmul_, so the rounding is the same.
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        param -= lr * delta
