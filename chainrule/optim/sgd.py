"""Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov, weight decay and
maximize, step for step the same arithmetic."""

import numpy as np

from .optimizer import Optimizer


class SGD(Optimizer):
    """p <- p - lr * d, where d is the gradient (plus weight_decay * p), or with momentum the buffer
    b <- momentum * b + (1 - dampening) * g (b = g on the first step), and with Nesterov
    g + momentum * b."""

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        maximize=False,
    ):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "SGD: Nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            ),
        )

    def _update(self, param, grad, state, group):
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(grad, copy=True)
            else:
                buf *= momentum
                dampening = group["dampening"]
                if dampening == 0:
                    buf += grad
                else:
                    buf += (1 - dampening) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param -= lr * grad
