# Karpathy's makemore part 2 as a Module: a character-level MLP language model (Bengio et al.
# 2003) with an Embedding table, block size 3, tanh hidden layer and cross_entropy, trained full
# batch with SGD and a learning-rate drop. A small word list stands in for names.txt.
import torch
import torch.nn as nn
import torch.nn.functional as F

words = "emma olivia ava isabella sophia charlotte mia amelia harper evelyn abigail emily".split()
chars = sorted(list(set("".join(words))))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}
vocab_size = len(itos)

block_size = 3


def build_dataset(words):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    X = torch.tensor(X)
    Y = torch.tensor(Y)
    print(X.shape, Y.shape)
    return X, Y


Xtr, Ytr = build_dataset(words)


class MLP(nn.Module):
    def __init__(self, n_embd=10, n_hidden=64):
        super().__init__()
        self.C = nn.Embedding(vocab_size, n_embd)
        self.hidden = nn.Linear(n_embd * block_size, n_hidden)
        self.out = nn.Linear(n_hidden, vocab_size)

    def forward(self, idx):
        emb = self.C(idx)
        h = torch.tanh(self.hidden(emb.view(emb.shape[0], -1)))
        return self.out(h)


model = MLP()
print(sum(p.nelement() for p in model.parameters()))
for step in range(120):
    logits = model(Xtr)
    loss = F.cross_entropy(logits, Ytr)
    for p in model.parameters():
        p.grad = None
    loss.backward()
    lr = 0.5 if step < 80 else 0.05
    for p in model.parameters():
        p.data += -lr * p.grad
    if step % 20 == 0:
        print(f"{step:7d}: {loss.item():.4f}")
