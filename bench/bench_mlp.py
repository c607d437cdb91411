"""MLP 784-1024-1024-10, ReLU, cross-entropy, batch 256, float32: one forward + backward + SGD update.
Target ratio chainrule / PyTorch <= 1.05, on one thread and on two."""

import sys

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr
import chainrule.nn.functional as F

SIZES = [784, 1024, 1024, 10]
BATCH = 256
LR = 0.01


def weights(seed=0):
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)
        layers.append(
            (
                rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                rng.uniform(-bound, bound, fan_out).astype(np.float32),
            )
        )
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return layers, x, y


def chainrule_step_fn():
    layers, x, y = weights()
    params = [
        (cr.tensor(w, requires_grad=True), cr.tensor(b, requires_grad=True)) for w, b in layers
    ]
    x, y = cr.tensor(x), cr.tensor(y)

    def step():
        h = x
        for i, (w, b) in enumerate(params):
            h = F.linear(h, w, b)
            if i < len(params) - 1:
                h = F.relu(h)
        loss = F.cross_entropy(h, y)
        loss.backward()
        with cr.no_grad():
            for w, b in params:
                for p in (w, b):
                    p.sub_(p.grad, alpha=LR)
                    p.grad = None
        return loss

    return step


def torch_step_fn():
    layers, x, y = weights()
    params = [
        (torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True))
        for w, b in layers
    ]
    x, y = torch.tensor(x), torch.tensor(y)

    def step():
        h = x
        for i, (w, b) in enumerate(params):
            h = torch.nn.functional.linear(h, w, b)
            if i < len(params) - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        loss.backward()
        with torch.no_grad():
            for w, b in params:
                for p in (w, b):
                    p.sub_(p.grad, alpha=LR)
                    p.grad = None
        return loss

    return step


if __name__ == "__main__":
    threads = [int(a) for a in sys.argv[1:]] or [1, 2]
    ours, theirs = chainrule_step_fn(), torch_step_fn()
    for _ in range(3):
        np.testing.assert_allclose(ours().item(), theirs().item(), rtol=1e-4)
    for n in threads:
        with pin_threads(n):
            compare(
                f"MLP 784-1024-1024-10 step, batch 256, float32, {n} thread(s)",
                ours,
                theirs,
                1.05,
                repeats=15,
                warmup=3,
            )
