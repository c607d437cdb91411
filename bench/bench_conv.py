"""Conv2d(1, 32, 3, padding=1) forward + backward on a float32 batch of 64x1x28x28 (the input
does not require grad, as for a first layer), chainrule against PyTorch with the same weights.
Target ratio chainrule / PyTorch <= 1.5.

Run: .venv/bin/python bench/bench_conv.py [threads] [--profile]"""

import sys

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    cr.manual_seed(0)
    ours = cr.nn.Conv2d(1, 32, 3, padding=1)
    theirs = torch.nn.Conv2d(1, 32, 3, padding=1)
    theirs.load_state_dict(
        {k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()}
    )
    xc, xt = cr.tensor(x), torch.from_numpy(x)
    g = np.random.default_rng(1).standard_normal((64, 32, 28, 28)).astype(np.float32)
    gc, gt = cr.tensor(g), torch.from_numpy(g)

    def chainrule_step():
        ours.zero_grad()
        ours(xc).backward(gc)

    def torch_step():
        theirs.zero_grad()
        theirs(xt).backward(gt)

    with pin_threads(threads):
        chainrule_step()
        torch_step()
        np.testing.assert_allclose(
            ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-3, atol=1e-2
        )
        if "--profile" in sys.argv:
            import cProfile
            import pstats

            cProfile.runctx(
                "for _ in range(20): chainrule_step()",
                globals(),
                locals(),
                "/tmp/cr_bench_conv.prof",
            )
            pstats.Stats("/tmp/cr_bench_conv.prof").sort_stats("tottime").print_stats(10)
        compare(
            f"Conv2d(1, 32, 3, padding=1) fwd+bwd, 64x1x28x28 float32, {threads} thread",
            chainrule_step,
            torch_step,
            1.5,
            repeats=15,
            warmup=3,
        )


if __name__ == "__main__":
    main()
