"""Explaining and drawing a 1,000-node graph: paths() to the first layer's weight, graph() with the
backward path highlighted, rendered to SVG by Graphviz's dot. Target: under 2 seconds in all."""

import sys
import time
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


def main():
    loss, weights = build()
    start = time.perf_counter()
    derivation = explain.paths(loss, weights[0])
    recorded = derivation.recorded
    text = str(derivation)
    drawing = explain.graph(recorded, highlight=weights[0])
    svg = drawing.svg()
    elapsed = time.perf_counter() - start
    nodes = len(recorded.op_vertices())
    verdict = "ok" if elapsed < TARGET_S else "MISSED"
    print(
        f"explain + draw a {nodes}-node graph ({len(recorded.vertices)} vertices with leaves and "
        f"constants; derivation {len(text)} chars, SVG {len(svg) // 1024} KiB, grouped "
        f"{drawing.grouped}): {elapsed:.2f} s (target < {TARGET_S} s) {verdict}"
    )
    return 0 if elapsed < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
