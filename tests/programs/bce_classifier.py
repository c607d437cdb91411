# A course-style binary classifier: two interleaved half-moons (NumPy), an nn.Sequential ending in
# Sigmoid, BCELoss, Adam with a StepLR schedule and gradient clipping, accuracy printed with
# format specs on 0-d tensors.
import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(1)
n = 200
angle = rng.uniform(0, np.pi, n)
upper = np.stack([np.cos(angle), np.sin(angle)], 1)
lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], 1)
X_np = np.concatenate([upper, lower]) + rng.normal(0, 0.1, (2 * n, 2))
y_np = np.concatenate([np.zeros(n), np.ones(n)])

X = torch.from_numpy(X_np).float()
y = torch.from_numpy(y_np).float().unsqueeze(1)

model = nn.Sequential(
    nn.Linear(2, 16),
    nn.ReLU(),
    nn.Linear(16, 16),
    nn.Tanh(),
    nn.Linear(16, 1),
    nn.Sigmoid(),
)
criterion = nn.BCELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)

for epoch in range(60):
    optimizer.zero_grad()
    probs = model(X)
    loss = criterion(probs, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
    scheduler.step()
    if epoch % 10 == 0:
        accuracy = ((probs > 0.5).float() == y).float().mean()
        print(
            f"epoch {epoch:3d}  loss {loss:.4f}  accuracy {accuracy:.3f}  lr {scheduler.get_last_lr()[0]:.4f}"
        )
