"""Real PyTorch programs (tests/programs/, from PyTorch's tutorials and examples, data sets
replaced by synthetic data) run with only their import lines rewritten to chainrule, and compute
what PyTorch computes: every loss on which backward() is called equals PyTorch's, step for step,
from the same initial weights (float32 rounding).

The same initial weights: the first module a program calls has its parameters recorded in the
PyTorch run and copied into the chainrule run at that moment, by name. Nothing else is touched.
"""

import contextlib
import io
import re
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


def _run(source, module_class, tensor_class, on_first_call, monkeypatch):
    losses, called = [], []
    original_call, original_backward = module_class.__call__, tensor_class.backward

    def call(self, *args, **kwargs):
        if not called:
            called.append(True)
            on_first_call(self)
        return original_call(self, *args, **kwargs)

    def backward(self, *args, **kwargs):
        if self.ndim == 0:
            losses.append(float(self.detach()))
        return original_backward(self, *args, **kwargs)

    monkeypatch.setattr(module_class, "__call__", call)
    monkeypatch.setattr(tensor_class, "backward", backward)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})
    finally:
        monkeypatch.setattr(module_class, "__call__", original_call)
        monkeypatch.setattr(tensor_class, "backward", original_backward)
    return losses, out.getvalue()


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_runs_unchanged_with_torch_losses(path, monkeypatch):
    source = path.read_text()
    initial = {}

    def record(module):
        initial.update({n: p.detach().numpy().copy() for n, p in module.named_parameters()})

    def apply(module):
        names = [n for n, _ in module.named_parameters()]
        assert names == list(initial), f"parameter names differ: {names} vs {list(initial)}"
        with cr.no_grad():
            for name, p in module.named_parameters():
                p.copy_(cr.tensor(initial[name]))

    torch.manual_seed(0)
    theirs, their_output = _run(source, torch.nn.Module, torch.Tensor, record, monkeypatch)
    cr.manual_seed(0)
    ours, our_output = _run(to_chainrule(source), cr.nn.Module, cr.Tensor, apply, monkeypatch)
    assert len(theirs) > 3, "the program should train"
    assert len(ours) == len(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=path.name)
    assert len(our_output.splitlines()) == len(their_output.splitlines())


def test_import_rewriting_changes_only_import_lines():
    source = "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\nx = torch.zeros(1)  # import torch\n"
    assert to_chainrule(source).splitlines() == [
        "import chainrule as torch",
        "import chainrule.nn as nn",
        "from chainrule.utils.data import DataLoader",
        "x = torch.zeros(1)  # import torch",
    ]
