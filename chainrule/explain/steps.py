"""`steps(output)`: the backward pass of the user's own graph, one node at a time.

The walk is the engine's: nodes leave a heap newest first (creation order is a topological order,
so a node is processed once every path into it has delivered its gradient), and each node's rules
are applied by `Recorded.apply_edge`, which is the engine's own `deliver_gradients`. Each step
shows the node, the gradient that arrived at it, and for each input its local derivative (formula
and number) and the product; where paths meet, the running sum as each one arrives; the leaves'
totals are what backward puts in `.grad`.

`str()` is the sequence as text; `_repr_html_()` and `save("steps.html")` are a page with Next and
Back buttons (and the arrow keys) over the graph, drawn in the page by Graphviz in WebAssembly.
"""

import heapq
import html
import json
from itertools import count
from pathlib import Path as _FilePath

import numpy as np

from . import expr
from .graph import Drawing, _id, _summary
from .paths import _shapes, format_array
from .recorded import Recorded, Vertex
from .render import browser_html

# A leaf's full-precision values travel in the page (for checking what it shows) up to this size.
EXACT_VALUES_UP_TO = 64

_roots = count()


def steps(output, gradient=None, *, names=None):
    """The backward pass from `output` (a scalar, or any shape with `gradient=`), step by step.

    names: {tensor: "name"} for tensors without a `.name` (e.g. a model's named_parameters()).
    Every operation is a step under its own name (automatic ones like `add1` where unnamed)."""
    recorded = Recorded(output, gradient, names, inline=False)
    return Steps(recorded)


class _DerivativeName:
    """A derivative's name, d top / d bottom, in the slides' notation."""

    __slots__ = ("top", "bottom")

    def __init__(self, top, bottom):
        self.top, self.bottom = top, bottom

    def text(self):
        return f"d{self.top}/d{self.bottom}"

    def html(self):
        return (
            f'<span class="cr-frac"><span>d{html.escape(self.top)}</span>'
            f"<span>d{html.escape(self.bottom)}</span></span>"
        )


class _Number:
    """A value in a line: written out (or summarised) from the array."""

    __slots__ = ("value", "strong")

    def __init__(self, value, strong=False):
        self.value, self.strong = value, strong

    def text(self):
        return format_array(self.value)

    def html(self):
        cls = "cr-num cr-strong" if self.strong else "cr-num"
        return f'<span class="{cls}">{html.escape(self.text())}</span>'


class _Formula:
    """A formula in the user's names, as `expr` writes it."""

    __slots__ = ("source",)

    def __init__(self, source):
        self.source = source

    def text(self):
        return self.source

    def html(self):
        return f'<span class="cr-formula">{html.escape(self.source)}</span>'


class _Times:
    """The product sign: `*` in text (as `paths` writes it), `×` on the page."""

    __slots__ = ()

    def text(self):
        return " * "

    def html(self):
        return " \N{MULTIPLICATION SIGN} "


TIMES = _Times()


def _line_text(tokens):
    return "".join(t if isinstance(t, str) else t.text() for t in tokens)


def _line_html(tokens):
    return "".join(html.escape(t) if isinstance(t, str) else t.html() for t in tokens)


class Arrival:
    """One input's share of a step: what flows from `source` (the node) to `target` (the input),
    and the target's running sum after it arrived (arrival `number` of `count`)."""

    __slots__ = (
        "source",
        "index",
        "target",
        "incoming",
        "local",
        "local_value",
        "matrix",
        "shapes",
        "contribution",
        "before",
        "total",
        "number",
        "count",
        "note",
    )

    def __init__(self, recorded, source, index, incoming, contribution, before):
        self.source, self.index = source, index
        self.target = source.inputs[index][1]
        self.incoming = incoming
        self.contribution = contribution
        self.before = before
        self.total = contribution if before is None else before + contribution
        self.note = recorded.broadcast_note(source, index)
        self.number = self.count = 1
        # A per-element factor reads as one factor of a product; any other rule (a matrix
        # product, a reshape) is shown as the rule itself, with shapes.
        self.matrix = not recorded.factor_edge(source, index)
        if self.matrix:
            g_name = f"g_{source.name}"
            self.local = expr.to_text(recorded.formula(source, index, g_name=g_name))
            self.local_value = None
            self.shapes = _shapes(recorded, source, index)
        else:
            self.local = expr.to_text(recorded.factor_formula(source, index))
            self.local_value = recorded.local_value(source, index)
            self.shapes = None

    @property
    def complete(self):
        return self.number == self.count

    def rows(self, output_name):
        """(label, tokens) lines for this arrival."""
        v, u = self.source.name, self.target.name
        total_name = _DerivativeName(output_name, u)
        rows = []
        share = [total_name, " = "] if self.count == 1 else ["this path's share = "]
        if self.matrix:
            rows.append(
                (
                    "rule",
                    share
                    + [_Formula(self.local), f"   (g_{v} = ", _DerivativeName(output_name, v), ")"],
                )
            )
            rows.append(("shapes", [self.shapes]))
            rows.append(("value", share + [_Number(self.contribution, strong=self.count == 1)]))
        else:
            local = [_DerivativeName(v, u), " = ", _Formula(self.local)]
            value_text = format_array(self.local_value)
            if value_text != self.local:
                local += [" = ", _Number(self.local_value)]
            rows.append(("local", local))
            sigma = "\N{GREEK CAPITAL LETTER SIGMA} " if self.note else ""
            rows.append(
                (
                    "product",
                    share
                    + [
                        sigma,
                        _DerivativeName(output_name, v),
                        TIMES,
                        _DerivativeName(v, u),
                        " = ",
                        sigma,
                    ]
                    + [_Number(self.incoming), TIMES, _Number(self.local_value), " = "]
                    + [_Number(self.contribution, strong=self.count == 1)],
                )
            )
            if np.shape(self.contribution) != np.shape(self.incoming) and not self.note:
                spread = f"(spread over {u}'s shape {np.shape(self.contribution)})"
                rows.append(("", [spread]))
        if self.note:
            rows.append(("", [f"({self.note})"]))
        if self.count > 1:
            if self.before is None:
                tokens = [total_name, " so far = ", _Number(self.total)]
            else:
                tokens = [
                    total_name,
                    " = ",
                    _Number(self.before),
                    " + ",
                    _Number(self.contribution),
                ]
                tokens += [" = ", _Number(self.total, strong=self.complete)]
            where = f"   (path {self.number} of {self.count} into {u}"
            tokens.append(where + ("; complete)" if self.complete else "; more to come)"))
            rows.append(("sum", tokens))
        if self.target.kind == "leaf":
            state = "" if self.complete else " so far"
            rows.append((".grad", [f"{u}.grad{state} = ", _Number(self.total, strong=True)]))
        return rows


class Step:
    """One node processed: its incoming gradient (complete), and what each input received."""

    __slots__ = ("number", "vertex", "incoming", "received", "arrivals")

    def __init__(self, number, vertex, incoming, received):
        self.number, self.vertex, self.incoming = number, vertex, incoming
        self.received = received  # the arrivals that summed to `incoming`
        self.arrivals = []

    def heading(self, total):
        v = self.vertex
        formula = expr.to_text(v.expr)
        return (
            f"step {self.number} of {total}: {v.name} = {formula}   "
            f"({_op_label(v)}; value {format_array(v.value)})"
        )


def _why(step):
    """What this step does, in a sentence for the learner (HTML)."""
    v = step.vertex.name
    if len(step.received) > 1:
        ready = f"all {len(step.received)} paths into {html.escape(v)} have arrived and are summed"
    else:
        ready = f"the gradient at {html.escape(v)} is complete"
    if not step.arrivals:
        return f"Now {ready}; its inputs are constants, so nothing flows on."
    if any(a.matrix for a in step.arrivals):
        return (
            f"Now {ready}: {html.escape(v)} applies each input's backward rule (a matrix product "
            "or a reshaping, with the shapes shown) and passes the result on."
        )
    return (
        f"Now {ready}: {html.escape(v)} multiplies it by the local derivative of each input "
        "(the chain rule) and passes the product on."
    )


def _op_label(v):
    """The op, and for a layer-sized one its inputs' shapes (a matrix product reads by shape)."""
    inputs = [item for _, item in v.inputs if isinstance(item, Vertex)]
    if all(np.ndim(item.value) == 0 for item in inputs) and np.ndim(v.value) == 0:
        return v.node.op.name
    parts = ", ".join(f"{item.short()} {np.shape(item.value)}" for item in inputs)
    return f"{v.node.op.name}: {parts} -> {np.shape(v.value)}"


class Steps:
    """The backward pass from an output, as the engine performs it: `.steps` (one per node), the
    leaves' totals (`.grads`, what backward puts in `.grad`), `str()`, `_repr_html_()`, `save()`."""

    def __init__(self, recorded):
        self.recorded = recorded
        self.output = recorded.output
        self.seed = recorded._seed
        self.steps, self.totals = self._walk()
        self.leaves = [v for v in recorded.vertices if v.kind == "leaf" and v in self.totals]
        # The engine's own gradients (Recorded asks it) differ only where a hook changed one.
        self.hooked = [
            v for v in self.leaves if v.grad is None or not np.array_equal(v.grad, self.totals[v])
        ]

    def _walk(self):
        rec = self.recorded
        out = self.output
        totals = {out: self.seed}
        into = {out: []}
        heap = [(-out.node.seq, out.index)]
        done = []
        while heap:
            v = rec.vertices[heapq.heappop(heap)[1]]
            step = Step(len(done) + 1, v, totals[v], into[v])
            for i, item in v.inputs:
                if v.node.next[i] is None:  # no gradient edge (a constant, an index)
                    continue
                gi = rec.apply_edge(v, i, step.incoming)
                if gi is None:  # a custom Function's backward gave none for this input
                    continue
                before = totals.get(item)
                arrival = Arrival(rec, v, i, step.incoming, gi, before)
                totals[item] = arrival.total
                if before is None:
                    into[item] = []
                    if item.kind == "op":
                        heapq.heappush(heap, (-item.node.seq, item.index))
                into[item].append(arrival)
                step.arrivals.append(arrival)
            done.append(step)
        for arrivals in into.values():
            for k, a in enumerate(arrivals, 1):
                a.number, a.count = k, len(arrivals)
        return done, totals

    @property
    def grads(self):
        """{leaf name: its gradient}, as the walk summed it (what backward puts in .grad)."""
        return {v.name: self.totals[v] for v in self.leaves}

    # ---- text -------------------------------------------------------------------------------
    def _start_lines(self):
        name = self.output.name
        seed = "1" if self.seed.size == 1 else "the gradient given"
        return [
            f"Backpropagation through {name}, one node at a time, in the order backward() works: "
            "newest node first, each once every path into it has delivered its gradient.",
            f"d{name}/dX is the gradient of {name} with respect to X; dA/dX alone, a local "
            "derivative (how A changes with X).",
            f"start: backward seeds {name}: d{name}/d{name} = {seed}"
            + ("" if self.seed.size == 1 else f" = {format_array(self.seed)}"),
        ]

    def _step_rows(self, step):
        """(heading, None) for the incoming gradient and for each input, then its (label, tokens)
        rows."""
        name = self.output.name
        rows = [("incoming gradient", self._incoming(step))]
        for a in step.arrivals:
            rows.append(
                (f"to {a.target.name}" + (" (a leaf)" if a.target.kind == "leaf" else ""), None)
            )
            rows += a.rows(name)
        if not step.arrivals:
            rows.append(("", ["nothing flows on: its inputs are constants"]))
        return rows

    def _incoming(self, step):
        tokens = [
            _DerivativeName(self.output.name, step.vertex.name),
            " = ",
            _Number(step.incoming),
        ]
        if len(step.received) > 1:
            tokens.append(f"   (the sum of the {len(step.received)} paths that met here)")
        elif step.vertex is self.output:
            tokens.append("   (the seed)")
        return tokens

    def _done_lines(self):
        lines = ["done: every node has passed its gradient on; backward() puts in .grad:"]
        width = max((len(v.name) for v in self.leaves), default=0) + 5
        for v in self.leaves:
            lines.append(f"  {v.name + '.grad':<{width}} = {format_array(self.totals[v])}")
        for v in self.hooked:
            lines.append(
                f"  (the engine's gradient for {v.name} is {format_array(v.grad)}: a hook "
                "changed it)"
            )
        return lines

    def lines(self):
        out = self._start_lines()
        total = len(self.steps)
        for step in self.steps:
            out.append("")
            out.append(step.heading(total))
            for label, tokens in self._step_rows(step):
                if tokens is None:
                    out.append(f"  {label}:")
                elif label == "incoming gradient":
                    out.append(f"  {label}: {_line_text(tokens)}")
                else:
                    out.append(f"    {label:<9}{_line_text(tokens)}")
        out.append("")
        out += self._done_lines()
        return out

    def __str__(self):
        return "\n".join(self.lines())

    def __repr__(self):
        return str(self)

    # ---- the page ---------------------------------------------------------------------------
    def _panels(self):
        """The panel of every page: the start, one per step, the end."""
        start = self._start_lines()
        name = self.output.name
        panels = [
            "<h3>Start</h3>"
            + "".join(f"<p>{html.escape(line)}</p>" for line in start[:2])
            + f"<p>Backward seeds the output: {_DerivativeName(name, name).html()} = "
            + f"{_Number(self.seed, strong=True).html()}</p>"
            + "<p>Press <b>Next</b> (or →) to follow the gradient back through the graph.</p>"
        ]
        total = len(self.steps)
        for step in self.steps:
            v = step.vertex
            parts = [
                f'<h3>Step {step.number} of {total}: <span class="cr-name">{html.escape(v.name)}'
                f"</span> = {html.escape(expr.to_text(v.expr))}</h3>",
                f'<p class="cr-op">{html.escape(_op_label(v))}; value '
                f"{_Number(v.value).html()}</p>",
                f'<p class="cr-why">{_why(step)}</p>',
                '<table class="cr-rows">',
            ]
            for label, tokens in self._step_rows(step):
                if tokens is None:
                    parts.append(
                        f'<tr class="cr-to"><th colspan="2">{html.escape(label)}</th></tr>'
                    )
                else:
                    parts.append(
                        f'<tr><td class="cr-label">{html.escape(label)}</td>'
                        f"<td>{_line_html(tokens)}</td></tr>"
                    )
            parts.append("</table>")
            panels.append("".join(parts))
        done = self._done_lines()
        panels.append(
            "<h3>Done</h3><p>"
            + html.escape(done[0])
            + "</p><pre>"
            + html.escape("\n".join(line.strip() for line in done[1:]))
            + "</pre>"
        )
        return panels

    def _page_data(self):
        pages = [
            {
                "node": None,
                "edges": [],
                "arrivals": [self._arrival_data(self.output, self.seed, True)],
            }
        ]
        for step in self.steps:
            v = step.vertex
            pages.append(
                {
                    "node": _id(v),
                    "edges": [f"{_id(a.target)}->{_id(v)}" for a in step.arrivals],
                    "arrivals": [
                        self._arrival_data(a.target, a.total, a.complete) for a in step.arrivals
                    ],
                }
            )
        pages.append({"node": None, "edges": [], "arrivals": []})
        total = len(self.steps)
        labels = ["start"] + [f"step {k} of {total}" for k in range(1, total + 1)] + ["done"]
        for page, panel, label in zip(pages, self._panels(), labels, strict=True):
            page["panel"], page["label"] = panel, label
        return {
            "leaves": [{"id": _id(v), "name": v.name} for v in self.leaves],
            "pages": pages,
        }

    def _arrival_data(self, target, total, complete):
        item = {"to": _id(target), "grad": f"grad {_summary(total)}", "complete": complete}
        if target.kind == "leaf":
            item["text"] = format_array(total)
            if np.size(total) <= EXACT_VALUES_UP_TO:
                item["value"] = np.asarray(total, dtype=float).ravel().tolist()
        return item

    def html(self, include_library=True, standalone=False):
        """The stepper as an HTML fragment (the graph, the buttons, the panel, the leaves).
        include_library: embed viz.js (once per page); standalone: the arrow keys work anywhere
        on the page (in Jupyter, only when the stepper has the focus)."""
        root = f"chainrule-steps-{next(_roots)}"
        drawing = Drawing(self.recorded, [], group=False)
        data = json.dumps(self._page_data()).replace("</", "<\\/")
        return (
            f"<style>{_STYLE}</style>"
            f'<div class="cr-steps" id="{root}" tabindex="0">'
            '<div class="cr-bar">'
            '<button type="button" class="cr-back">◀ Back</button>'
            '<button type="button" class="cr-next">Next ▶</button>'
            '<span class="cr-counter">start</span>'
            '<span class="cr-hint">← → keys step too</span>'
            '<span class="cr-legend"><i class="cr-key-current"></i>being processed '
            '<i class="cr-key-partial"></i>some paths arrived '
            '<i class="cr-key-ready"></i>gradient complete, waiting '
            '<i class="cr-key-done"></i>done</span>'
            "</div>"
            f'<div class="cr-graph">{browser_html(drawing.source, include_library)}</div>'
            '<div class="cr-columns"><div class="cr-panel"></div>'
            '<div class="cr-side"><h3>The leaves\' .grad</h3>'
            '<table class="cr-leaves"></table></div></div>'
            f'<script type="application/json" class="cr-data">{data}</script>'
            f"<script>{_SCRIPT}chainruleSteps(document.getElementById({json.dumps(root)}), "
            f"{json.dumps(standalone)});</script>"
            "</div>"
        )

    def _repr_html_(self):
        return self.html()

    def save(self, path):
        """Write the stepper as a self-contained HTML page (nothing fetched from the network)."""
        path = _FilePath(path)
        title = f"Backpropagation through {self.output.name}, step by step"
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
            f"<title>{html.escape(title)}</title><style>{_PAGE_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>" + self.html(standalone=True) + "</body></html>\n"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        return path


_PAGE_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 20px auto; max-width: 1280px;
       color: #212529; background: #ffffff; padding: 0 16px; }
h1 { font-size: 22px; }
"""

_STYLE = """
.cr-steps { font-family: Helvetica, Arial, sans-serif; color: #212529; outline: none; }
.cr-steps .cr-bar { display: flex; align-items: center; gap: 10px; flex-wrap: wrap;
  padding: 8px 0; }
.cr-steps button { font-size: 15px; padding: 6px 16px; border: 1px solid #1c7ed6;
  background: #1c7ed6; color: white; border-radius: 6px; cursor: pointer; }
.cr-steps button:disabled { background: #e9ecef; border-color: #ced4da; color: #868e96;
  cursor: default; }
.cr-steps .cr-counter { font-weight: bold; min-width: 110px; }
.cr-steps .cr-hint, .cr-steps .cr-legend { color: #868e96; font-size: 13px; }
.cr-steps .cr-legend i { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 10px;
  border: 2px solid; border-radius: 3px; vertical-align: -2px; }
.cr-key-current { background: #ffe8cc; border-color: #d9480f !important; }
.cr-key-partial { background: #fff9db; border-color: #f08c00 !important;
  border-style: dashed !important; }
.cr-key-ready { background: #fff3bf; border-color: #f08c00 !important; }
.cr-key-done { background: #d3f9d8; border-color: #2b8a3e !important; }
.cr-steps .cr-graph { border: 1px solid #dee2e6; border-radius: 6px; padding: 6px;
  overflow-x: auto; background: white; }
.cr-steps .cr-graph svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
.cr-steps .cr-columns { display: flex; gap: 16px; margin-top: 12px; align-items: flex-start; }
.cr-steps .cr-panel { flex: 3; border: 1px solid #dee2e6; border-radius: 6px;
  padding: 4px 14px 10px; background: #f8f9fa; min-height: 160px; }
.cr-steps .cr-side { flex: 1; min-width: 220px; border: 1px solid #dee2e6; border-radius: 6px;
  padding: 4px 14px 10px; }
.cr-steps h3 { font-size: 16px; margin: 10px 0 6px; }
.cr-steps .cr-name { color: #d9480f; }
.cr-steps .cr-op { color: #495057; font-size: 13px; margin: 0 0 6px; }
.cr-steps .cr-why { font-size: 14px; margin: 0 0 6px; }
.cr-steps table.cr-rows { border-collapse: collapse; font-size: 14px; }
.cr-steps table.cr-rows td { padding: 3px 8px 3px 0; vertical-align: middle; }
.cr-steps table.cr-rows tr.cr-to th { text-align: left; padding: 10px 0 2px; color: #1864ab;
  border-bottom: 1px solid #dee2e6; }
.cr-steps .cr-label { color: #868e96; font-size: 12px; white-space: nowrap; }
.cr-steps .cr-frac { display: inline-flex; flex-direction: column; vertical-align: middle;
  text-align: center; font-size: 12px; line-height: 1.15; margin: 0 2px; }
.cr-steps .cr-frac > span:first-child { border-bottom: 1px solid currentColor; padding: 0 2px; }
.cr-steps .cr-formula { font-family: Menlo, Consolas, monospace; font-size: 13px;
  background: #e7f5ff; padding: 1px 4px; border-radius: 3px; }
.cr-steps .cr-num { font-family: Menlo, Consolas, monospace; font-size: 13px; }
.cr-steps .cr-strong { font-weight: bold; color: #2b8a3e; }
.cr-steps table.cr-leaves { border-collapse: collapse; font-size: 14px; width: 100%; }
.cr-steps table.cr-leaves td { padding: 4px 6px; border-bottom: 1px solid #f1f3f5; }
.cr-steps table.cr-leaves td.cr-pending { color: #adb5bd; }
.cr-steps table.cr-leaves td.cr-filled { font-family: Menlo, Consolas, monospace;
  font-weight: bold; color: #2b8a3e; }
.cr-steps table.cr-leaves tr.cr-just td { background: #fff3bf; }
.cr-steps pre { font-size: 14px; background: white; padding: 8px; border-radius: 4px; }
.cr-steps g.node.cr-todo { opacity: 0.45; }
.cr-steps g.node.cr-constant { opacity: 0.7; }
.cr-steps g.node.cr-current > :is(path, polygon, ellipse) { fill: #ffe8cc; stroke: #d9480f;
  stroke-width: 4; }
.cr-steps g.node.cr-partial > :is(path, polygon, ellipse) { fill: #fff9db; stroke: #f08c00;
  stroke-width: 2; stroke-dasharray: 5 3; }
.cr-steps g.node.cr-ready > :is(path, polygon, ellipse) { fill: #fff3bf; stroke: #f08c00;
  stroke-width: 2; }
.cr-steps g.node.cr-done > :is(path, polygon, ellipse) { fill: #d3f9d8; stroke: #2b8a3e;
  stroke-width: 2; }
.cr-steps g.edge.cr-active > path { stroke: #d9480f; stroke-width: 4; }
.cr-steps g.edge.cr-active > polygon { fill: #d9480f; stroke: #d9480f; }
.cr-steps g.edge.cr-active > text { fill: #d9480f; font-weight: bold; }
.cr-steps g.edge.cr-flowed > path { stroke: #2b8a3e; }
.cr-steps g.edge.cr-flowed > polygon { fill: #2b8a3e; stroke: #2b8a3e; }
.cr-steps g.edge.cr-waiting { opacity: 0.45; }
"""

# One function, defined once per page however many steppers it holds (re-defining it is harmless).
_SCRIPT = """
function chainruleSteps(root, standalone) {
  var data = JSON.parse(root.querySelector('script.cr-data').textContent);
  var pages = data.pages, page = 0;
  var panel = root.querySelector('.cr-panel'), counter = root.querySelector('.cr-counter');
  var back = root.querySelector('.cr-back'), next = root.querySelector('.cr-next');
  var leafTable = root.querySelector('.cr-leaves'), holder = root.querySelector('.cr-graph');
  var nodes = {}, edges = {}, gradTexts = {}, leafCells = {}, leafRows = {};
  data.leaves.forEach(function (leaf) {
    var row = document.createElement('tr'), name = document.createElement('td');
    var cell = document.createElement('td');
    name.textContent = leaf.name + '.grad';
    cell.setAttribute('data-leaf', leaf.name);
    row.appendChild(name); row.appendChild(cell); leafTable.appendChild(row);
    leafCells[leaf.id] = cell; leafRows[leaf.id] = row;
  });
  function indexGraph(svg) {
    svg.querySelectorAll('g.node').forEach(function (g) {
      var id = g.querySelector('title').textContent;
      nodes[id] = g;
      g.querySelectorAll('text').forEach(function (t) {
        if (t.textContent.indexOf('grad ') !== 0) return;
        // Graphviz places label lines by their start; the running value is centred instead.
        var box = g.querySelector('path, polygon, ellipse').getBBox();
        t.setAttribute('text-anchor', 'middle');
        t.setAttribute('x', String(box.x + box.width / 2));
        gradTexts[id] = t;
      });
    });
    svg.querySelectorAll('g.edge').forEach(function (g) {
      var id = g.querySelector('title').textContent;
      (edges[id] = edges[id] || []).push(g);
    });
  }
  function setClass(g, name) {
    ['cr-constant', 'cr-todo', 'cr-partial', 'cr-ready', 'cr-current', 'cr-done', 'cr-active',
     'cr-flowed', 'cr-waiting'].forEach(function (c) { g.classList.remove(c); });
    if (name) g.classList.add(name);
  }
  function show(k) {
    page = Math.max(0, Math.min(pages.length - 1, k));
    var state = {}, grad = {}, leaf = {}, flowed = {}, id;
    for (var s = 0; s <= page; s++) {
      var p = pages[s];
      if (p.node) state[p.node] = 'cr-done';
      p.edges.forEach(function (e) { flowed[e] = s === page ? 'cr-active' : 'cr-flowed'; });
      p.arrivals.forEach(function (a) {
        var isLeaf = a.to in leafCells;
        state[a.to] = a.complete ? (isLeaf ? 'cr-done' : 'cr-ready') : 'cr-partial';
        grad[a.to] = a.grad;
        if (isLeaf) leaf[a.to] = {arrival: a, now: s === page};
      });
    }
    var current = pages[page].node;
    if (current) state[current] = 'cr-current';
    if (current && nodes[current]) {
      var box = nodes[current].getBoundingClientRect(), view = holder.getBoundingClientRect();
      holder.scrollLeft += box.left + box.width / 2 - (view.left + view.width / 2);
    }
    for (id in nodes) {
      var isConstant = !(id in gradTexts);
      setClass(nodes[id], isConstant ? 'cr-constant' : (state[id] || 'cr-todo'));
      if (gradTexts[id]) gradTexts[id].textContent = grad[id] || 'grad ?';
    }
    for (id in edges) edges[id].forEach(function (g) { setClass(g, flowed[id] || 'cr-waiting'); });
    for (id in leafCells) {
      var cell = leafCells[id], got = leaf[id];
      leafRows[id].classList.toggle('cr-just', !!(got && got.now));
      if (got) {
        cell.textContent = got.arrival.text + (got.arrival.complete ? '' : '  (so far)');
        cell.className = 'cr-filled';
        cell.setAttribute('data-value', JSON.stringify(got.arrival.value || null));
        cell.setAttribute('data-complete', got.arrival.complete ? 'yes' : 'no');
      } else {
        cell.textContent = 'not yet'; cell.className = 'cr-pending';
        cell.removeAttribute('data-value'); cell.removeAttribute('data-complete');
      }
    }
    panel.innerHTML = pages[page].panel;
    counter.textContent = pages[page].label;
    root.setAttribute('data-page', String(page));
    back.disabled = page === 0;
    next.disabled = page === pages.length - 1;
  }
  back.addEventListener('click', function () { show(page - 1); });
  next.addEventListener('click', function () { show(page + 1); });
  (standalone ? document : root).addEventListener('keydown', function (event) {
    if (event.key === 'ArrowRight') { show(page + 1); event.preventDefault(); }
    if (event.key === 'ArrowLeft') { show(page - 1); event.preventDefault(); }
  });
  function attach() {
    var svg = holder.querySelector('svg');
    if (!svg || root.getAttribute('data-graph') === 'drawn') return !!svg;
    indexGraph(svg);
    // A wide graph shrunk to the page's width would be unreadable: past a point it keeps a
    // readable size and scrolls, following the node being processed.
    var natural = svg.viewBox.baseVal.width * 4 / 3;
    if (natural && holder.clientWidth / natural < 0.65) {
      svg.style.maxWidth = 'none';
      svg.style.width = Math.round(natural * 0.8) + 'px';
    }
    root.setAttribute('data-graph', 'drawn');
    show(page);
    return true;
  }
  if (!attach()) {
    var watcher = new MutationObserver(function () { if (attach()) watcher.disconnect(); });
    watcher.observe(holder, {childList: true, subtree: true});
  }
  show(0);
}
"""
