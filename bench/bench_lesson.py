"""The lesson's seven-parameter network (float64, three dosage points, SSR): one forward, backward
and gradient-descent update of all seven parameters. Target ratio chainrule / PyTorch <= 0.5.

The update is timed two ways, as people write it: each library's `optim.SGD` (step + zero_grad),
and by hand (`p.sub_(p.grad * lr)` under no_grad)."""

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr

DOSAGE = [0.0, 0.5, 1.0]
EFFICACY = [0.0, 1.0, 0.0]
START = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 0.0}
LR = 0.1


def make_step(lib, softplus, by_hand):
    x = lib.tensor(DOSAGE, dtype=lib.float64)
    y = lib.tensor(EFFICACY, dtype=lib.float64)
    p = {k: lib.tensor(v, dtype=lib.float64, requires_grad=True) for k, v in START.items()}
    optimizer = lib.optim.SGD(list(p.values()), lr=LR)

    def forward_backward():
        yhat = (
            softplus(x * p["w1"] + p["b1"]) * p["w3"]
            + softplus(x * p["w2"] + p["b2"]) * p["w4"]
            + p["b3"]
        )
        ssr = ((y - yhat) ** 2).sum()
        ssr.backward()
        return ssr

    def step_with_optimizer():
        ssr = forward_backward()
        optimizer.step()
        optimizer.zero_grad()
        return ssr

    def step_by_hand():
        ssr = forward_backward()
        with lib.no_grad():
            for v in p.values():
                v.sub_(v.grad * LR)
                v.grad = None
        return ssr

    return step_by_hand if by_hand else step_with_optimizer


if __name__ == "__main__":
    with pin_threads(1):
        for by_hand, label in ((False, "optim.SGD update"), (True, "update by hand")):
            ours = make_step(cr, cr.softplus, by_hand)
            theirs = make_step(torch, torch.nn.functional.softplus, by_hand)
            for _ in range(5):
                np.testing.assert_allclose(ours().item(), theirs().item(), rtol=1e-12)
            compare(
                f"lesson network step (7 params, float64, {label})",
                ours,
                theirs,
                0.5,
                repeats=50,
                warmup=10,
                inner=20,
            )
