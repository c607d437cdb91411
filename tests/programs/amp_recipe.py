# PyTorch's "Automatic Mixed Precision" recipe: the training loop with torch.autocast and
# GradScaler, use_amp switched by whether a GPU is present, the scaler's state saved.
import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
use_amp = device == "cuda"


def make_model(in_size, out_size, num_layers):
    layers = []
    for _ in range(num_layers - 1):
        layers.append(torch.nn.Linear(in_size, in_size))
        layers.append(torch.nn.ReLU())
    layers.append(torch.nn.Linear(in_size, out_size))
    return torch.nn.Sequential(*tuple(layers)).to(device)


batch_size = 32
in_size = 64
out_size = 16
num_layers = 3
num_batches = 4
epochs = 3

torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
data = [
    torch.linspace(-1, 1, batch_size * in_size, device=device).view(batch_size, in_size) * (i + 1)
    for i in range(num_batches)
]
targets = [
    torch.linspace(0, 1, batch_size * out_size, device=device).view(batch_size, out_size)
    for _ in range(num_batches)
]

loss_fn = torch.nn.MSELoss().cuda() if use_amp else torch.nn.MSELoss()
net = make_model(in_size, out_size, num_layers)
opt = torch.optim.SGD(net.parameters(), lr=0.01)
scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

for epoch in range(epochs):
    for input, target in zip(data, targets):
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=use_amp):
            output = net(input)
            assert output.dtype is torch.float32 or output.dtype == torch.float32
            loss = loss_fn(output, target)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.1)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    print(f"epoch {epoch}: loss {loss.item():.6f}")

checkpoint = {
    "model": net.state_dict(),
    "optimizer": opt.state_dict(),
    "scaler": scaler.state_dict(),
}
print(sorted(checkpoint), checkpoint["scaler"])
