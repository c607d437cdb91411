"""The HTML report in a real browser: headless Debian chromium opens it (with no network), takes a
screenshot, and the graph and the plot must be visible there, with no errors logged by the page."""

import re
import shutil
import subprocess

import numpy as np

import chainrule as cr
from chainrule import explain

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


def _pixels(png_path):
    import matplotlib.image

    return (matplotlib.image.imread(str(png_path))[..., :3] * 255).round().astype(int)


def _near(image, rgb, tolerance=40):
    return np.all(np.abs(image - np.array(rgb)) <= tolerance, axis=-1)


def test_report_renders_in_headless_chromium_with_graph_and_plot_visible(tmp_path):
    assert CHROMIUM, (
        "chromium is needed for this test (.ci/run installs it: apt-get install chromium)"
    )
    page = _report(tmp_path / "report.html")
    shot = tmp_path / "shot.png"
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
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            "--enable-logging=stderr",
            "--v=0",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), result.stderr[-2000:]
    # Errors from the page itself: console messages, failed loads, blocked network fetches.
    page_errors = [
        line
        for line in result.stderr.splitlines()
        if re.search(r"CONSOLE|Uncaught|net::ERR_|Failed to load", line)
    ]
    assert page_errors == []
    image = _pixels(shot)
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    # The graph: the highlighted backward path is drawn in the explainer's orange (#d9480f).
    orange = _near(image, (0xD9, 0x48, 0x0F))
    assert orange.sum() > 300
    # The plot: matplotlib's loss line in blue (#1f77b4), below the graph.
    blue = _near(image, (0x1F, 0x77, 0xB4))
    assert blue.sum() > 300
    rows_orange = np.nonzero(orange.any(axis=1))[0]
    rows_blue = np.nonzero(blue.any(axis=1))[0]
    assert rows_orange.min() < rows_blue.min()
    # and the page is not blank around them: plenty of dark text and lines
    assert (image.sum(axis=-1) < 200).sum() > 2000
