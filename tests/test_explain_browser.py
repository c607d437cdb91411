"""The HTML report in a real browser: headless Debian chromium opens it (with no network), on a
machine with Graphviz's `dot` (the graph is inline SVG) and on one without (Graphviz compiled to
WebAssembly draws it in the page). Either way the graph must be drawn, with its node names as text,
no DOT source must be shown, the plot must be visible, and the page must log no errors."""

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

import chainrule as cr
from chainrule import explain

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE_NAMES = {"w", "x", "mul1", "sub1", "loss"}


@pytest.fixture(params=["with dot", "without dot"])
def graphviz(request):
    """Each test runs twice: with Graphviz's `dot` on PATH and with it hidden."""
    if request.param == "without dot":
        request.getfixturevalue("without_dot")
    else:
        assert shutil.which("dot"), (
            "Graphviz's dot is needed for this test: scripts/system-deps installs it "
            "(apt-get install graphviz)"
        )
    return request.param


def _report(path):
    w = cr.tensor(3.0, dtype=cr.float64, requires_grad=True, name="w")
    x = cr.tensor(2.0, dtype=cr.float64, name="x")
    trace = explain.Trace()
    for _ in range(6):
        loss = (w * x - 1.0) ** 2
        loss.name = "loss"
        w.grad = None
        loss.backward(retain_graph=True)
        with cr.no_grad():
            w.sub_(float(trace.record(loss, {"w": w}, lr=0.05)["w"]))
    loss = (w * x - 1.0) ** 2
    loss.name = "loss"
    fig = trace.plot_loss()
    return explain.write_report(
        path, title="browser check", graph=explain.graph(loss, highlight=w), figures=[("loss", fig)]
    )


def _chromium(page, tmp_path, *options):
    """Open `page` in headless chromium, give its scripts time to run, and return (stdout, the
    page's own errors: console messages, uncaught exceptions, failed or blocked loads)."""
    assert CHROMIUM, (
        "chromium is needed for this test: scripts/system-deps installs it "
        "(apt-get install chromium)"
    )
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            # Virtual time runs until the page is idle (the WebAssembly layout has finished).
            "--virtual-time-budget=20000",
            "--enable-logging=stderr",
            "--v=0",
            *options,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    page_errors = [
        line
        for line in result.stderr.splitlines()
        if re.search(r"CONSOLE|Uncaught|net::ERR_|Failed to load", line)
    ]
    return result, page_errors


class _GraphReader(HTMLParser):
    """From a DOM dump: the texts inside each <svg> of a `div.graph`, and the page's visible text
    (everything outside <script>, <style> and <svg>)."""

    def __init__(self):
        super().__init__()
        self.stack, self.graph_depth, self.svg_texts, self.visible = [], None, [], []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        if tag == "div" and "graph" in (dict(attrs).get("class") or "").split():
            self.graph_depth = len(self.stack)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop() == tag:
                break
        if self.graph_depth is not None and len(self.stack) < self.graph_depth:
            self.graph_depth = None

    def handle_data(self, data):
        inside = set(self.stack)
        if self.graph_depth is not None and "svg" in inside and "text" in inside:
            self.svg_texts.append(data.strip())
        elif not inside & {"script", "style", "svg"}:
            self.visible.append(data)


def test_report_shows_the_drawn_graph_and_no_dot_text_after_its_scripts_run(graphviz, tmp_path):
    page = _report(tmp_path / "report.html")
    result, page_errors = _chromium(page, tmp_path, "--dump-dom")
    assert page_errors == [], graphviz
    reader = _GraphReader()
    reader.feed(result.stdout)
    assert NODE_NAMES <= set(reader.svg_texts), (graphviz, reader.svg_texts, result.stderr[-2000:])
    visible = "".join(reader.visible)
    assert "digraph" not in visible and "->" not in visible and "rankdir" not in visible
    assert "could not be drawn" not in visible and "Drawing the graph" not in visible


def _pixels(png_path):
    import matplotlib.image

    return (matplotlib.image.imread(str(png_path))[..., :3] * 255).round().astype(int)


def _near(image, rgb, tolerance=40):
    return np.all(np.abs(image - np.array(rgb)) <= tolerance, axis=-1)


def test_report_renders_in_headless_chromium_with_graph_and_plot_visible(graphviz, tmp_path):
    page = _report(tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    result, page_errors = _chromium(
        page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600"
    )
    assert shot.exists(), result.stderr[-2000:]
    assert page_errors == [], graphviz
    image = _pixels(shot)
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    # The graph: the highlighted backward path is drawn in the explainer's orange (#d9480f).
    orange = _near(image, (0xD9, 0x48, 0x0F))
    assert orange.sum() > 300, graphviz
    # The plot: matplotlib's loss line in blue (#1f77b4), below the graph.
    blue = _near(image, (0x1F, 0x77, 0xB4))
    assert blue.sum() > 300
    rows_orange = np.nonzero(orange.any(axis=1))[0]
    rows_blue = np.nonzero(blue.any(axis=1))[0]
    assert rows_orange.min() < rows_blue.min()
    # and the page is not blank around them: plenty of dark text and lines
    assert (image.sum(axis=-1) < 200).sum() > 2000
