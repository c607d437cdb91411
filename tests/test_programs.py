"""Real PyTorch programs (tests/programs/, from PyTorch's tutorials and examples, data sets
replaced by synthetic data) run with only their import lines rewritten to chainrule, and compute
what PyTorch computes: every loss on which backward() is called equals PyTorch's, step for step,
from the same initial weights (float32 rounding).

The same initial weights: each model (a module the program itself calls) has its parameters
recorded at its first call in the PyTorch run and copied into the chainrule run at that moment,
by name. The same random draws: in
the chainrule run, the random functions a program calls (`torch.randn`, `randint`, `randn_like`,
`Generator`, dropout masks, the DataLoader's seeds...) draw from PyTorch's generators, seeded as
the program seeds them, and at each sync point (each model's first call, each DataLoader
iteration, each `randint` and `multinomial` draw) the global generator is where the PyTorch run
had it. The programs themselves are not touched.
"""

import contextlib
import io
import re
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

import chainrule as cr

PROGRAMS = sorted((Path(__file__).parent / "programs").glob("*.py"))
_IMPORT = re.compile(r"^(\s*)import torch(\.[\w.]+)?(\s+as\s+\w+)?\s*$")
_FROM = re.compile(r"^(\s*)from torch(\.[\w.]+)? import (.*)$")


def to_chainrule(source):
    """The program with each `import torch...` / `from torch... import` line pointed at
    chainrule, keeping the names it binds; every other line as it was."""
    lines = []
    for line in source.splitlines():
        if m := _IMPORT.match(line):
            indent, sub, alias = m.groups()
            # `import torch.nn` binds `torch`, as `import chainrule as torch` does.
            line = (
                f"{indent}import chainrule{sub}{alias}"
                if alias
                else f"{indent}import chainrule as torch"
            )
        elif m := _FROM.match(line):
            line = f"{m[1]}from chainrule{m[2] or ''} import {m[3]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


class _TorchBackedGenerator:
    """cr.Generator's stand-in in the chainrule run: draws come from a torch.Generator."""

    def __init__(self, device="cpu"):
        self.torch = torch.Generator()

    def manual_seed(self, seed):
        self.torch.manual_seed(seed)
        return self


def _torch_generator(generator):
    return None if generator is None else generator.torch


def _torch_dtype(dtype):
    return getattr(torch, np.dtype(cr.get_default_dtype() if dtype is None else dtype).name)


def _from_torch(t, requires_grad=False):
    return cr.tensor(t.numpy(), requires_grad=requires_grad)


def _size(size):
    return tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size


# Draws of data (batch indices, samples) that a program may make between building a model and
# calling it, when the two runs' generators are not yet in step (PyTorch's initialisation drew
# from it, chainrule's did not): each is a sync point of its own.
SYNCED_DRAWS = ("randint", "multinomial")


def _synced_torch_draws(remember):
    """torch's data-drawing functions for the PyTorch run, each remembering the state first."""

    def synced(name):
        original = getattr(torch, name)

        def draw(*args, **kwargs):
            remember()
            return original(*args, **kwargs)

        return draw

    return {name: synced(name) for name in SYNCED_DRAWS}


def _random_from_torch(restore):
    """Replacements, by name in the chainrule namespace, for the random functions programs call;
    `restore()` runs before each of the SYNCED_DRAWS."""

    def randn(*size, dtype=None, requires_grad=False, generator=None, device=None):
        t = torch.randn(
            _size(size), generator=_torch_generator(generator), dtype=_torch_dtype(dtype)
        )
        return _from_torch(t, requires_grad)

    def rand(*size, dtype=None, requires_grad=False, generator=None, device=None):
        t = torch.rand(
            _size(size), generator=_torch_generator(generator), dtype=_torch_dtype(dtype)
        )
        return _from_torch(t, requires_grad)

    def randint(low=None, high=None, size=None, dtype=None, generator=None, device=None):
        if isinstance(high, tuple | list) and size is None:  # randint(high, size)
            low, high, size = None, low, high
        low, high = (0, low) if high is None else (0 if low is None else low, high)
        restore()
        t = torch.randint(low, high, tuple(size), generator=_torch_generator(generator))
        return _from_torch(t).to(cr.int64 if dtype is None else dtype)

    def multinomial(input, num_samples, replacement=False, generator=None):  # noqa: A002
        restore()
        t = torch.multinomial(
            torch.from_numpy(input.detach().numpy()),
            num_samples,
            replacement,
            generator=_torch_generator(generator),
        )
        return _from_torch(t)

    def randperm(n, generator=None, device=None):
        return _from_torch(torch.randperm(n, generator=_torch_generator(generator)))

    def randn_like(x, dtype=None, requires_grad=False, device=None):
        return randn(
            *x.shape, dtype=x.dtype if dtype is None else dtype, requires_grad=requires_grad
        )

    def rand_like(x, dtype=None, requires_grad=False, device=None):
        return rand(
            *x.shape, dtype=x.dtype if dtype is None else dtype, requires_grad=requires_grad
        )

    def manual_seed(seed):
        torch.manual_seed(seed)
        return original_manual_seed(seed)

    original_manual_seed = cr.manual_seed
    return {
        "randn": randn,
        "rand": rand,
        "randint": randint,
        "randperm": randperm,
        "multinomial": multinomial,
        "randn_like": randn_like,
        "rand_like": rand_like,
        "manual_seed": manual_seed,
        "Generator": _TorchBackedGenerator,
    }


def _dropout_from_torch(input, p=0.5, training=True, inplace=False):  # noqa: A002
    # PyTorch's own arithmetic: a Bernoulli(1 - p) mask divided by 1 - p, times the input.
    if not training or p == 0.0:
        return input
    noise = torch.empty(tuple(input.shape), dtype=_torch_dtype(input.dtype)).bernoulli_(1 - p)
    return input * cr.tensor(noise.div_(1 - p).numpy())


_loader_iter = cr.data.DataLoader.__iter__


def _random_sampler_iter(sampler):
    # PyTorch's RandomSampler without a generator: a seed drawn from the global generator, then
    # randperm from a generator seeded with it.
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    generator = torch.Generator().manual_seed(seed)
    return iter(torch.randperm(len(sampler.data_source), generator=generator).tolist())


def _iter_drawing_a_base_seed(loader):
    # PyTorch's DataLoader draws a base seed for its workers from the global generator each time
    # an iteration starts; the chainrule run draws it too, so later draws stay in step.
    torch.empty((), dtype=torch.int64).random_()
    return _loader_iter(loader)


def _run(source, library, on_first_call, on_sync, monkeypatch):
    """Execute `source`, returning the 0-d tensors handed to backward() and what it printed;
    `on_first_call(module)` runs at each model's first call (a module called from the program,
    not from another module), `on_sync()` then and whenever a DataLoader iteration starts."""
    if library is torch:
        classes = torch.nn.Module, torch.Tensor, torch.utils.data.DataLoader
    else:
        classes = cr.nn.Module, cr.Tensor, cr.data.DataLoader
    module_class, tensor_class, loader_class = classes
    original_call, original_backward = module_class.__call__, tensor_class.backward
    original_iter = loader_class.__iter__
    # Weakly held: a loss module made afresh each step is a new model, even at a reused address.
    losses, seen, depth = [], weakref.WeakSet(), [0]

    def call(self, *args, **kwargs):
        if depth[0] == 0 and self not in seen:  # a model's first call from the program
            seen.add(self)
            on_first_call(self)
            on_sync()
        depth[0] += 1
        try:
            return original_call(self, *args, **kwargs)
        finally:
            depth[0] -= 1

    def backward(self, *args, **kwargs):
        if self.ndim == 0:
            losses.append(float(self.detach()))
        return original_backward(self, *args, **kwargs)

    def iterate(loader):
        on_sync()
        return original_iter(loader)

    out = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(module_class, "__call__", call)
        patch.setattr(tensor_class, "backward", backward)
        patch.setattr(loader_class, "__iter__", iterate)
        with contextlib.redirect_stdout(out):
            exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})
    return losses, out.getvalue()


# Numbers standing alone: not the digits of a name (float32, NegBackward0).
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?!\w)")


def _numbers(output):
    return [float(n) for n in _NUMBER.findall(output)]


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_runs_unchanged_with_torch_losses(path, monkeypatch, tmp_path):
    source = path.read_text()
    monkeypatch.chdir(tmp_path)  # a program's own files (a checkpoint) go there
    initial, applied, states, synced = [], [], [], []

    def record(module):
        initial.append({n: p.detach().numpy().copy() for n, p in module.named_parameters()})

    def apply(module):
        assert len(applied) < len(initial), "the programs called different models"
        weights = initial[len(applied)]
        applied.append(True)
        names = [n for n, _ in module.named_parameters()]
        assert names == list(weights), f"parameter names differ: {names} vs {list(weights)}"
        with cr.no_grad():
            for name, p in module.named_parameters():
                p.copy_(cr.tensor(weights[name]))

    # PyTorch's initialisation draws from its generator, chainrule's from its own: at each sync
    # point (a model's first call, each DataLoader iteration) the chainrule run takes up
    # PyTorch's generator where the PyTorch run had it.
    def remember():
        states.append(torch.get_rng_state())

    def restore():
        assert len(synced) < len(states), "the programs reached different sync points"
        torch.set_rng_state(states[len(synced)])
        synced.append(True)

    torch.manual_seed(0)
    with monkeypatch.context() as patch:
        for name, draw in _synced_torch_draws(remember).items():
            patch.setattr(torch, name, draw)
        theirs, their_output = _run(source, torch, record, remember, monkeypatch)
    torch.manual_seed(0)
    cr.manual_seed(0)
    with monkeypatch.context() as patch:
        for name, replacement in _random_from_torch(restore).items():
            patch.setattr(cr, name, replacement)
        patch.setattr(cr.nn.functional, "dropout", _dropout_from_torch)
        patch.setattr(cr.data.DataLoader, "__iter__", _iter_drawing_a_base_seed)
        patch.setattr(cr.data.RandomSampler, "__iter__", _random_sampler_iter)
        ours, our_output = _run(to_chainrule(source), cr, apply, restore, monkeypatch)
    assert len(synced) == len(states)
    assert len(ours) == len(theirs)
    assert np.isfinite(theirs).all(), "the PyTorch run itself diverged: fix the program's sizes"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5, err_msg=path.name)
    # What the program prints, number by number (a program may train without calling backward).
    assert np.isfinite(_numbers(their_output)).all()
    assert _numbers(our_output) == pytest.approx(_numbers(their_output), rel=1e-4, abs=1e-5)
    assert len(theirs) + len(_numbers(their_output)) > 3, "the program should train"


def test_import_rewriting_changes_only_import_lines():
    source = "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\nx = torch.zeros(1)  # import torch\n"
    assert to_chainrule(source).splitlines() == [
        "import chainrule as torch",
        "import chainrule.nn as nn",
        "from chainrule.utils.data import DataLoader",
        "x = torch.zeros(1)  # import torch",
    ]
