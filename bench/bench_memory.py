"""Peak memory of the MLP step (bench_mlp.py) above the memory after import, each library in its own
process, read from the kernel's high-water mark. Target: chainrule's no more than PyTorch's, and
the same with chainrule.explain imported (the explainer must cost nothing until it is used), also
where the loop holds each step's loss into the next step, as `loss = step()` in a training loop
does (a graph that outlives its backward must hold no more than before)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import sys
sys.path.insert(0, {here!r})
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
import {lib}
{extra}
import bench_mlp
base = rss('VmRSS')
step = bench_mlp.{lib_fn}()
loss = None
for _ in range(5):
    if {hold}:
        loss = step()
    else:
        step()
print(rss('VmHWM') - base)
"""


def peak(lib, lib_fn, extra="", hold=False):
    code = CHILD.format(here=str(HERE), lib=lib, lib_fn=lib_fn, extra=extra, hold=hold)
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, **env},
    )
    return int(out.stdout.strip().splitlines()[-1])


def report(title, ours, theirs):
    ratio = ours / theirs
    verdict = "ok" if ratio <= 1.0 else "MISSED"
    print(
        f"{title}: chainrule {ours / 2**20:.1f} MiB, PyTorch {theirs / 2**20:.1f} MiB, "
        f"ratio {ratio:.3f} (target <= 1.0) {verdict}"
    )


if __name__ == "__main__":
    EXPLAIN = "import chainrule.explain"
    for hold, title in (
        (False, "MLP step peak memory above import"),
        (True, "MLP step peak memory, each loss held into the next step"),
    ):
        theirs = peak("torch", "torch_step_fn", hold=hold)
        report(title, peak("chainrule", "chainrule_step_fn", hold=hold), theirs)
        ours = peak("chainrule", "chainrule_step_fn", extra=EXPLAIN, hold=hold)
        report(f"{title}, chainrule.explain imported", ours, theirs)
