"""`chainrule.lesson.run_demo` (what `chainrule demo` runs): every number the lesson quotes, the
seven-parameter fit through the three points, the slides' symbolic check, and the files written.
Expected numbers come from the lesson text and from NumPy's own evaluation of the network."""

import numpy as np
import pytest

import chainrule as cr
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
    assert page.count('data-renderer="viz.js"') == 3 and "<pre>digraph" not in page
    assert "lesson_graph.png" in "\n".join(lines)


def test_run_b3_descent_still_prints_the_lesson(capsys):
    final = lesson.run_b3_descent()
    out = capsys.readouterr().out
    assert "SSR at b3 = 0: 20.42" in out
    assert round(final, 2) == 2.61


# ---- the network as the lesson draws it ---------------------------------------------------------


def _numpy_nodes(p, x):
    x1 = p["w1"] * x + p["b1"]
    x2 = p["w2"] * x + p["b2"]
    y1, y2 = np.logaddexp(0, x1), np.logaddexp(0, x2)
    return x1, y1, x2, y2, p["w3"] * y1 + p["w4"] * y2 + p["b3"]


def test_the_graph_shows_both_hidden_nodes_under_the_lessons_names():
    p = lesson.known_parameters(0.0, requires_grad=lesson.PARAMETERS)
    loss = lesson.named_ssr(p)
    drawing = cr.explain.graph(loss, highlight=p["w1"])
    for name in ("dosage", "x1", "y1", "x2", "y2", "predicted", "SSR", "observed"):
        assert f"<b>{name}</b>" in drawing.source, name
    assert "∂y1/∂x1 = sigmoid(x1)" in drawing.source and "∂predicted/∂y2 = w4" in drawing.source
    assert "= y1 * w3 + y2 * w4 + b3" in drawing.source
    assert "softplus(dosage" not in drawing.source  # no node folds a hidden node into its formula
    chains = {
        name: cr.explain.paths(loss, p[name]).paths[0].chain_text("SSR")
        for name in lesson.PARAMETERS
    }
    assert chains["w1"] == "dSSR/dpredicted * dpredicted/dy1 * dy1/dx1 * dx1/dw1"
    assert chains["b2"] == "dSSR/dpredicted * dpredicted/dy2 * dy2/dx2 * dx2/db2"
    assert chains["w4"] == "dSSR/dpredicted * dpredicted/dw4"


def test_the_plots_draw_the_hidden_nodes_of_one_forward_pass(tmp_path):
    model = lesson.LessonNetwork(dict(lesson.KNOWN, b3=2.61))
    grid = np.linspace(0, 1, 11)
    fig = lesson._plot_lesson_fit(model, grid, tmp_path / "fit.png", "fit")
    drawn = {line.get_label(): line.get_ydata() for line in fig.axes[0].lines}
    start = dict(lesson.KNOWN, b3=2.61)
    x1, y1, x2, y2, predicted = _numpy_nodes(start, grid)
    blue = next(v for k, v in drawn.items() if k.startswith("top node"))
    orange = next(v for k, v in drawn.items() if k.startswith("bottom node"))
    np.testing.assert_allclose(blue, start["w3"] * y1, rtol=1e-12)
    np.testing.assert_allclose(orange, start["w4"] * y2, rtol=1e-12)
    np.testing.assert_allclose(drawn["fitted curve"], predicted, rtol=1e-12)
    nodes = model.nodes(cr.tensor(grid, dtype=cr.float64))
    np.testing.assert_allclose(nodes.x1.detach().numpy(), x1, rtol=1e-12)
    np.testing.assert_allclose(nodes.x2.detach().numpy(), x2, rtol=1e-12)
    assert [nodes.x1.name, nodes.y1.name, nodes.x2.name, nodes.y2.name] == ["x1", "y1", "x2", "y2"]
    assert (tmp_path / "fit.png").stat().st_size > 1000


# ---- the next chapter: all seven derivatives ----------------------------------------------------


def _numpy_ssr_of(p):
    *_, predicted = _numpy_nodes(p, np.array(lesson.DOSAGE))
    return float(np.sum((np.array(lesson.EFFICACY) - predicted) ** 2))


def test_demo_derives_all_seven_as_a_real_backward_and_finite_differences_do(demo):
    results, _, _ = demo
    start = lesson.seeded_start(0)
    model = lesson.LessonNetwork(start)
    lesson.named_ssr(model.parameters_by_name()).backward()
    h = 1e-6
    for name in lesson.PARAMETERS:
        derived = results["seven"][name]
        assert derived == pytest.approx(getattr(model, name).grad.item(), rel=1e-12, abs=1e-15)
        up, down = dict(start), dict(start)
        up[name] += h
        down[name] -= h
        slope = (_numpy_ssr_of(up) - _numpy_ssr_of(down)) / (2 * h)
        assert derived == pytest.approx(slope, rel=1e-6, abs=1e-8), name


def test_the_seven_derivatives_are_the_first_training_steps_slopes(demo):
    results, _, _ = demo
    first = results["all_seven_trace"].steps[0]["params"]
    for name in lesson.PARAMETERS:
        assert float(first[name]["slope"]) == pytest.approx(results["seven"][name], rel=1e-12)


def test_demo_writes_each_derivative_in_the_lessons_notation_point_by_point(demo):
    results, text, _ = demo
    assert (
        "dSSR/dw1 = dSSR/dpredicted * dpredicted/dy1 * dy1/dx1 * dx1/dw1   (through the top node)"
        in text
    )
    assert "         = Σ -2(observed_i - predicted_i) * w3 * sigmoid(x1_i) * dosage_i" in text
    assert "         = Σ -2(observed_i - predicted_i) * y2_i" in text  # dSSR/dw4
    assert "         = Σ -2(observed_i - predicted_i) * 1" in text  # dSSR/db3
    # each data point's product, as the lesson multiplies it out
    start = lesson.seeded_start(0)
    x = np.array(lesson.DOSAGE)
    x1, y1, _, _, predicted = _numpy_nodes(start, x)
    residual = -2 * (np.array(lesson.EFFICACY) - predicted)
    expected = residual * start["w3"] * (1 / (1 + np.exp(-x1))) * x
    derivation = dict(zip(lesson.PARAMETERS, results["seven_derivations"], strict=True))["w1"]
    np.testing.assert_allclose(derivation.paths[0].product, expected, rtol=1e-12)
    line = next(ln for ln in lesson.chain_rule_lines(derivation) if ln.lstrip().startswith("= ("))
    assert line.count(")(") == 9 and line.count(" + ") == 2  # 3 points, 4 factors each


# ---- calculate once and use many times ----------------------------------------------------------


def test_demo_counts_the_multiplications_backprop_saves(demo):
    results, text, out = demo
    counts = results["multiplications"]
    slides = counts["The slides' model"]
    assert (slides.backward, slides.paths, slides.forward) == (8, 13, 13)
    layer = counts["nn.Linear(64, 32), a batch of 16, MSE loss"]
    assert layer.parameters == 64 * 32 + 32
    for c in counts.values():
        assert c.backward < c.paths <= c.forward
    assert "The lesson's network: the gradient of SSR, 7 numbers" in text
    assert "(weight: 2,048, bias: 32)" in text
    page = (out / "report.html").read_text()
    assert page.count('<table class="chainrule-counts">') == 3
