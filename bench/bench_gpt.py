"""A 4-layer GPT (nanoGPT's architecture: token and position embeddings, pre-LayerNorm blocks of
causal self-attention through F.scaled_dot_product_attention and a GELU MLP, AdamW) of width 128,
4 heads, on character data, block 64, batch 12, float32: one forward + backward + AdamW step, the
same model code run with chainrule and with PyTorch from the same weights on the same batches.
Target ratio chainrule / PyTorch <= 1.0 on one thread.

Run: .venv/bin/python bench/bench_gpt.py [threads...] [--profile]"""

import sys

import numpy as np
import torch
from harness import compare, pin_threads

import chainrule as cr

LAYERS, WIDTH, HEADS, BLOCK, BATCH = 4, 128, 4, 64, 12
TEXT = (
    "it was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness; we had everything before us, we had nothing before us.\n"
) * 40


def gpt(m):
    """The model class, written once against either library `m`."""
    nn, F = m.nn, m.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.c_attn = nn.Linear(WIDTH, 3 * WIDTH)
            self.c_proj = nn.Linear(WIDTH, WIDTH)
            self.c_fc = nn.Linear(WIDTH, 4 * WIDTH)
            self.mlp_proj = nn.Linear(4 * WIDTH, WIDTH)
            self.gelu = nn.GELU()

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(WIDTH, dim=2)
            q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, WIDTH), nn.Embedding(BLOCK, WIDTH)
            self.blocks = nn.Sequential(*[Block() for _ in range(LAYERS)])
            self.ln_f = nn.LayerNorm(WIDTH)
            self.lm_head = nn.Linear(WIDTH, vocab, bias=False)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(m.arange(idx.shape[1]))
            logits = self.lm_head(self.ln_f(self.blocks(x)))
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    return GPT


def batches(count=8, seed=0):
    chars = sorted(set(TEXT))
    data = np.array([chars.index(c) for c in TEXT], dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ix = rng.integers(0, len(data) - BLOCK - 1, BATCH)
        out.append(
            (
                np.stack([data[i : i + BLOCK] for i in ix]),
                np.stack([data[i + 1 : i + BLOCK + 1] for i in ix]),
            )
        )
    return len(chars), out


def step_fn(m, weights=None):
    vocab, data = batches()
    torch.manual_seed(0)
    model = gpt(m)(vocab)
    if weights is not None:
        with m.no_grad():
            for name, p in model.named_parameters():
                p.copy_(m.tensor(weights[name]))
    optimizer = m.optim.AdamW(model.parameters(), lr=1e-3)
    data = [(m.tensor(x), m.tensor(y)) for x, y in data]
    state = {"i": 0}

    def step():
        x, y = data[state["i"] % len(data)]
        state["i"] += 1
        loss = model(x, y)
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
            cProfile.run("for _ in range(20): ours()", "/tmp/bench_gpt.prof")
        pstats.Stats("/tmp/bench_gpt.prof").sort_stats("tottime").print_stats(25)
        sys.exit()
    for n in [int(a) for a in args] or [1]:
        with pin_threads(n):
            compare(
                f"GPT {LAYERS} layers, width {WIDTH}, block {BLOCK}, batch {BATCH}, AdamW step, "
                f"{n} thread(s)",
                ours,
                theirs,
                1.0,
                repeats=15,
                warmup=3,
            )
