# A multi-head regressor in a common style: a shared trunk, heads in an nn.ModuleDict, a learned
# per-task log-variance in an nn.ParameterDict, SmoothL1 and Huber losses, Adagrad, and
# evaluation under torch.inference_mode.
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(3)
features = torch.tensor(rng.normal(size=(128, 6)), dtype=torch.float32)
weights = rng.normal(size=(6, 2))
targets = {
    "price": torch.tensor(features.numpy() @ weights[:, :1] + 0.3, dtype=torch.float32),
    "demand": torch.tensor(np.tanh(features.numpy() @ weights[:, 1:]), dtype=torch.float32),
}


class MultiTask(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(6, 32), nn.SiLU(), nn.Linear(32, 32), nn.LeakyReLU(0.1)
        )
        self.heads = nn.ModuleDict({name: nn.Linear(32, 1) for name in targets})
        self.log_vars = nn.ParameterDict({name: nn.Parameter(torch.zeros(1)) for name in targets})

    def forward(self, x):
        h = self.trunk(x)
        return {name: head(h) for name, head in self.heads.items()}


model = MultiTask()
optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
for step in range(80):
    outputs = model(features)
    losses = {
        "price": F.smooth_l1_loss(outputs["price"], targets["price"], beta=0.5),
        "demand": nn.HuberLoss(delta=0.3)(outputs["demand"], targets["demand"]),
    }
    total = sum(torch.exp(-model.log_vars[k]) * v + model.log_vars[k] for k, v in losses.items())
    optimizer.zero_grad()
    total.sum().backward()
    optimizer.step()
    if step % 20 == 0:
        print(step, {k: round(v.item(), 4) for k, v in losses.items()})

with torch.inference_mode():
    final = model(features)
    print({k: f"{F.mse_loss(final[k], targets[k]):.5f}" for k in targets})
