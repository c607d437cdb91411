# A sequence classifier of the kind in PyTorch's examples and courses: a two-layer bidirectional
# GRU over batch-first sequences (dropout between the layers), the final hidden states of both
# directions concatenated into a linear head, cross-entropy, Adam, gradient clipping, and an
# evaluation pass. Synthetic data: the class is whether the sequence's running sum ends positive.
import torch
import torch.nn as nn

torch.manual_seed(0)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

n_samples, seq_len, n_features = 64, 12, 3
x = torch.randn(n_samples, seq_len, n_features)
y = (x.sum(dim=(1, 2)) > 0).long()


class GRUClassifier(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.gru = nn.GRU(
            input_size, hidden_size, num_layers=2, batch_first=True, dropout=0.2, bidirectional=True
        )
        self.fc = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, x):
        h0 = torch.zeros(2 * 2, x.size(0), self.gru.hidden_size).to(device)
        out, h_n = self.gru(x, h0)
        last = torch.cat((h_n[-2], h_n[-1]), dim=1)
        return self.fc(last)


model = GRUClassifier(n_features, 16, 2).to(device)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

for epoch in range(8):
    model.train()
    for i in range(0, n_samples, 16):
        inputs, labels = x[i : i + 16].to(device), y[i : i + 16].to(device)
        outputs = model(inputs)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
    print(f"Epoch [{epoch + 1}/8], Loss: {loss.item():.4f}")

model.eval()
with torch.no_grad():
    predicted = model(x).argmax(1)
    print(f"Accuracy: {100 * (predicted == y).sum().item() / n_samples:.1f}%")
