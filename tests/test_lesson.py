"""`chainrule.lesson.run_demo` (what `chainrule demo` runs): every number the lesson quotes, the
seven-parameter fit through the three points, the slides' symbolic check, and the files written.
Expected numbers come from the lesson text and from NumPy's own evaluation of the network."""

import numpy as np
import pytest

from chainrule import lesson


def _numpy_ssr(b3):
    k = lesson.KNOWN
    x, y = np.array(lesson.DOSAGE), np.array(lesson.EFFICACY)
    pred = (
        k["w3"] * np.logaddexp(0, k["w1"] * x + k["b1"])
        + k["w4"] * np.logaddexp(0, k["w2"] * x + k["b2"])
        + b3
    )
    return float(np.sum((y - pred) ** 2)), float(np.sum(-2 * (y - pred)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    results = lesson.run_demo(out_dir=out, echo=lines.append)
    return results, "\n".join(lines), out


def test_demo_quotes_the_lessons_ssr_values(demo):
    results, text, _ = demo
    for b3, quoted in lesson.QUOTED_SSR.items():
        assert results["ssr_at"][b3] == pytest.approx(_numpy_ssr(b3)[0], rel=1e-12)
        assert round(results["ssr_at"][b3], 2) == pytest.approx(quoted, abs=0.05)
        assert f"SSR at b3 = {b3}: {results['ssr_at'][b3]:.2f}" in text


def test_demo_derives_dssr_db3_by_the_chain_rule(demo):
    results, text, _ = demo
    assert results["first_slope"] == pytest.approx(_numpy_ssr(0.0)[1], rel=1e-12)
    assert round(results["first_slope"], 1) == -15.7
    assert "dSSR/db3 = dSSR/dpredicted * dpredicted/db3 = Σ -2(observed - predicted) * 1" in text


def test_demo_descends_b3_like_the_lesson(demo):
    results, text, _ = demo
    trace = results["b3_trace"]
    values = [float(v) for v in trace.series("b3")]
    slopes = [float(v) for v in trace.series("b3", "slope")]
    sizes = [float(v) for v in trace.series("b3", "step_size")]
    # replay the rule with NumPy's slope: b3 <- b3 - 0.1 * slope until |step| < 0.001
    b3 = 0.0
    for value, slope, size in zip(values, slopes, sizes, strict=True):
        assert value == pytest.approx(b3, abs=1e-12)
        assert slope == pytest.approx(_numpy_ssr(b3)[1], rel=1e-10)
        assert size == pytest.approx(0.1 * slope, rel=1e-12)
        b3 -= size
    assert abs(sizes[-1]) < 0.001 <= abs(sizes[-2])
    # the lesson's quoted numbers
    assert round(slopes[0], 1) == -15.7 and round(sizes[0], 2) == -1.57
    assert round(values[1], 2) == 1.57 and round(slopes[1], 2) == -6.26
    assert round(values[2], 2) == 2.19
    assert round(results["b3_final"], 2) == 2.61
    assert "final b3 2.61" in text


def test_demo_trains_all_seven_parameters_through_the_three_points(demo):
    results, text, _ = demo
    np.testing.assert_allclose(results["all_seven_fit"], lesson.EFFICACY, atol=0.01)
    assert results["all_seven_history"].stop_reason == "loss_target"
    assert "fit at dosage 0, 0.5, 1:" in text


def test_demo_checks_the_slides_model_symbolically(demo):
    results, text, _ = demo
    assert results["symbolic_checks"] == {"b": True, "w1": True, "w2": True}
    # b = 0.1, w1 = 1, w2 = 0.5 at x1 = 2, x2 = 1, y = 3.5: yhat - y = -0.9
    slides = results["slides"]
    assert [float(d.value) for d in slides] == pytest.approx([-1.8, -3.6, -1.8])
    assert "dLoss/dw1 = dLoss/dyhat * dyhat/da1 * da1/dw1 = 2(yhat - y) * 1 * x1" in text


def test_demo_writes_its_pictures_and_report_and_says_where(demo):
    results, text, out = demo
    for name in (
        "lesson_graph.svg",
        "slides_graph.svg",
        "ssr_vs_b3.png",
        "fit_b3.png",
        "fit_all_seven.png",
        "all_seven_loss.png",
        "b3_steps.csv",
        "b3_steps.json",
        "report.html",
    ):
        assert (out / name).stat().st_size > 100, name
    assert str(out.resolve()) in text
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "<svg" in page
    assert page.count('<div class="cr-steps"') == 1  # the slides' backward pass, step by step


def test_demo_without_dot_draws_its_graphs_as_pictures_and_in_the_report(tmp_path, without_dot):
    lines = []
    lesson.run_demo(out_dir=tmp_path, echo=lines.append)
    for name in ("lesson_graph", "slides_graph"):
        svg = (tmp_path / f"{name}.svg").read_text()
        assert "<svg" in svg and "digraph" not in svg, name
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert not (tmp_path / f"{name}.dot").exists()
    assert ">SSR<" in (tmp_path / "lesson_graph.svg").read_text()
    page = (tmp_path / "report.html").read_text()
    assert page.count('data-renderer="viz.js"') == 2 and "<pre>digraph" not in page
    assert "lesson_graph.png" in "\n".join(lines)


def test_run_b3_descent_still_prints_the_lesson(capsys):
    final = lesson.run_b3_descent()
    out = capsys.readouterr().out
    assert "SSR at b3 = 0: 20.42" in out
    assert round(final, 2) == 2.61
