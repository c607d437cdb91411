"""Data-parallel training with 1 and 2 processes (one thread each): chainrule's
DistributedDataParallel on MPI beside PyTorch's DistributedDataParallel on gloo, the same models, the
same global batch (split over the ranks), launched alike with mpiexec.

Two workloads: the digits MLP (64-128-128-10, global batch 64, SGD momentum 0.9) and the
784-1024-1024-10 MLP (global batch 256, float32). For each it prints the step time and throughput
of both libraries and their ratio, and for chainrule the time a step spends waiting for the
all-reduce after backward (the communication that did not overlap), and the all-reduce of all the
gradients alone, to check the cost model in the README.

Run: .venv/bin/python bench/bench_distributed.py"""

import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

WORKLOADS = {
    "digits MLP 64-128-128-10, batch 64": ([64, 128, 128, 10], 64, 60),
    "MLP 784-1024-1024-10, batch 256": ([784, 1024, 1024, 10], 256, 12),
}


def mpiexec():
    return str(Path(sys.executable).parent / "mpiexec")


def launch(ranks, library):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    command = [mpiexec(), "-n", str(ranks), sys.executable, __file__, "--worker", library]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{library} with {ranks} ranks failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def chainrule_worker():
    import chainrule as cr
    import chainrule.distributed as dist
    from chainrule import nn
    from chainrule.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    waited = [0.0]
    wait = dist.Work.wait

    def timed_wait(self, timeout=None):
        start = time.perf_counter()
        result = wait(self, timeout)
        waited[0] += time.perf_counter() - start
        return result

    dist.Work.wait = timed_wait
    results = {}
    for title, (sizes, batch, steps) in WORKLOADS.items():
        step, model = _chainrule_step(cr, nn, DDP, sizes, batch // world, rank)
        times = _time_steps(step, steps, dist.barrier)
        waits = []
        for _ in range(steps):
            waited[0] = 0.0
            step()
            waits.append(waited[0])
        flat = cr.zeros(sum(p.numel() for p in model.parameters()))
        alone = _time_steps(partial(dist.all_reduce, flat), steps, dist.barrier)
        results[title] = {
            "step": times,
            "exposed_wait": statistics.median(waits),
            "all_reduce_alone": alone,
        }
    if rank == 0:
        print(json.dumps(results))


def _chainrule_step(cr, nn, DDP, sizes, batch, rank):
    cr.manual_seed(0)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = DDP(nn.Sequential(*layers[:-1]))
    opt = cr.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = cr.tensor(rng.standard_normal((batch, sizes[0])).astype(np.float32))
    y = cr.tensor(rng.integers(0, sizes[-1], batch))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step, model


def torch_worker():
    import torch
    import torch.distributed as tdist
    from torch import nn

    torch.set_num_threads(1)
    rank, world = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for title, (sizes, batch, steps) in WORKLOADS.items():
        step = _torch_step(torch, nn, sizes, batch // world, rank)
        results[title] = {"step": _time_steps(step, steps, tdist.barrier)}
    if rank == 0:
        print(json.dumps(results))
    tdist.destroy_process_group()


def _torch_step(torch, nn, sizes, batch, rank):
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.parallel.DistributedDataParallel(nn.Sequential(*layers[:-1]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = torch.from_numpy(rng.standard_normal((batch, sizes[0])).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, sizes[-1], batch))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def _time_steps(step, steps, barrier):
    for _ in range(3):
        step()
    barrier()
    samples = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    barrier()
    return statistics.median(samples)


def main():
    measured = {}
    for ranks in (1, 2):
        for library in ("chainrule", "torch"):
            measured[ranks, library] = launch(ranks, library)
    for title, (sizes, batch, _) in WORKLOADS.items():
        params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
        print(f"{title} ({params:,} parameters, {params * 4 / 2**20:.2f} MiB of float32 gradients)")
        for ranks in (1, 2):
            ours = measured[ranks, "chainrule"][title]
            theirs = measured[ranks, "torch"][title]["step"]
            print(
                f"  {ranks} process{'es' if ranks > 1 else ''}: chainrule {ours['step'] * 1e3:.2f} ms "
                f"a step ({batch / ours['step']:,.0f} samples/s), PyTorch {theirs * 1e3:.2f} ms "
                f"({batch / theirs:,.0f} samples/s), ratio {ours['step'] / theirs:.3f}; "
                f"all-reduce waited for after backward {ours['exposed_wait'] * 1e3:.2f} ms, "
                f"all-reduce of every gradient alone {ours['all_reduce_alone'] * 1e3:.2f} ms"
            )
        one = measured[1, "chainrule"][title]["step"]
        two = measured[2, "chainrule"][title]["step"]
        print(f"  chainrule speed-up from 1 to 2 processes: {one / two:.2f}x")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        chainrule_worker() if sys.argv[-1] == "chainrule" else torch_worker()
    else:
        main()
