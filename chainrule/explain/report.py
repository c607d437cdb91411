"""Self-contained HTML reports: derivations, the graph, the step table and plots (inline base64
PNG). The graph is inline SVG from Graphviz's `dot`, or where `dot` is missing, laid out in the page
by Graphviz compiled to WebAssembly (`render.browser_html`), shipped in the page itself. Nothing in
the page is fetched from the network: no fonts, no external scripts, style sheets or images."""

import base64
import html
import shutil
from pathlib import Path

import numpy as np

from ..engine.tensor import Tensor
from . import render
from .graph import graph, track_modules
from .paths import paths
from .trace import Trace, figure_png, plot_loss

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1200px;
       color: #212529; background: #ffffff; }
h1 { font-size: 24px; } h2 { font-size: 19px; margin-top: 28px; border-bottom: 1px solid #dee2e6; }
pre { background: #f8f9fa; padding: 10px; overflow-x: auto; font-size: 13px;
      white-space: pre-wrap; }
table.chainrule-trace { border-collapse: collapse; font-size: 12px; font-family: monospace; }
table.chainrule-trace th, table.chainrule-trace td { border: 1px solid #dee2e6; padding: 2px 8px;
      text-align: right; }
.graph svg { max-width: 100%; height: auto; }
.plots img { max-width: 48%; margin: 4px; border: 1px solid #e9ecef; }
.note { color: #868e96; font-size: 13px; }
table.chainrule-counts { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
table.chainrule-counts caption { text-align: left; font-weight: bold; padding: 4px 0; }
table.chainrule-counts th, table.chainrule-counts td { border: 1px solid #dee2e6; padding: 2px 8px; }
table.chainrule-counts td:nth-child(2) { text-align: right; font-family: monospace; }
"""


def write_report(
    path,
    *,
    title="chainrule: backpropagation, shown",
    intro=None,
    derivations=(),
    symbolic=None,
    graph=None,
    steps=None,
    trace=None,
    figures=(),
    text=(),
    table_rows=60,
    multiplications=(),
):
    """Write one HTML file with everything inline and return its path.

    derivations: `paths(...)` results; symbolic: a `symbolic(...)` result; graph: a `graph(...)`
    drawing, or a list of them; trace: a `Trace`; figures: matplotlib figures or (caption, figure)
    pairs; text: (heading, preformatted text) pairs for anything else (for example a demo's
    printout); steps: a `steps(...)` result, the backward pass to step through with Next and Back.
    multiplications: `count_multiplications(...)` results, or (caption, result) pairs.
    """
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    if derivations:
        parts.append("<h2>The chain rule, path by path</h2>")
        for d in derivations:
            parts.append(f"<pre>{html.escape(str(d))}</pre>")
    if symbolic is not None:
        parts.append("<h2>The same derivatives, symbolically (SymPy)</h2>")
        parts.append(f"<pre>{html.escape(str(symbolic))}</pre>")
    drawings = [] if graph is None else list(graph) if isinstance(graph, list | tuple) else [graph]
    if drawings:
        parts.append("<h2>The computational graph</h2>")
        for i, drawing in enumerate(drawings):
            parts.append(_graph_html(drawing, first_in_page=i == 0))
    if steps is not None:
        parts.append("<h2>Backpropagation, step by step</h2>")
        parts.append(steps.html(standalone=True))
    if trace is not None and len(trace):
        parts.append("<h2>Gradient descent, step by step</h2>")
        parts.append(trace.html_table(max_rows=table_rows))
    figures = list(figures)
    if figures:
        parts.append('<h2>Plots</h2><div class="plots">')
        for item in figures:
            caption, fig = item if isinstance(item, tuple) else ("", item)
            data = base64.b64encode(figure_png(fig)).decode()
            alt = html.escape(caption or "plot")
            parts.append(f'<img alt="{alt}" title="{alt}" src="data:image/png;base64,{data}"/>')
        parts.append("</div>")
    parts += _multiplications_html(multiplications)
    for heading, body in text:
        parts.append(f"<h2>{html.escape(heading)}</h2><pre>{html.escape(body)}</pre>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _graph_html(drawing, first_in_page=True):
    if shutil.which("dot") is None:
        # The WebAssembly renderer (about 1.3 MB) goes in once, with the page's first graph.
        return render.browser_html(drawing.source, include_library=first_in_page)
    svg = drawing.svg()
    # The SVG goes in as markup; its XML prologue and DOCTYPE are not allowed inside HTML.
    start = svg.find("<svg")
    return f'<div class="graph">{svg[start:]}</div>'


def _multiplications_html(counts):
    counts = list(counts)
    if not counts:
        return []
    parts = [
        "<h2>Calculate once and use many times: the multiplications counted</h2>",
        '<p class="note">One multiplication is a gradient times one local derivative. The '
        "backward pass multiplies along each edge once and shares what it got with every path "
        "that goes on; multiplying out each path on its own, or running forward mode once per "
        "parameter, repeats that work.</p>",
    ]
    for item in counts:
        caption, result = item if isinstance(item, tuple) else (None, item)
        parts.append(result.html_table(caption))
    return parts


def model_report(
    model,
    inputs,
    targets,
    loss_fn,
    path,
    history=None,
    sample=0,
    title="chainrule explain",
    max_derivations=6,
):
    """Explain one sample's loss through `model` and write an HTML report: the derivation for
    each parameter (matrix form, with shapes), the graph grouped by module, and when `history`
    (a `train.History` or a `Trace`) is given, its plots."""
    x = inputs if isinstance(inputs, Tensor) else Tensor(np.asarray(inputs))
    t = targets if isinstance(targets, Tensor) else Tensor(np.asarray(targets))
    if len(x) <= sample:
        raise ValueError(f"model_report: sample {sample} is out of range for {len(x)} inputs")
    x, t = x[sample : sample + 1], t[sample : sample + 1]
    x.name, t.name = "x", "target"
    names = {p: name for name, p in model.named_parameters()}
    with track_modules(model) as modules:
        output = model(x)
    output.name = "output"
    loss = loss_fn(output, t)
    loss.name = "loss"
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    derivations = paths(loss, params[:max_derivations], names=names, max_paths=8)
    drawing = graph(loss, highlight=params[0] if params else None, names=names, modules=modules)
    figures, trace = [], None
    if isinstance(history, Trace):
        trace = history
        figures.append(("loss against step", history.plot_loss()))
    elif history is not None:
        if getattr(history, "step_loss", None):
            figures.append(("loss against step", plot_loss(history.step_loss)))
        if getattr(history, "epoch_loss", None):
            figures.append(
                (
                    "loss against epoch",
                    plot_loss(history.epoch_loss, title="Loss against epoch", label="epoch loss"),
                )
            )
        for name, values in (getattr(history, "metrics", None) or {}).items():
            if values:
                figures.append((name, plot_loss(values, title=f"{name} against epoch", label=name)))
    intro = (
        f"Sample {sample}: loss {float(loss.item()):.6g}. Parameters are named as in "
        "model.named_parameters(); g_X is d loss / d X."
    )
    return write_report(
        path,
        title=title,
        intro=intro,
        derivations=derivations,
        graph=drawing,
        trace=trace,
        figures=figures,
    )
