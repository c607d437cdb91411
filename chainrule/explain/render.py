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
import warnings
from functools import cache
from importlib import resources
from itertools import count, groupby

import matplotlib
import numpy as np
import pydot
from grandalf.graphs import Edge as _LayoutEdge
from grandalf.graphs import Graph as _LayoutGraph
from grandalf.graphs import Vertex as _LayoutVertex
from grandalf.layouts import SugiyamaLayout
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath
from matplotlib.text import Text

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
# Sizes are in points (1/72 inch), the figure's own unit, so that text and boxes keep dot's scale.
_NODE_PAD = (9, 6)  # around a node's text, horizontally and vertically
_LABEL_PAD = 4  # around an edge's label
_RANK_GAP = 22  # between neighbouring layers (columns, left to right)
_NODE_GAP = 14  # between neighbours in a layer
_MARGIN = 12
_ELLIPSE = 1.3
_LINE_SPACING = 1.25  # times the font size, from one line's baseline to the next
_DPI = 110
_MAX_PIXELS = 30000


def draw_layered(dot_source, path, format):  # noqa: A002 - matplotlib's and graphviz's name
    """Lay `dot_source` out in layers and write it to `path` as svg, png or pdf."""
    left_to_right, nodes, edges = _parse(dot_source)
    draw_layered_graph(nodes, edges, path, format, left_to_right=left_to_right)


def draw_layered_graph(nodes, edges, path, format, *, left_to_right=True):  # noqa: A002
    """The same drawing from the graph itself: nodes as (name, attributes), edges as (source,
    target, attributes), attributes as DOT's (label, shape, style, color, fillcolor, fontcolor,
    penwidth, fontsize) with unquoted values. Skips parsing, which for a large graph is most of
    the time."""
    figure = _layered_figure(dict(nodes), list(edges), left_to_right)
    FigureCanvasAgg(figure)
    # A bitmap is at most _MAX_PIXELS on a side (Agg's limit is 2**15): a long graph gets smaller.
    dpi = min(_DPI, _MAX_PIXELS / max(figure.get_size_inches()))
    # SVG text stays text (searchable, selectable, and small), as in Graphviz's own SVG.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(path, format=format, dpi=dpi)


def _parse(dot_source):
    with warnings.catch_warnings():
        # pydot's parser, on first use, calls pyparsing names that pyparsing 3.3 deprecates; the
        # warnings are about pydot's code, and a learner can do nothing about them.
        warnings.simplefilter("ignore", DeprecationWarning)
        graphs = pydot.graph_from_dot_data(dot_source)
    if not graphs:
        raise ValueError("the DOT text could not be parsed")
    dot = graphs[0]
    defaults = {k: _unquote(v) for d in dot.get_graph_defaults() for k, v in d.items()}
    nodes = {}
    for node in dot.get_nodes():
        name = _unquote(node.get_name())
        if name not in ("node", "edge", "graph"):
            nodes[name] = {k: _unquote(v) for k, v in node.get_attributes().items()}
    edges = []
    for edge in dot.get_edges():
        source, target = _unquote(edge.get_source()), _unquote(edge.get_destination())
        for name in (source, target):
            nodes.setdefault(name, {})
        edges.append((source, target, {k: _unquote(v) for k, v in edge.get_attributes().items()}))
    return defaults.get("rankdir") == "LR", list(nodes.items()), edges


class _Box:
    """A node, or an edge's label, as the layout sees it: a box of text. grandalf reads its view's
    (w, h) and writes its centre (xy), in its own top-to-bottom frame."""

    def __init__(self, lines, fontsize, pad, left_to_right, shape="box"):
        self.lines, self.fontsize, self.shape = lines, fontsize, shape
        self.line_height = fontsize * _LINE_SPACING
        self.w = _text_width(lines, fontsize) + 2 * pad[0]
        self.h = len(lines) * self.line_height + 2 * pad[1]
        if shape == "ellipse":
            # An ellipse around the text box: about sqrt(2) times its size reaches its corners.
            self.w, self.h = self.w * _ELLIPSE, self.h * _ELLIPSE
        self.xy = (0.0, 0.0)
        self.view = _View(self.h, self.w) if left_to_right else _View(self.w, self.h)


class _View:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


class _EdgeView:
    def __init__(self):
        self.points = []

    def setpath(self, points):
        self.points = points


def _layered_figure(nodes, edges, left_to_right):
    boxes = {}
    for name, attrs in nodes.items():
        lines = _label_lines(attrs.get("label", name))
        fontsize, shape = float(attrs.get("fontsize", 14)), attrs.get("shape", "box")
        boxes[name] = _Box(lines, fontsize, _NODE_PAD, left_to_right, shape)
    vertices = {name: _LayoutVertex(name) for name in boxes}
    for name, vertex in vertices.items():
        vertex.view = boxes[name].view
    # An edge's label is a box of its own in a layer between its ends, as dot places labels: the
    # layout then keeps labels apart from each other and from the nodes.
    routes, layout_edges, label_vertices = [], [], []
    for source, target, attrs in edges:
        hops = [vertices[source]]
        label = None
        if attrs.get("label"):
            lines = [(" ".join(text for text, _ in _label_lines(attrs["label"])), False)]
            pad = (_LABEL_PAD, _LABEL_PAD)
            label = _Box(lines, float(attrs.get("fontsize", 14)), pad, left_to_right)
            hops.append(_LayoutVertex(label))
            hops[-1].view = label.view
            label_vertices.append(hops[-1])
        hops.append(vertices[target])
        legs = []
        for a, b in zip(hops, hops[1:]):
            edge = _LayoutEdge(a, b)
            edge.view = _EdgeView()
            legs.append(edge)
        layout_edges += legs
        routes.append((boxes[source], boxes[target], label, legs, attrs))
    graph = _LayoutGraph(list(vertices.values()) + label_vertices, layout_edges)

    offset = 0.0
    for component in graph.C:
        layout = SugiyamaLayout(component)
        layout.yspace, layout.xspace = _RANK_GAP, _NODE_GAP
        # A computational graph has no cycles, so no edges need turning round; grandalf's search
        # for them recurses once per node, past Python's limit on a deep graph. optimize: each
        # input sits one layer before its first use, as dot ranks them, not all in the first.
        layout.init_all(inverted_edges=[], optimize=True)
        layout.draw()
        # Components side by side (one above the other, left to right): each past the previous.
        left = min(v.view.xy[0] - v.view.w / 2 for v in component.sV)
        shift = offset - left
        for v in component.sV:
            v.view.xy = (v.view.xy[0] + shift, v.view.xy[1])
        for e in component.sE:
            e.view.points = [(x + shift, y) for x, y in e.view.points]
        offset = max(v.view.xy[0] + v.view.w / 2 for v in component.sV) + 2 * _NODE_GAP

    def place(xy):
        # The layout runs top to bottom; left to right is the same picture turned.
        x, y = xy
        return (y, -x) if left_to_right else (x, -y)

    for name, box in boxes.items():
        box.xy = place(vertices[name].view.xy)
    for _, _, label, _, _ in routes:
        if label is not None:
            label.xy = place(label.view.xy)
    placed = list(boxes.values()) + [r[2] for r in routes if r[2] is not None]
    x0 = min(b.xy[0] - b.w / 2 for b in placed) - _MARGIN
    x1 = max(b.xy[0] + b.w / 2 for b in placed) + _MARGIN
    y0 = min(b.xy[1] - b.h / 2 for b in placed) - _MARGIN
    y1 = max(b.xy[1] + b.h / 2 for b in placed) + _MARGIN
    figure = Figure(figsize=((x1 - x0) / 72, (y1 - y0) / 72))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(x0, x1)
    axes.set_ylim(y0, y1)
    axes.axis("off")
    for source, target, label, legs, attrs in routes:
        points = [place(xy) for xy in legs[0].view.points[1:-1]]
        if label is not None:
            # The edge runs straight under its label, then on.
            x, y = label.xy
            under = y - label.h / 2 + _LABEL_PAD
            points += [(x - label.w / 2, under), (x + label.w / 2, under)]
            points += [place(xy) for xy in legs[1].view.points[1:-1]]
        _draw_edge(axes, source, target, points, label, attrs)
    for name, box in boxes.items():
        _draw_node(axes, box, nodes[name])
    return figure


def _draw_node(axes, box, attrs):
    x, y = box.xy
    color = attrs.get("color", "black")
    fill = attrs.get("fillcolor", "white") if "filled" in attrs.get("style", "") else "white"
    if box.shape == "ellipse":
        patch = Ellipse((x, y), box.w, box.h, facecolor=fill, edgecolor=color)
    else:
        rounded = "rounded" in attrs.get("style", "")
        patch = FancyBboxPatch(
            (x - box.w / 2, y - box.h / 2),
            box.w,
            box.h,
            boxstyle="round,pad=0,rounding_size=5" if rounded else "square,pad=0",
            facecolor=fill,
            edgecolor=color,
        )
    patch.set_linewidth(float(attrs.get("penwidth", 1)))
    _add(axes, patch)
    top = y + len(box.lines) * box.line_height / 2
    # One text per run of lines in the same weight (the bold title, then the rest).
    for bold, run in groupby(box.lines, key=lambda line: line[1]):
        run = [text for text, _ in run]
        height = len(run) * box.line_height
        text = Text(
            x,
            top - height / 2,
            "\n".join(run),
            ha="center",
            va="center",
            linespacing=_LINE_SPACING,
            fontsize=box.fontsize,
            fontweight="bold" if bold else "normal",
            color=attrs.get("fontcolor", "black"),
            family=_FONT,
        )
        _add(axes, text)
        top -= height


def _add(axes, artist):
    """Draw `artist` in the axes' data coordinates, added to the figure: the axes' own add_artist
    and text would clip each artist to the axes and update their limits, most of the time a large
    drawing takes (the limits are set already, and nothing lies outside them)."""
    artist.set_transform(axes.transData)
    artist.set_clip_on(False)
    axes.figure.add_artist(artist)


def _draw_edge(axes, source, target, points, label, attrs):
    color = attrs.get("color", "black")
    width = float(attrs.get("penwidth", 1))
    route = [source.xy, *points, target.xy]
    route[0] = _outline_point(source, route[1])
    route[-1] = _outline_point(target, route[-2])
    _add(
        axes,
        FancyArrowPatch(
            path=_smooth(route),
            arrowstyle="-|>",
            mutation_scale=8 + 2 * width,
            color=color,
            linewidth=width,
            linestyle="--" if attrs.get("style") == "dashed" else "-",
            joinstyle="round",
        ),
    )
    if label is not None:
        x, y = label.xy
        text = Text(
            x,
            y - label.h / 2 + 2 * _LABEL_PAD,
            label.lines[0][0],
            ha="center",
            va="bottom",
            fontsize=label.fontsize,
            color=attrs.get("fontcolor", color),
            family=_FONT,
        )
        _add(axes, text)


def _smooth(points):
    """A curve through `points` (cubic Bezier pieces with tangents from the neighbours), so that a
    long edge bends through its layers as dot's splines do instead of zigzagging."""
    points = [np.asarray(p, dtype=float) for p in points]
    if len(points) == 2:
        return MplPath(points, [MplPath.MOVETO, MplPath.LINETO])
    tangents = []
    for i in range(len(points)):
        before, after = points[max(i - 1, 0)], points[min(i + 1, len(points) - 1)]
        d = after - before
        norm = np.hypot(*d)
        tangents.append(d / norm if norm else d)
    vertices, codes = [points[0]], [MplPath.MOVETO]
    for (a, ta), (b, tb) in zip(zip(points, tangents), zip(points[1:], tangents[1:])):
        reach = np.hypot(*(b - a)) / 3
        vertices += [a + ta * reach, b - tb * reach, b]
        codes += [MplPath.CURVE4] * 3
    return MplPath(vertices, codes)


def _outline_point(box, toward):
    """Where the segment from the box's centre toward `toward` crosses its outline."""
    (x, y), (tx, ty) = box.xy, toward
    dx, dy = tx - x, ty - y
    if dx == 0 and dy == 0:
        return x, y
    if box.shape == "ellipse":
        scale = 1 / np.hypot(dx / (box.w / 2), dy / (box.h / 2))
        return x + dx * scale, y + dy * scale
    scale = min(
        (box.w / 2) / abs(dx) if dx else float("inf"),
        (box.h / 2) / abs(dy) if dy else float("inf"),
    )
    return x + dx * scale, y + dy * scale


_FONT = "sans-serif"  # matplotlib's, DejaVu Sans unless configured otherwise
_MEASURED_AT = 100  # points


def _text_width(lines, fontsize):
    """The widest line's width in points, in the font matplotlib will draw it in."""
    return fontsize * max(
        (sum(_advance(char, bold) for char in text) for text, bold in lines), default=0.0
    )


@cache
def _advance(char, bold):
    """A character's advance width as a fraction of the font size. Measured once per character:
    measuring whole strings through matplotlib costs about a millisecond each, which a large graph
    would pay for every label."""
    weight = "bold" if bold else "normal"
    font = get_font(findfont(FontProperties(family=_FONT, weight=weight)))
    font.set_size(_MEASURED_AT, 72)
    # linearHoriAdvance: the unhinted advance, in 1/65536 of a point at 72 dpi.
    return font.load_char(ord(char)).linearHoriAdvance / 65536 / _MEASURED_AT


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
