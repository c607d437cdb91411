"""Shared benchmark plumbing: pin both libraries to the same thread count, time the median of
several repeats after warm-up, and print the ratio chainrule / PyTorch measured in this run."""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pin_threads(n):
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    return threadpool_limits(limits=n)


def median_time(fn, repeats=30, warmup=5, inner=1):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def compare(title, chainrule_fn, torch_fn, target, repeats=30, warmup=5, inner=1, unit="ms"):
    """Time both (interleaved rounds, so drift in machine load hits both alike) and print the ratio."""
    ours, theirs = [], []
    for fn in (chainrule_fn, torch_fn):
        for _ in range(warmup):
            fn()
    for _ in range(repeats):
        ours.append(median_time(chainrule_fn, repeats=1, warmup=0, inner=inner))
        theirs.append(median_time(torch_fn, repeats=1, warmup=0, inner=inner))
    a, b = statistics.median(ours), statistics.median(theirs)
    scale = 1e3 if unit == "ms" else 1e6
    ratio = a / b
    verdict = "ok" if ratio <= target else "MISSED"
    print(
        f"{title}: chainrule {a * scale:.3f} {unit}, PyTorch {b * scale:.3f} {unit}, "
        f"ratio {ratio:.3f} (target <= {target}) {verdict}"
    )
    return ratio
