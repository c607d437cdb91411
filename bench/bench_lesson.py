"""The lesson's seven-parameter network (float64, three dosage points, SSR): one forward, backward
and gradient-descent update of all seven parameters. Target ratio chainrule / PyTorch <= 0.5."""

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr

DOSAGE = [0.0, 0.5, 1.0]
EFFICACY = [0.0, 1.0, 0.0]
START = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 0.0}
LR = 0.1


def make_step(lib, tensor, softplus, no_grad):
    x = tensor(DOSAGE, dtype=lib.float64)
    y = tensor(EFFICACY, dtype=lib.float64)
    p = {k: tensor(v, dtype=lib.float64, requires_grad=True) for k, v in START.items()}

    def step():
        yhat = (softplus(x * p["w1"] + p["b1"]) * p["w3"] + softplus(x * p["w2"] + p["b2"]) * p["w4"]
                + p["b3"])
        ssr = ((y - yhat) ** 2).sum()
        ssr.backward()
        with no_grad():
            for v in p.values():
                v.sub_(v.grad * LR)
                v.grad = None
        return ssr

    return step, p


if __name__ == "__main__":
    with pin_threads(1):
        ours, p_ours = make_step(cr, cr.tensor, cr.softplus, cr.no_grad)
        theirs, p_theirs = make_step(torch, torch.tensor, torch.nn.functional.softplus, torch.no_grad)
        for _ in range(5):
            a, b = ours(), theirs()
            np.testing.assert_allclose(a.item(), b.item(), rtol=1e-12)
        compare("lesson network step (7 params, float64)", ours, theirs, 0.5, repeats=50, warmup=10,
                inner=20)
