"""makemore part 2's MLP language model (Bengio et al. 2003): an Embedding table of 27 characters
in 10 dims, block size 3, a tanh hidden layer of 200, cross-entropy, minibatches of 32 drawn from
a word list, SGD: one forward + backward + update, the same model code run with chainrule and with
PyTorch from the same weights on the same batches, float32. Target ratio chainrule / PyTorch
<= 1.0 on one thread.

Run: .venv/bin/python bench/bench_makemore.py [threads...] [--profile]"""

import sys

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr

BLOCK, EMBED, HIDDEN, BATCH, LR = 3, 10, 200, 32, 0.1
WORDS = (
    "emma olivia ava isabella sophia charlotte mia amelia harper evelyn abigail emily elizabeth "
    "mila ella avery sofia camila aria scarlett victoria madison luna grace chloe penelope layla "
    "riley zoey nora lily eleanor hannah lillian addison aubrey ellie stella natalie zoe leah"
).split()


def dataset():
    chars = sorted(set("".join(WORDS)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    xs, ys = [], []
    for w in WORDS:
        context = [0] * BLOCK
        for ch in w + ".":
            xs.append(context)
            ys.append(stoi.get(ch, 0))
            context = context[1:] + [stoi.get(ch, 0)]
    return np.array(xs), np.array(ys), len(chars) + 1


def mlp(m):
    nn = m.nn

    class MLP(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.C = nn.Embedding(vocab, EMBED)
            self.hidden = nn.Linear(EMBED * BLOCK, HIDDEN)
            self.out = nn.Linear(HIDDEN, vocab)

        def forward(self, idx):
            emb = self.C(idx)
            return self.out(m.tanh(self.hidden(emb.view(emb.shape[0], -1))))

    return MLP


def step_fn(m, weights=None):
    x, y, vocab = dataset()
    torch.manual_seed(0)
    model = mlp(m)(vocab)
    if weights is not None:
        with m.no_grad():
            for name, p in model.named_parameters():
                p.copy_(m.tensor(weights[name]))
    optimizer = m.optim.SGD(model.parameters(), lr=LR)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(x), BATCH) for _ in range(16)]
    batches = [(m.tensor(x[ix]), m.tensor(y[ix])) for ix in batches]
    state = {"i": 0}

    def step():
        xb, yb = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = m.nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step, model


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    theirs, torch_model = step_fn(torch)
    weights = {n: p.detach().numpy().copy() for n, p in torch_model.named_parameters()}
    ours, _ = step_fn(cr, weights)
    for _ in range(3):
        np.testing.assert_allclose(ours().item(), theirs().item(), rtol=1e-4)
    if "--profile" in sys.argv:
        import cProfile
        import pstats

        with pin_threads(1):
            cProfile.run("for _ in range(2000): ours()", "/tmp/bench_makemore.prof")
        pstats.Stats("/tmp/bench_makemore.prof").sort_stats("tottime").print_stats(25)
        sys.exit()
    for n in [int(a) for a in args] or [1]:
        with pin_threads(n):
            compare(
                f"makemore MLP LM (embedding {EMBED}, block {BLOCK}, hidden {HIDDEN}), batch "
                f"{BATCH}, SGD step, {n} thread(s)",
                ours,
                theirs,
                1.0,
                repeats=25,
                warmup=20,
                inner=50,
                unit="us",
            )
