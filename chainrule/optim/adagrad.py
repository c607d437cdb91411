"""Adagrad with PyTorch's arithmetic, step for step."""

import numpy as np

from .optimizer import Optimizer


class Adagrad(Optimizer):
    """s <- s + g^2; p <- p - lr_t g / (sqrt(s) + eps), with lr_t = lr / (1 + (t - 1) lr_decay),
    g plus weight_decay * p, and s starting at initial_accumulator_value."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
        maximize=False,
    ):
        for key, value in (
            ("lr_decay", lr_decay),
            ("initial_accumulator_value", initial_accumulator_value),
        ):
            if not value >= 0:
                raise ValueError(f"Adagrad: {key} must be >= 0, got {key}={value!r}")
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
                maximize=maximize,
            ),
        )

    def _update(self, param, grad, state, group):
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0.0
            state["sum"] = np.full_like(param, group["initial_accumulator_value"])
        state["step"] += 1
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param
        clr = lr / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        # (value * a) / b, in the order of PyTorch's addcdiv_, so the rounding is the same.
        param += -clr * grad / (np.sqrt(state["sum"]) + eps)
