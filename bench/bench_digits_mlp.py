"""One epoch of the digits MLP (64-128-128-10, ReLU, cross-entropy, batch 64, SGD with momentum 0.9)
in chainrule (nn, optim, data) and in PyTorch (torch.nn, torch.optim, torch.utils.data), same data,
same order, same weights. Target ratio chainrule / PyTorch <= 0.6.

Run: .venv/bin/python bench/bench_digits_mlp.py [threads] [--profile]"""

import sys

import numpy as np
import torch
from harness import compare, pin_threads
from sklearn.datasets import load_digits

import chainrule as cr

BATCH, LR, MOMENTUM = 64, 0.01, 0.9


def data():
    digits = load_digits()
    x = (digits.data[:1437] / 16.0).astype(np.float32)  # the 80% training part
    return x, digits.target[:1437].astype(np.int64)


def chainrule_epoch_fn(x, y):
    cr.manual_seed(0)
    nn = cr.nn
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = cr.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = cr.data.DataLoader(cr.data.TensorDataset(cr.tensor(x), cr.tensor(y)), batch_size=BATCH)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()

    return epoch, model


def torch_epoch_fn(x, y, chainrule_model, sliced=False):
    nn = torch.nn
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    model.load_state_dict(
        {k: torch.from_numpy(v.numpy().copy()) for k, v in chainrule_model.state_dict().items()}
    )
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH
    )
    loss_fn = nn.CrossEntropyLoss()
    if sliced:  # batches by slicing, skipping torch's per-sample fetch and collate
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        loader = [(xt[i : i + BATCH], yt[i : i + BATCH]) for i in range(0, len(x), BATCH)]

    def epoch():
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()

    return epoch, model


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1
    x, y = data()
    ours, our_model = chainrule_epoch_fn(x, y)
    theirs, their_model = torch_epoch_fn(x, y, our_model)
    with pin_threads(threads):
        ours()
        theirs()
        for (name, a), b in zip(
            our_model.state_dict().items(), their_model.state_dict().values(), strict=True
        ):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5, err_msg=name)
        if "--profile" in sys.argv:
            import cProfile
            import pstats

            cProfile.runctx(
                "for _ in range(20): ours()", globals(), locals(), "/tmp/cr_bench_mlp.prof"
            )
            pstats.Stats("/tmp/cr_bench_mlp.prof").sort_stats("tottime").print_stats(15)
        steps = len(x) // BATCH + 1
        compare(
            f"digits MLP epoch ({steps} steps, {threads} thread), torch DataLoader",
            ours,
            theirs,
            0.6,
            repeats=15,
            warmup=3,
        )
        # For reference: PyTorch without its DataLoader's per-sample collate, compute only.
        sliced, _ = torch_epoch_fn(x, y, our_model, sliced=True)
        compare(
            f"digits MLP epoch ({steps} steps, {threads} thread), torch pre-sliced batches",
            ours,
            sliced,
            0.6,
            repeats=15,
            warmup=3,
        )


if __name__ == "__main__":
    main()
