# pytorch/examples vae/main.py: the variational autoencoder (reparameterisation with
# torch.randn_like, binary_cross_entropy plus the KL term, Adam), its train and test loops.
# MNIST is replaced by synthetic images in [0, 1]; fewer samples and epochs.
import numpy as np
import torch
import torch.utils.data
from torch import nn, optim
from torch.nn import functional as F

args_cuda = torch.cuda.is_available()
args_mps = torch.backends.mps.is_available()
torch.manual_seed(1)
if args_cuda:
    device = torch.device("cuda")
elif args_mps:
    device = torch.device("mps")
else:
    device = torch.device("cpu")
kwargs = {"num_workers": 1, "pin_memory": True} if args_cuda else {}

rng = np.random.default_rng(4)
images = rng.random((96, 1, 28, 28)).astype(np.float32) ** 3
train_set = torch.utils.data.TensorDataset(torch.tensor(images[:64]), torch.zeros(64))
test_set = torch.utils.data.TensorDataset(torch.tensor(images[64:]), torch.zeros(32))
train_loader = torch.utils.data.DataLoader(train_set, batch_size=16, shuffle=False, **kwargs)
test_loader = torch.utils.data.DataLoader(test_set, batch_size=16, shuffle=False, **kwargs)


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


model = VAE().to(device)
optimizer = optim.Adam(model.parameters(), lr=1e-3)


def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def train(epoch):
    model.train()
    train_loss = 0
    for batch_idx, (data, _) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % 2 == 0:
            print(
                "Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}".format(
                    epoch,
                    batch_idx * len(data),
                    len(train_loader.dataset),
                    100.0 * batch_idx / len(train_loader),
                    loss.item() / len(data),
                )
            )
    print(
        "====> Epoch: {} Average loss: {:.4f}".format(epoch, train_loss / len(train_loader.dataset))
    )


def test(epoch):
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for i, (data, _) in enumerate(test_loader):
            data = data.to(device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
    test_loss /= len(test_loader.dataset)
    print("====> Test set loss: {:.4f}".format(test_loss))


for epoch in range(1, 3):
    train(epoch)
    test(epoch)
    with torch.no_grad():
        sample = torch.randn(64, 20).to(device)
        sample = model.decode(sample).cpu()
        print(tuple(sample.view(64, 1, 28, 28).shape))
