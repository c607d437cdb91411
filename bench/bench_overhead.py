"""Per-op overhead: a float32 (16,) tensor through 200 chained steps alternating x * 1.0001 + 0.001
and tanh(x), then sum() and backward(). Target ratio chainrule / PyTorch <= 0.6."""

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr

STEPS = 200


START = np.random.default_rng(0).standard_normal(16).astype(np.float32)


def chainrule_step(x0=START):
    x = cr.tensor(x0, requires_grad=True)
    y = x
    for i in range(STEPS):
        y = y * 1.0001 + 0.001 if i % 2 == 0 else cr.tanh(y)
    y.sum().backward()
    return x.grad


def torch_step():
    x = torch.from_numpy(START).clone().requires_grad_(True)
    y = x
    for i in range(STEPS):
        y = y * 1.0001 + 0.001 if i % 2 == 0 else torch.tanh(y)
    y.sum().backward()
    return x.grad


if __name__ == "__main__":
    with pin_threads(1):
        np.testing.assert_allclose(chainrule_step().numpy(), torch_step().numpy(), rtol=1e-5)
        compare(
            "per-op overhead (200 steps, float32 (16,))",
            chainrule_step,
            torch_step,
            0.6,
            repeats=40,
            warmup=10,
        )
        # The explainer must cost nothing until it is used: import it and measure again.
        import chainrule.explain  # noqa: F401

        compare(
            "per-op overhead with chainrule.explain imported",
            chainrule_step,
            torch_step,
            0.6,
            repeats=40,
            warmup=10,
        )
