"""Parameters a forward leaves out: an error naming them without find_unused_parameters, and with
it the rest averaged and the unused ones left untouched. Run under mpiexec by
tests/test_distributed.py."""

import numpy as np

import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn
from chainrule.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
cr.set_default_dtype(cr.float64)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.used = nn.Linear(4, 1)
        self.spare = nn.Linear(4, 1)

    def forward(self, x):
        return self.used(self.body(x).tanh())


x = cr.tensor(np.arange(6.0).reshape(2, 3) + rank)

cr.manual_seed(0)
strict = DDP(TwoHeads())
strict(x).sum().backward()
try:
    strict(x)
    raise AssertionError("a forward after an incomplete reduction should fail")
except RuntimeError as e:
    message = str(e)
    assert "spare.weight" in message and "spare.bias" in message, message
    assert "find_unused_parameters=True" in message, message

cr.manual_seed(0)
model = TwoHeads()
lenient = DDP(model, find_unused_parameters=True)
for _ in range(2):
    model.zero_grad()
    lenient(x).sum().backward()
    assert model.spare.weight.grad is None and model.spare.bias.grad is None
    want = model.body.weight.grad.numpy().copy()
    gathered = [cr.zeros_like(model.body.weight.grad) for _ in range(world)]
    dist.all_gather(gathered, model.body.weight.grad)
    for g in gathered:  # every rank holds the same average
        np.testing.assert_array_equal(g.numpy(), want)
print(f"rank {rank} of {world}: unused parameters OK", flush=True)
