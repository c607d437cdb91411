"""Drawings on a machine without Graphviz's `dot` (hidden from PATH by the `without_dot` fixture):
files are drawn by the built-in layered layout, Jupyter and the HTML report by Graphviz compiled to
WebAssembly in the page. Oracles: the file formats' own signatures and parsers, and the node and
edge labels the slides' graph must show."""

import re
import sys
import xml.etree.ElementTree as ET

import matplotlib.image
import numpy as np
import PIL.Image
import pytest
from test_explain import slides

import chainrule as cr
from chainrule import explain
from chainrule.explain import render

SLIDES_NODES = ["b", "w1", "w2", "x1", "x2", "y", "a1", "a2", "yhat", "Loss"]
SVG = "{http://www.w3.org/2000/svg}"


def _svg_texts(path):
    return [("".join(t.itertext())).strip() for t in ET.parse(path).getroot().iter(f"{SVG}text")]


def test_saving_svg_without_dot_draws_every_node_and_edge_label(tmp_path, without_dot):
    loss, t = slides()
    written = explain.graph(loss, highlight=t["w1"]).save(tmp_path / "g.svg")
    assert written == tmp_path / "g.svg"
    texts = _svg_texts(written)
    for name in SLIDES_NODES:
        assert name in texts, f"node {name} missing from {texts}"
    assert "∂a1/∂w1 = x1 = 3" in texts and "∂Loss/∂yhat = 2(yhat - y) = 2" in texts
    assert "grad 6" in texts  # w1's gradient, 2 (yhat - y) x1
    # the highlighted path is drawn in the explainer's orange
    assert "#d9480f" in written.read_text()


def test_saving_png_and_pdf_without_dot_writes_real_drawings(tmp_path, without_dot):
    loss, t = slides()
    g = explain.graph(loss, highlight=t["w1"])
    png = g.save(tmp_path / "g.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(str(png))[..., :3]
    height, width = image.shape[:2]
    assert width > 1.5 * height > 600  # left to right: wider than tall
    dark = (image.sum(axis=-1) < 1.0).sum()
    orange = np.all(np.abs(image - np.array([0xD9, 0x48, 0x0F]) / 255) < 0.15, axis=-1).sum()
    assert dark > 2000 and orange > 500  # text and outlines, and the highlighted path
    pdf = g.save(tmp_path / "g.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and pdf.rstrip().endswith(b"%%EOF")


def test_saving_without_dot_says_once_that_it_used_the_built_in_layout(
    tmp_path, without_dot, capsys
):
    sys.modules["chainrule.explain.graph"]._note_builtin_layout.cache_clear()
    loss, _ = slides()
    g = explain.graph(loss)
    g.save(tmp_path / "a.svg")
    g.save(tmp_path / "b.png")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "built-in layered layout" in lines[0] and "apt-get install graphviz" in lines[0]


def test_saving_dot_writes_the_source_with_or_without_dot(tmp_path, without_dot):
    loss, _ = slides()
    g = explain.graph(loss)
    assert g.save(tmp_path / "g.dot").read_text() == g.source
    assert g.save(tmp_path / "g.gv").read_text() == g.source


def test_saving_an_unknown_format_without_dot_names_the_formats_it_can_write(tmp_path, without_dot):
    loss, _ = slides()
    with pytest.raises(ValueError, match=r"g\.jpg as 'jpg'.*svg, png, pdf"):
        explain.graph(loss).save(tmp_path / "g.jpg")
    assert not (tmp_path / "g.jpg").exists()


def test_piping_through_dot_without_dot_says_what_draws_instead_and_how_to_install(without_dot):
    loss, _ = slides()
    with pytest.raises(RuntimeError, match=r"pipe\('png'\) needs .*save\(\).*apt-get install"):
        explain.graph(loss).pipe("png")


def test_jupyter_without_dot_draws_the_graph_in_the_page(without_dot):
    loss, t = slides()
    g = explain.graph(loss, highlight=t["w1"])
    assert g._repr_svg_() is None  # so the notebook shows the HTML form
    page = g._repr_html_()
    assert render.viz_script() in page and "renderSVGElement" in page
    assert "<pre" not in page  # the DOT text is data for the renderer, not shown


def test_jupyter_with_dot_shows_dot_s_svg():
    loss, t = slides()
    g = explain.graph(loss, highlight=t["w1"])
    assert g._repr_svg_().lstrip().startswith("<?xml") and "<script" not in g._repr_html_()


def _visible_markup(page):
    """The page without its scripts and style sheet: what a reader can see."""
    return re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)


def test_report_without_dot_draws_its_graphs_in_the_page_with_the_renderer_once(
    tmp_path, without_dot
):
    loss, t = slides()
    drawings = [explain.graph(loss, highlight=t["w1"]), explain.graph(loss, highlight=t["b"])]
    path = explain.write_report(tmp_path / "r.html", graph=drawings)
    page = path.read_text()
    library = render.viz_script()
    assert page.count(library) == 1
    assert page.count('data-renderer="viz.js"') == 2
    assert page.index(library) < page.index('data-renderer="viz.js"')
    visible = _visible_markup(page)
    assert "digraph" not in visible and "rankdir" not in visible and "->" not in visible
    assert "<pre>" not in visible
    # self-contained: nothing fetched, and the renderer is the bulk of its size
    assert not re.search(r'(src|href)="(https?:)?//', page) and "import(" not in visible
    assert len(page.encode()) < 2_000_000


def test_report_with_dot_inlines_its_svg_and_no_renderer(tmp_path):
    loss, t = slides()
    page = explain.write_report(
        tmp_path / "r.html", graph=explain.graph(loss, highlight=t["w1"])
    ).read_text()
    assert "<svg" in page and "<script" not in page and "digraph" not in _visible_markup(page)


def test_a_long_graph_s_png_stays_within_what_a_bitmap_can_hold(tmp_path, without_dot):
    x = cr.tensor(0.5, dtype=cr.float64, requires_grad=True, name="x")
    h = x
    for _ in range(150):
        h = cr.tanh(h)
    png = explain.graph(h, highlight=x, group=False).save(tmp_path / "g.png")
    width, height = PIL.Image.open(png).size
    assert abs(max(width, height) - render._MAX_PIXELS) <= 1 and width > 10 * height
