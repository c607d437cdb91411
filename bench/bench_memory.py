"""Peak memory of the MLP step (bench_mlp.py) above the memory after import, each library in its own
process, read from the kernel's high-water mark. Target: chainrule's no more than PyTorch's."""

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
import bench_mlp
base = rss('VmRSS')
step = bench_mlp.{lib_fn}()
for _ in range(5):
    step()
print(rss('VmHWM') - base)
"""


def peak(lib, lib_fn):
    code = CHILD.format(here=str(HERE), lib=lib, lib_fn=lib_fn)
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, **env},
    )
    return int(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    ours = peak("chainrule", "chainrule_step_fn")
    theirs = peak("torch", "torch_step_fn")
    ratio = ours / theirs
    verdict = "ok" if ratio <= 1.0 else "MISSED"
    print(
        f"MLP step peak memory above import: chainrule {ours / 2**20:.1f} MiB, PyTorch "
        f"{theirs / 2**20:.1f} MiB, ratio {ratio:.3f} (target <= 1.0) {verdict}"
    )
