"""DistributedDataParallel against one process on the same global batches (float64): after
training, every rank's parameters equal the single-process ones to rounding. Run by
tests/test_distributed.py under mpiexec; argv[1] names the optimizer."""

import os
import sys

import numpy as np

import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn
from chainrule.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
cr.set_default_dtype(cr.float64)
optimizer_name = sys.argv[1]
out_dir = sys.argv[2]


def make_model(seed):
    cr.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def make_optimizer(params):
    if optimizer_name == "sgd":
        return cr.optim.SGD(params, lr=0.05, momentum=0.9)
    return cr.optim.Adam(params, lr=0.01)


data = np.random.default_rng(0).standard_normal((6 * world * 8, 5))
target = np.random.default_rng(1).integers(0, 3, len(data))
dataset = cr.data.TensorDataset(cr.tensor(data), cr.tensor(target))
global_batch = 6 * world
loss_fn = nn.CrossEntropyLoss()

# Every rank starts from a different initialisation: DDP must broadcast rank 0's.
ddp = DDP(make_model(seed=rank), bucket_cap_mb=0.001)  # tiny buckets: several all-reduces a step
assert len(ddp._buckets) > 1
optimizer = make_optimizer(ddp.parameters())
sampler = cr.data.DistributedSampler(dataset, shuffle=True, seed=3)
loader = cr.data.DataLoader(dataset, batch_size=global_batch // world, sampler=sampler)
for epoch in range(2):
    sampler.set_epoch(epoch)
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(ddp(x), y).backward()
        optimizer.step()

# The same training in one process: each step's global batch is the ranks' shares together.
reference = make_model(seed=0)
ref_optimizer = make_optimizer(reference.parameters())
for epoch in range(2):
    shares = []
    for r in range(world):
        s = cr.data.DistributedSampler(dataset, num_replicas=world, rank=r, shuffle=True, seed=3)
        s.set_epoch(epoch)
        shares.append(list(s))
    steps = len(shares[0]) // (global_batch // world)
    for step in range(steps):
        b = global_batch // world
        index = [i for share in shares for i in share[step * b : (step + 1) * b]]
        x, y = dataset[index]
        ref_optimizer.zero_grad()
        loss_fn(reference(x), y).backward()
        ref_optimizer.step()

for (name, p), q in zip(ddp.module.named_parameters(), reference.parameters()):
    np.testing.assert_allclose(
        p.detach().numpy(), q.detach().numpy(), rtol=1e-11, atol=1e-13, err_msg=name
    )

# no_sync: two micro-batches accumulated locally, averaged once, equal one big step.
ddp_state = {k: v.clone() for k, v in ddp.module.state_dict().items()}
optimizer.zero_grad()
x, y = dataset[list(range(rank * 4, rank * 4 + 4))]
with ddp.no_sync():
    loss_fn(ddp(x[:2]), y[:2]).backward()
local = {n: p.grad.numpy().copy() for n, p in ddp.module.named_parameters()}
loss_fn(ddp(x[2:]), y[2:]).backward()
reference.load_state_dict(ddp_state)
reference.zero_grad()
for r in range(world):
    xr, yr = dataset[list(range(r * 4, r * 4 + 4))]
    (loss_fn(reference(xr[:2]), yr[:2]) / world).backward()
    (loss_fn(reference(xr[2:]), yr[2:]) / world).backward()
for (name, p), q in zip(ddp.module.named_parameters(), reference.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-11, atol=1e-13, err_msg=name)
if world > 1:
    assert any(not np.allclose(local[n], p.grad.numpy()) for n, p in ddp.module.named_parameters())

# Checkpoints: rank 0 saves, every rank loads (any world size can).
path = os.path.join(out_dir, "ddp.safetensors")
if rank == 0:
    cr.save(ddp.module.state_dict(), path)
dist.barrier()
restored = make_model(seed=99)
restored.load_state_dict(cr.load(path))
for p, q in zip(restored.parameters(), ddp.module.parameters()):
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
assert list(ddp.state_dict())[0].startswith("module.")
print(f"rank {rank} of {world}: ddp {optimizer_name} OK", flush=True)
