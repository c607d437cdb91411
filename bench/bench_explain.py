"""Explaining and drawing a 1,000-node graph: paths() to the first layer's weight, graph() with the
backward path highlighted, drawn to SVG by Graphviz's dot, and again as on a machine without dot:
by the built-in layered layout (an SVG file) and as an HTML report that lays the graph out in the
page (Graphviz in WebAssembly; its size is measured, its drawing time is the browser's).
Target: under 2 seconds each."""

import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import chainrule as cr  # noqa: E402
from chainrule import explain  # noqa: E402

TARGET_S = 2.0


def build(layers=333, width=8):
    """A deep MLP written with elementwise ops and matmuls: 3 nodes per layer, ~1,000 in all."""
    cr.manual_seed(0)
    x = cr.randn(16, width)
    x.name = "x"
    weights = []
    h = x
    for k in range(layers):
        w = cr.randn(width, width) * (1 / width**0.5)
        w.requires_grad_(True)
        w.name = f"W{k + 1}"
        weights.append(w)
        h = cr.tanh(h @ w + 0.1)
    loss = (h**2).mean()
    loss.name = "loss"
    return loss, weights


@contextmanager
def without_dot(folder):
    """PATH set to an empty folder: `dot` is not found (nothing else is run meanwhile)."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = str(folder)
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def explain_and_draw(loss, weights, draw):
    start = time.perf_counter()
    derivation = explain.paths(loss, weights[0])
    text = str(derivation)
    drawing = explain.graph(derivation.recorded, highlight=weights[0])
    result = draw(derivation, drawing)
    return time.perf_counter() - start, derivation, text, drawing, result


def main():
    loss, weights = build()
    missed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = []
        if shutil.which("dot"):
            runs.append(("dot, SVG", False, lambda d, g: len(g.svg())))
        else:
            print("Graphviz's dot is not installed: its run is left out")
        runs.append(("without dot, built-in layout, SVG", True,
                     lambda d, g: g.save(tmp / "g.svg").stat().st_size))  # fmt: skip
        runs.append(("without dot, HTML report", True,
                     lambda d, g: explain.write_report(tmp / "r.html", derivations=[d], graph=g)
                     .stat().st_size))  # fmt: skip
        for label, hide_dot, draw in runs:
            if hide_dot:
                with without_dot(tmp):
                    elapsed, derivation, text, drawing, size = explain_and_draw(loss, weights, draw)
            else:
                elapsed, derivation, text, drawing, size = explain_and_draw(loss, weights, draw)
            recorded = derivation.recorded
            verdict = "ok" if elapsed < TARGET_S else "MISSED"
            missed |= elapsed >= TARGET_S
            print(
                f"{label}: explain + draw a {len(recorded.op_vertices())}-node graph "
                f"({len(recorded.vertices)} vertices with leaves and constants; derivation "
                f"{len(text)} chars, output {size / 1024:.0f} KiB, grouped {drawing.grouped}): "
                f"{elapsed:.2f} s (target < {TARGET_S} s) {verdict}"
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
