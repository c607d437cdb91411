"""A character-level LSTM step (and a GRU's), float32: embedding 64 -> LSTM(64, 128) -> linear to
64 classes, sequence 32, batch 32, cross-entropy on every step; forward + backward + SGD update.
Target ratio chainrule / PyTorch <= 1.0, on one thread."""

import sys

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr

VOCAB, EMBED, HIDDEN, SEQ, BATCH = 64, 64, 128, 32, 32
LR = 0.1


def model_fn(lib, cell):
    lib.manual_seed(0)

    class CharRNN(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = lib.nn.Embedding(VOCAB, EMBED)
            self.rnn = getattr(lib.nn, cell)(EMBED, HIDDEN, batch_first=True)
            self.head = lib.nn.Linear(HIDDEN, VOCAB)

        def forward(self, idx):
            out, _ = self.rnn(self.embed(idx))
            return self.head(out)

    return CharRNN()


def step_fn(lib, cell, weights):
    model = model_fn(lib, cell)
    with lib.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(lib.tensor(w))
    rng = np.random.default_rng(1)
    idx = lib.tensor(rng.integers(0, VOCAB, (BATCH, SEQ)))
    targets = lib.tensor(rng.integers(0, VOCAB, (BATCH, SEQ)))
    optimizer = lib.optim.SGD(model.parameters(), lr=LR)

    def step():
        logits = model(idx)
        loss = lib.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


if __name__ == "__main__":
    threads = [int(a) for a in sys.argv[1:]] or [1]
    for cell in ("LSTM", "GRU"):
        weights = [p.detach().numpy().copy() for p in model_fn(torch, cell).parameters()]
        ours, theirs = step_fn(cr, cell, weights), step_fn(torch, cell, weights)
        for _ in range(3):
            np.testing.assert_allclose(ours().item(), theirs().item(), rtol=1e-4)
        for n in threads:
            with pin_threads(n):
                compare(
                    f"char-level {cell} step (embed {EMBED}, hidden {HIDDEN}, seq {SEQ}, batch "
                    f"{BATCH}), float32, {n} thread(s)",
                    ours,
                    theirs,
                    1.0,
                    repeats=15,
                    warmup=3,
                )
