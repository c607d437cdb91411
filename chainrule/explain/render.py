"""Drawing a graph's DOT text where Graphviz's `dot` program is missing.

Two ways, one for each place a drawing is looked at:

- in a web page (the HTML report, Jupyter): `browser_html` embeds Graphviz compiled to WebAssembly
  (viz.js, shipped in `assets/`), which lays the DOT out inside the page itself, exactly as `dot`
  would, with nothing fetched from the network;
- in a file (`Drawing.save("g.svg")`): `draw_layered` parses the DOT (pydot), lays it out in layers
  (grandalf's Sugiyama layout, the same family of algorithm as `dot`) and draws it with matplotlib,
  which writes SVG, PNG and PDF.
"""

import html
import json
import re
from functools import cache
from importlib import resources
from itertools import count

import matplotlib
import pydot
from grandalf.graphs import Edge as _LayoutEdge
from grandalf.graphs import Graph as _LayoutGraph
from grandalf.graphs import Vertex as _LayoutVertex
from grandalf.layouts import SugiyamaLayout
from grandalf.routing import route_with_lines
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch

VIZ_JS = "viz-global.js"  # @viz-js/viz 3.31.0, MIT; Graphviz (EPL) inside as WebAssembly
LAYERED_FORMATS = ("svg", "png", "pdf")

_element_ids = count()


@cache
def viz_script():
    """The viz.js library (Graphviz as WebAssembly, about 1.3 MB) as one <script> element."""
    source = resources.files(__package__).joinpath("assets", VIZ_JS).read_text(encoding="utf-8")
    # A literal "</script" inside the library would end the element early.
    return "<script>" + source.replace("</script", "<\\/script") + "</script>"


def browser_html(dot_source, include_library=True):
    """An HTML fragment that lays out and draws `dot_source` in the browser. The page needs the
    library once: pass include_library=False for every graph after the first."""
    element = f"chainrule-graph-{next(_element_ids)}"
    # json.dumps gives a JavaScript string literal; "</" is escaped for the same reason as above.
    dot_literal = json.dumps(dot_source).replace("</", "<\\/")
    render = (
        "<script>(function () {"
        f"var target = document.getElementById({json.dumps(element)});"
        "Viz.instance().then(function (viz) {"
        f"target.replaceChildren(viz.renderSVGElement({dot_literal}));"
        "}).catch(function (error) {"
        "target.textContent = 'The graph could not be drawn: ' + error;"
        "});"
        "})();</script>"
    )
    placeholder = (
        f'<div class="graph" id="{element}" data-renderer="viz.js">'
        "<p>Drawing the graph (Graphviz in WebAssembly)...</p></div>"
    )
    return (viz_script() if include_library else "") + placeholder + render


# ---- the layered drawing, without `dot` -------------------------------------------------------
_POINTS_PER_INCH = 72
_LINE_HEIGHT = 14  # points, for 11-point text
_CHAR_WIDTH = 6.2  # points, a Helvetica average at 11 points


def draw_layered(dot_source, path, format):  # noqa: A002 - matplotlib's and graphviz's name
    """Lay `dot_source` out in layers and write it to `path` as svg, png or pdf."""
    figure = _layered_figure(dot_source)
    FigureCanvasAgg(figure)
    # SVG text stays text (searchable, selectable, and small), as in Graphviz's own SVG.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(path, format=format, dpi=110)


class _Node:
    def __init__(self, name, attrs):
        self.name = name
        self.attrs = attrs
        self.lines = _label_lines(attrs.get("label", name))
        width = _text_width(self.lines) + 18
        height = len(self.lines) * _LINE_HEIGHT + 12
        self.w, self.h = width, height
        self.xy = (0.0, 0.0)


class _View:
    """What grandalf's layout reads (w, h) and writes (xy) for a vertex."""

    def __init__(self, w, h):
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


class _EdgeView:
    def __init__(self):
        self.points = []

    def setpath(self, points):
        self.points = points


def _layered_figure(dot_source):
    graphs = pydot.graph_from_dot_data(dot_source)
    if not graphs:
        raise ValueError("the DOT text could not be parsed")
    dot = graphs[0]
    defaults = {k: _unquote(v) for d in dot.get_graph_defaults() for k, v in d.items()}
    left_to_right = defaults.get("rankdir") == "LR"
    nodes = {}
    for node in dot.get_nodes():
        name = _unquote(node.get_name())
        if name in ("node", "edge", "graph"):
            continue
        nodes[name] = _Node(name, {k: _unquote(v) for k, v in node.get_attributes().items()})
    edges = []
    for edge in dot.get_edges():
        source, target = _unquote(edge.get_source()), _unquote(edge.get_destination())
        for name in (source, target):
            nodes.setdefault(name, _Node(name, {}))
        edges.append((source, target, {k: _unquote(v) for k, v in edge.get_attributes().items()}))

    vertices = {}
    for name, node in nodes.items():
        vertex = _LayoutVertex(name)
        # The layout runs top to bottom; for a left-to-right drawing, width and height swap.
        vertex.view = _View(node.h, node.w) if left_to_right else _View(node.w, node.h)
        vertices[name] = vertex
    layout_edges = []
    for source, target, _ in edges:
        edge = _LayoutEdge(vertices[source], vertices[target])
        edge.view = _EdgeView()
        layout_edges.append(edge)
    graph = _LayoutGraph(list(vertices.values()), layout_edges)
    label_width = max(
        (_text_width(_label_lines(a.get("label", ""))) * 0.8 for _, _, a in edges), default=0
    )
    offset = 0.0
    for component in graph.C:
        layout = SugiyamaLayout(component)
        # Between layers there must be room for the longest edge label.
        layout.yspace = max(50, label_width + 30) if left_to_right else 50
        layout.xspace = 24
        layout.route_edge = route_with_lines
        layout.init_all()
        layout.draw()
        # Components side by side: shift each past the previous one.
        xs = [v.view.xy[0] - v.view.w / 2 for v in component.sV]
        shift = offset - min(xs)
        for v in component.sV:
            v.view.xy = (v.view.xy[0] + shift, v.view.xy[1])
        for e in component.sE:
            e.view.points = [(x + shift, y) for x, y in e.view.points]
        offset = max(v.view.xy[0] + v.view.w / 2 for v in component.sV) + 40

    def place(x, y):
        return (y, -x) if left_to_right else (x, -y)

    for name, node in nodes.items():
        node.xy = place(*vertices[name].view.xy)
    xs = [n.xy[0] - n.w / 2 for n in nodes.values()] + [n.xy[0] + n.w / 2 for n in nodes.values()]
    ys = [n.xy[1] - n.h / 2 for n in nodes.values()] + [n.xy[1] + n.h / 2 for n in nodes.values()]
    margin = 30
    x0, x1, y0, y1 = min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin
    figure = Figure(figsize=((x1 - x0) / _POINTS_PER_INCH, (y1 - y0) / _POINTS_PER_INCH))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(x0, x1)
    axes.set_ylim(y0, y1)
    axes.set_aspect("equal")
    axes.axis("off")
    for (source, target, attrs), edge in zip(edges, layout_edges):
        points = [place(x, y) for x, y in edge.view.points] or [nodes[source].xy, nodes[target].xy]
        _draw_edge(axes, nodes[source], nodes[target], points, attrs)
    for node in nodes.values():
        _draw_node(axes, node)
    return figure


def _draw_node(axes, node):
    attrs = node.attrs
    x, y = node.xy
    color = attrs.get("color", "black")
    fill = attrs.get("fillcolor", "white") if "filled" in attrs.get("style", "") else "white"
    width = float(attrs.get("penwidth", 1))
    if attrs.get("shape") == "ellipse":
        patch = Ellipse((x, y), node.w * 1.15, node.h * 1.1, facecolor=fill, edgecolor=color)
    else:
        rounded = "rounded" in attrs.get("style", "")
        patch = FancyBboxPatch(
            (x - node.w / 2, y - node.h / 2),
            node.w,
            node.h,
            boxstyle="round,pad=0,rounding_size=6" if rounded else "square,pad=0",
            facecolor=fill,
            edgecolor=color,
        )
    patch.set_linewidth(width)
    axes.add_patch(patch)
    top = y + (len(node.lines) - 1) * _LINE_HEIGHT / 2
    for i, (text, bold) in enumerate(node.lines):
        axes.text(
            x,
            top - i * _LINE_HEIGHT,
            text,
            ha="center",
            va="center",
            fontsize=float(attrs.get("fontsize", 11)) * 0.8,
            fontweight="bold" if bold else "normal",
            color=attrs.get("fontcolor", "black"),
            family="sans-serif",
        )


def _draw_edge(axes, source, target, points, attrs):
    color = attrs.get("color", "black")
    width = float(attrs.get("penwidth", 1))
    style = "--" if attrs.get("style") == "dashed" else "-"
    # The route's end points are the node centres: clip them to the nodes' outlines.
    path = [source.xy, *points[1:-1], target.xy]
    path = [_boundary(source, path[1]), *path[1:-1], _boundary(target, path[-2])]
    for a, b in zip(path[:-2], path[1:-1]):
        axes.plot([a[0], b[0]], [a[1], b[1]], color=color, linewidth=width, linestyle=style)
    axes.add_patch(
        FancyArrowPatch(
            path[-2],
            path[-1],
            arrowstyle="-|>",
            mutation_scale=10 + 2 * width,
            color=color,
            linewidth=width,
            linestyle=style,
        )
    )
    label = attrs.get("label")
    if label:
        mid = len(path) // 2
        a, b = path[mid - 1], path[mid]
        axes.text(
            (a[0] + b[0]) / 2,
            (a[1] + b[1]) / 2 + 6,
            " ".join(text for text, _ in _label_lines(label)),
            ha="center",
            va="bottom",
            fontsize=float(attrs.get("fontsize", 10)) * 0.8,
            color=attrs.get("fontcolor", color),
            family="sans-serif",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )


def _text_width(lines):
    return max((len(text) for text, _ in lines), default=0) * _CHAR_WIDTH


def _boundary(node, toward):
    """Where the segment from the node's centre toward `toward` leaves its box."""
    (x, y), (tx, ty) = node.xy, toward
    dx, dy = tx - x, ty - y
    if dx == 0 and dy == 0:
        return x, y
    scale = min(
        (node.w / 2) / abs(dx) if dx else float("inf"),
        (node.h / 2) / abs(dy) if dy else float("inf"),
    )
    return x + dx * scale, y + dy * scale


def _label_lines(label):
    """A DOT label (plain text, or an HTML-like <...> label with <b> and <br/>) as (text, bold)
    lines."""
    if label.startswith("<") and label.endswith(">"):
        lines = []
        for part in re.split(r"<br\s*/?>", label[1:-1]):
            bold = "<b>" in part
            lines.append((html.unescape(re.sub(r"<[^>]+>", "", part)), bold))
        return lines or [("", False)]
    return [(line, False) for line in label.replace("\\l", "\n").split("\\n")]


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value
