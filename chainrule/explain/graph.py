"""`graph(output, highlight=wrt)`: the computational graph as a Graphviz drawing laid out like the
slides: inputs on the left, the loss on the right, each node with its value and gradient, each edge
with its local derivative (formula and number), and the backward path to `highlight` standing out.

The DOT text is written here; Graphviz's `dot` program renders it (SVG, PNG, PDF) where it is
installed. Without `dot` every drawing is still drawn (`render`): files by a layered layout of its
own, web pages and Jupyter by Graphviz compiled to WebAssembly running in the page.
"""

import html
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path as _FilePath

import numpy as np

from ..engine.state import state
from . import expr, render
from .paths import format_array
from .recorded import Recorded, Vertex

# Past this many nodes a drawing groups operations by module (or by chains of operations).
GROUP_ABOVE = 200

_GET_GRAPHVIZ = (
    "install it with `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
    "or from https://graphviz.org/download/"
)
INSTALL_HINT = (
    "Graphviz's `dot` program is not installed, so graphs are drawn with chainrule's built-in "
    "layered layout; for Graphviz's own layout " + _GET_GRAPHVIZ
)

_HIGHLIGHT = "#d9480f"
_GREY = "#b0b0b0"
_FILL = {"op": "#eef4ff", "leaf": "#fff4d6", "const": "#f3f3f3", "group": "#e9f7ef"}


class ModuleRecord:
    """Which module's forward created which graph nodes: filled by `track_modules`."""

    def __init__(self):
        self.spans = []  # (qualified name, class name, first seq, last seq), outermost first
        self.parameter_names = {}  # parameter -> its name in the model ("0.weight")

    def module_of(self, seq):
        """The innermost module whose forward created node number `seq`, as (name, class)."""
        best = None
        for name, cls, start, end in self.spans:
            # Nested spans: the latest start, then the earliest end, is the innermost module.
            if start < seq <= end and (best is None or (start, -end) > (best[2], -best[3])):
                best = (name, cls, start, end)
        return None if best is None else best[:2]


class track_modules:
    """`with track_modules(model) as record: out = model(x)` notes, for each submodule, the graph
    nodes its forward created, so that large drawings group by module. It listens through forward
    pre- and post-hooks, which it removes on exit: the model's modules are not changed."""

    def __init__(self, model):
        self.model = model
        self.record = ModuleRecord()
        self._handles = []

    def __enter__(self):
        record = self.record
        record.parameter_names = {p: name for name, p in self.model.named_parameters()}
        for name, module in self.model.named_modules():
            note_start, note_end = _spanning(module, name or "model", record)
            # The start is noted after the user's pre-hooks and the end before the user's hooks,
            # so that the span is the forward's own nodes; always_call notes it even if forward
            # raises.
            self._handles.append(module.register_forward_pre_hook(note_start))
            self._handles.append(
                module.register_forward_hook(note_end, prepend=True, always_call=True)
            )
        return record

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return False


def _spanning(module, name, record):
    """The (pre-hook, hook) pair that notes the node numbers a call of `module` created."""
    cls = type(module).__name__
    starts = []  # a stack: a module may be called again inside its own forward

    def note_start(module, args):
        starts.append(state.counter)

    def note_end(module, args, output):
        # Empty when a pre-hook before note_start raised: that call created nothing of its own.
        if starts:
            record.spans.append((name, cls, starts.pop(), state.counter))

    return note_start, note_end


def graph(
    output, highlight=None, *, names=None, inline=None, modules=None, group=None, gradient=None
):
    """Draw the graph behind `output`. highlight: a tensor (or list) whose backward path is marked.
    modules: a `ModuleRecord` from `track_modules`; group: True/False to force grouping (default:
    group past GROUP_ABOVE nodes); its parameters are drawn under their names in the model
    ("0.weight") unless `names` says otherwise."""
    if modules is not None and names is None:
        names = modules.parameter_names
    recorded = output if isinstance(output, Recorded) else Recorded(output, gradient, names, inline)
    targets = []
    if highlight is not None:
        for t in highlight if isinstance(highlight, list | tuple) else [highlight]:
            targets.append(recorded.find(t))
    return Drawing(recorded, targets, modules, group)


class Drawing:
    """A rendered-on-demand Graphviz drawing: `.source` (DOT), `.save(path)`, `.pipe(format)`."""

    def __init__(self, recorded, targets, modules=None, group=None):
        self.recorded = recorded
        self.targets = targets
        visible = [v for v in recorded.vertices if v.visible and _drawn(v)]
        self.grouped = len(visible) > GROUP_ABOVE if group is None else bool(group)
        self.on_path = _on_path(recorded, targets)
        # The drawing as (name, attributes) nodes and (source, target, attributes) edges, which
        # the built-in layout draws directly, and as the DOT text `dot` and the browser read.
        parts = self._grouped_parts(modules) if self.grouped else self._parts(visible)
        self._nodes, self._edges = parts
        self.source = _dot_source(*parts)

    # ---- nodes and edges --------------------------------------------------------------------
    def _parts(self, visible):
        rec = self.recorded
        nodes, edges = [], []
        for v in visible:
            nodes.append((_id(v), self._node_style(v)))
        for v in visible:
            if v.kind != "op":
                continue
            for producer, formula, value, raw in _visible_inputs(rec, v):
                if not _drawn(producer):
                    continue
                style = self._edge_style(v, producer, formula, value, raw)
                edges.append((_id(producer), _id(v), style))
        return nodes, edges

    def _node_style(self, v):
        title = v.name
        rows = []
        if v.kind == "op":
            text = expr.to_text(v.expr)
            if text != v.name:
                rows.append(f"= {_short(text, 40)}")
        rows.append(f"value {_summary(v.value)}")
        if v.kind != "const":
            rows.append(f"grad {_summary(v.grad)}")
        label = (
            "<"
            + f"<b>{html.escape(title)}</b>"
            + "".join(f"<br/>{html.escape(r)}" for r in rows)
            + ">"
        )
        style = {
            "label": label,
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": _FILL[v.kind],
            "fontname": "Helvetica",
            "fontsize": "11",
        }
        if v.kind == "leaf":
            style["shape"] = "ellipse"
            style["style"] = "filled"
        if v.kind == "const":
            style["shape"] = "note"
            style["style"] = "filled"
        if self.targets:
            if v in self.targets:
                style.update(color=_HIGHLIGHT, penwidth="3", fontcolor="black")
            elif v in self.on_path:
                style.update(color=_HIGHLIGHT, penwidth="2")
            else:
                style.update(color=_GREY, fontcolor=_GREY, fillcolor="#fafafa")
        return style

    def _edge_style(self, consumer, producer, formula, value, raw):
        if producer.kind == "const":
            style = {"color": _GREY, "style": "dashed", "arrowsize": "0.6"}
            return style
        text = _short(expr.to_text(formula), 40)
        if value is not None:
            number = format_array(value, max_items=3)
            label = f"∂{consumer.name}/∂{producer.name} = {text}"
            if number != text:
                label += f" = {_short(number, 40)}"
        else:
            v, i = raw[-1]
            label = f"∂{consumer.name}/∂{producer.name}: {text}"
        style = {"label": label, "fontname": "Helvetica", "fontsize": "10"}
        if self.targets:
            if producer in self.on_path and consumer in self.on_path:
                style.update(color=_HIGHLIGHT, penwidth="3", fontcolor=_HIGHLIGHT)
            else:
                style.update(color=_GREY, fontcolor=_GREY)
        return style

    def _grouped_parts(self, modules):
        """One box per module (or per chain of operations), edges between boxes with shapes."""
        rec = self.recorded
        owner = _groups(rec, modules)
        nodes, edges = [], []
        members = {}
        for v in rec.vertices:
            if _drawn(v):
                members.setdefault(owner[v], []).append(v)
        for key, vs in members.items():
            if isinstance(key, Vertex):
                nodes.append((_id(key), self._node_style(key)))
                continue
            ops = [v for v in vs if v.kind == "op"]
            last = max(ops, key=lambda v: v.index) if ops else vs[-1]
            params = sum(int(np.size(v.value)) for v in vs if v.kind == "leaf")
            rows = [
                f"{len(ops)} ops" + (f", {params} parameters" if params else ""),
                f"out {_summary(last.value)}",
            ]
            label = (
                "<"
                + f"<b>{html.escape(key)}</b>"
                + "".join(f"<br/>{html.escape(r)}" for r in rows)
                + ">"
            )
            style = {
                "label": label,
                "shape": "box3d",
                "style": "filled",
                "fillcolor": _FILL["group"],
                "fontname": "Helvetica",
                "fontsize": "11",
            }
            if self.targets:
                if any(v in self.on_path for v in vs):
                    style.update(color=_HIGHLIGHT, penwidth="3")
                else:
                    style.update(color=_GREY, fontcolor=_GREY)
            nodes.append((_group_id(key), style))
        seen = set()
        for v in rec.op_vertices():
            for _, item in v.inputs:
                if not isinstance(item, Vertex) or not _drawn(item):
                    continue
                a, b = owner[item], owner[v]
                if a == b or (a, b) in seen:
                    continue
                seen.add((a, b))
                style = {
                    "label": str(tuple(np.shape(item.value))),
                    "fontsize": "9",
                    "fontname": "Helvetica",
                }
                if self.targets:
                    on = item in self.on_path and v in self.on_path
                    style.update(color=_HIGHLIGHT if on else _GREY, penwidth="3" if on else "1")
                edges.append((_group_id(a), _group_id(b), style))
        return nodes, edges

    # ---- rendering --------------------------------------------------------------------------
    def pipe(self, format="svg"):  # noqa: A002 - graphviz's name
        """The drawing rendered by `dot` as bytes; RuntimeError saying how to install it without
        it."""
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError(
                f"Drawing.pipe({format!r}) needs Graphviz's `dot` program, which is not installed "
                "(save() draws svg, png and pdf without it); " + _GET_GRAPHVIZ
            )
        result = subprocess.run(
            [dot, f"-T{format}"], input=self.source.encode(), capture_output=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def save(self, path, format=None):  # noqa: A002
        """Write the drawing and return its path; the format comes from the suffix (.svg, .png,
        .pdf; .dot/.gv write the DOT source). Without `dot`, svg, png and pdf are drawn by the
        built-in layered layout, and a note (once per session) says how to get Graphviz."""
        path = _FilePath(path)
        fmt = (format or path.suffix.lstrip(".") or "svg").lower()
        if fmt in ("dot", "gv"):
            path.write_text(self.source)
            return path
        if shutil.which("dot") is not None:
            path.write_bytes(self.pipe(fmt))
            return path
        if fmt not in render.LAYERED_FORMATS:
            raise ValueError(
                f"cannot draw {path} as {fmt!r} without Graphviz's `dot`: the built-in layout "
                f"writes {', '.join(render.LAYERED_FORMATS)} (or .dot for the source)"
            )
        render.draw_layered_graph(self._nodes, self._edges, path, fmt, left_to_right=True)
        _note_builtin_layout()
        return path

    def svg(self):
        """The drawing as SVG text, by `dot` (RuntimeError saying how to install it without it)."""
        return self.pipe("svg").decode()

    def _repr_svg_(self):
        if shutil.which("dot") is None:
            return None  # the HTML form draws it in the page instead
        return self.svg()

    def _repr_html_(self):
        if shutil.which("dot") is None:
            return render.browser_html(self.source)
        return self.svg()

    def __str__(self):
        return self.source


@cache
def _note_builtin_layout():
    """Say once per session that `dot` was missing: a note, not a failure."""
    print(f"note: {INSTALL_HINT}", file=sys.stderr)


def _dot_source(nodes, edges):
    lines = [
        "digraph chainrule {",
        '  graph [rankdir=LR, nodesep=0.35, ranksep=0.6, fontname="Helvetica", bgcolor="white"];',
        '  node [fontname="Helvetica"];',
        '  edge [fontname="Helvetica"];',
    ]
    lines += [f"  {_dot_id(name)} [{_attrs(style)}];" for name, style in nodes]
    lines += [f"  {_dot_id(a)} -> {_dot_id(b)} [{_attrs(style)}];" for a, b, style in edges]
    lines.append("}")
    return "\n".join(lines)


def _drawn(v):
    """Unnamed one-element constants appear as numbers inside formulas, not as nodes."""
    return not (v.kind == "const" and not v.user_named and np.size(v.value) == 1)


def _visible_inputs(rec, v):
    """(producer, formula, value, raw edges) for each edge into visible v, through hidden steps."""
    out = []
    stack = [(v, [], [], [])]
    while stack:
        current, trees, values, raw = stack.pop()
        for i, item in reversed(current.inputs):
            if not isinstance(item, Vertex):
                continue
            if item.kind == "const":
                if all(item is not o[0] for o in out):
                    out.append((item, None, None, [(current, i)]))
                continue
            factor = rec.factor_edge(current, i)
            tree = rec.factor_formula(current, i) if factor else rec.formula(current, i)
            value = rec.local_value(current, i) if factor else None
            t2, v2, r2 = trees + [tree], values + [value], raw + [(current, i)]
            if item.visible or item.kind != "op":
                number = None
                if all(x is not None for x in v2):
                    number = v2[0]
                    for x in v2[1:]:
                        number = np.multiply(number, x)
                out.append((item, expr.simplify(expr.product(t2)), number, r2))
            else:
                stack.append((item, t2, v2, r2))
    return out


def _on_path(rec, targets):
    """Vertices on some path from the output back to a target."""
    if not targets:
        return set()
    reaches = set(targets)
    for v in rec.op_vertices():
        if any(isinstance(x, Vertex) and x in reaches and x.differentiable for _, x in v.inputs):
            reaches.add(v)
    return reaches


def _groups(rec, modules):
    """Each vertex -> its group: a module name, an op chain's name, or itself (ungrouped)."""
    owner = {}
    for v in rec.vertices:
        owner[v] = v
    if modules is not None:
        for v in rec.op_vertices():
            found = modules.module_of(v.node.seq)
            if found is not None:
                owner[v] = f"{found[0]} ({found[1]})"
    else:
        # No module record: chains of operations (each step's only input made by the step before,
        # used nowhere else) become one box, named after their first and last operation. An op
        # that takes a parameter (a leaf) starts a new box, so that layers stay apart.
        chain = {}
        for v in rec.op_vertices():
            producers = [x for _, x in v.inputs if isinstance(x, Vertex) and x.kind == "op"]
            takes_parameter = any(isinstance(x, Vertex) and x.kind == "leaf" for _, x in v.inputs)
            if (
                len(producers) == 1
                and len(producers[0].consumers) == 1
                and producers[0] is not rec.output
                and not takes_parameter
            ):
                chain[v] = chain.get(producers[0], producers[0])
            else:
                chain[v] = v
        sizes = {}
        for head in chain.values():
            sizes[head] = sizes.get(head, 0) + 1
        last = {}
        for v, head in chain.items():
            last[head] = v
        for v, head in chain.items():
            if sizes[head] > 1:
                owner[v] = f"{head.name} … {last[head].name}"
    # Parameters and constants used only inside one group belong to it.
    for v in rec.vertices:
        if v.kind == "op" or not v.consumers:
            continue
        homes = {owner[c] for c, _ in v.consumers}
        if len(homes) == 1:
            home = homes.pop()
            if isinstance(home, str):
                owner[v] = home
    owner[rec.output] = rec.output
    return owner


def _summary(value):
    if value is None:
        return "none"
    a = np.asarray(value)
    if a.size <= 4:
        return format_array(a, max_items=4)
    return f"{a.shape} mean {expr.format_number(float(a.mean()))}"


def _short(text, limit):
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _id(v):
    return f"v{v.index}"


def _group_id(key):
    if isinstance(key, Vertex):
        return _id(key)
    return "group:" + key.replace('"', "'")


def _dot_id(name):
    return name if name.isidentifier() else f'"{name}"'


def _attrs(style):
    parts = []
    for k, value in style.items():
        value = str(value)
        if value.startswith("<") and value.endswith(">"):
            parts.append(f"{k}={value}")
        else:
            parts.append(f'{k}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return ", ".join(parts)
