"""The lesson's network: one input (dosage), two softplus hidden nodes, one output, fitted to three
points. With the six weights the lesson already knows, gradient descent finds the last bias b3;
`run_demo` reproduces the lesson end to end (and the slides' two-input model), with pictures and
an HTML report."""

from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule.datasets import DOSAGE, EFFICACY

KNOWN = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30}
PARAMETERS = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")

# The numbers the lesson quotes (seeds/README.md), printed beside ours.
QUOTED_SSR = {0: 20.4, 1: 7.8, 2: 1.11, 3: 0.46}
QUOTED_STEPS = (
    "first slope -15.7, step size -1.57, b3 -> 1.57 (slope there -6.26) -> 2.19 -> ... -> 2.61"
)


def predict(dosage, p):
    """The green squiggle: w3 * softplus(w1 x + b1) + w4 * softplus(w2 x + b2) + b3."""
    top = cr.softplus(dosage * p["w1"] + p["b1"])
    bottom = cr.softplus(dosage * p["w2"] + p["b2"])
    return top * p["w3"] + bottom * p["w4"] + p["b3"]


def ssr(p):
    x = cr.tensor(DOSAGE, dtype=cr.float64)
    y = cr.tensor(EFFICACY, dtype=cr.float64)
    residual = y - predict(x, p)
    return (residual**2).sum()


def named_ssr(p):
    """SSR with every tensor named as the lesson names it, for explanations and drawings."""
    x = cr.tensor(DOSAGE, dtype=cr.float64, name="dosage")
    y = cr.tensor(EFFICACY, dtype=cr.float64, name="observed")
    predicted = predict(x, p)
    predicted.name = "predicted"
    loss = ((y - predicted) ** 2).sum()
    loss.name = "SSR"
    return loss


def known_parameters(b3=0.0, requires_grad=("b3",)):
    """The lesson's six known weights and b3, as named float64 tensors."""
    values = dict(KNOWN, b3=b3)
    return {
        k: cr.tensor(float(v), dtype=cr.float64, requires_grad=k in requires_grad, name=k)
        for k, v in values.items()
    }


def descend_b3(learning_rate=0.1, min_step=0.001, max_steps=1000, b3=0.0):
    """Gradient descent on b3 alone, from `b3`, until the step size falls below `min_step`;
    returns the `Trace` (value, slope, step size and new value of every step)."""
    from .explain import Trace

    p = known_parameters(b3)
    trace = Trace()
    for _ in range(max_steps):
        loss = ssr(p)
        p["b3"].grad = None
        loss.backward()
        sizes = trace.record(loss, {"b3": p["b3"]}, learning_rate)
        with cr.no_grad():
            p["b3"].sub_(float(sizes["b3"]))
        if abs(float(sizes["b3"])) < min_step:
            break
    return trace


def run_b3_descent(learning_rate=0.1, min_step=0.001, max_steps=1000, out=print):
    """SSR at b3 = 0..3 and the descent table, printed; returns the final b3."""
    params = known_parameters()
    for b3 in (0, 1, 2, 3):
        params["b3"] = cr.tensor(float(b3), dtype=cr.float64)
        out(f"SSR at b3 = {b3}: {ssr(params).item():.2f}")
    trace = descend_b3(learning_rate, min_step, max_steps)
    out(trace.table())
    final = float(trace.steps[-1]["params"]["b3"]["new_value"])
    out(f"b3 = {final:.2f}")
    return final


class LessonNetwork(cr.nn.Module):
    """The lesson's network with all seven parameters trainable."""

    def __init__(self, start):
        super().__init__()
        for name in PARAMETERS:
            setattr(self, name, cr.nn.Parameter(cr.tensor(float(start[name]), dtype=cr.float64)))

    def forward(self, dosage):
        return predict(dosage, {name: getattr(self, name) for name in PARAMETERS})

    def hidden_curves(self, dosage):
        """The two hidden nodes' scaled curves (blue, orange); with b3 they add up to the fit."""
        with cr.no_grad():
            blue = cr.softplus(dosage * self.w1 + self.b1) * self.w3
            orange = cr.softplus(dosage * self.w2 + self.b2) * self.w4
        return blue.numpy(), orange.numpy()


def train_all_seven(seed=0, lr=0.05, loss_target=1e-6, max_steps=5000):
    """All seven parameters from a seeded random start (normal weights, b3 = 0), Adam on SSR
    until SSR <= loss_target, i.e. the fit passes through the three points. Returns (model,
    start values, history, trace)."""
    from . import data, optim, train
    from .explain import Trace

    cr.manual_seed(seed)
    draws = cr.randn(len(PARAMETERS), dtype=cr.float64).tolist()
    start = dict(zip(PARAMETERS, draws, strict=True))
    start["b3"] = 0.0
    model = LessonNetwork(start)
    x = cr.tensor(DOSAGE, dtype=cr.float64)
    y = cr.tensor(EFFICACY, dtype=cr.float64)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=len(DOSAGE))
    trace = Trace()
    history = train.fit(
        model,
        cr.nn.SSR(),
        optim.Adam(model.parameters(), lr=lr),
        loader,
        max_steps=max_steps,
        loss_target=loss_target,
        progress=False,
        callbacks=[trace],
    )
    return model, start, history, trace


def slides_model(b=0.1, w1=1.0, w2=0.5, x1=2.0, x2=1.0, y=3.5):
    """The slides' model on one point of `cr.datasets.slides_example` (y = 0.5 + 2 x1 - x2),
    every tensor named as the slides name it. Returns (loss, {name: tensor})."""
    t = {
        "b": cr.tensor(b, dtype=cr.float64, requires_grad=True, name="b"),
        "w1": cr.tensor(w1, dtype=cr.float64, requires_grad=True, name="w1"),
        "w2": cr.tensor(w2, dtype=cr.float64, requires_grad=True, name="w2"),
        "x1": cr.tensor(x1, dtype=cr.float64, name="x1"),
        "x2": cr.tensor(x2, dtype=cr.float64, name="x2"),
        "y": cr.tensor(y, dtype=cr.float64, name="y"),
    }
    a1 = t["w1"] * t["x1"]
    a1.name = "a1"
    a2 = t["w2"] * t["x2"]
    a2.name = "a2"
    yhat = t["b"] + a1 + a2
    yhat.name = "yhat"
    loss = (yhat - t["y"]) ** 2
    loss.name = "Loss"
    t.update(a1=a1, a2=a2, yhat=yhat)
    return loss, t


OLD_FASHIONED = {
    "b": "2*(b + w1*x1 + w2*x2 - y)",
    "w1": "2*(b + w1*x1 + w2*x2 - y)*x1",
    "w2": "2*(b + w1*x1 + w2*x2 - y)*x2",
}


def run_demo(out_dir="chainrule-demo", echo=print):
    """Reproduce the lesson and the slides: (a) b3 by gradient descent with every number the
    lesson quotes, (b) all seven parameters trained from a seeded random start, (c) the slides'
    two-input model with its derivation and symbolic check. Writes pictures and report.html into
    `out_dir` and returns a dict of the key results."""
    from . import explain

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    printed = []

    def say(line=""):
        printed.append(line)
        echo(line)

    results = {}
    # ---- (a) the lesson: b3 with six known weights --------------------------------------------
    say("== (a) The lesson: the last bias b3, with the six other weights known ==")
    say("   " + ", ".join(f"{k} = {v}" for k, v in KNOWN.items()))
    ssr_at = {}
    for b3 in (0, 1, 2, 3):
        ssr_at[b3] = ssr(known_parameters(float(b3), requires_grad=())).item()
        say(f"SSR at b3 = {b3}: {ssr_at[b3]:.2f}   (the lesson: {QUOTED_SSR[b3]})")
    results["ssr_at"] = ssr_at

    # Every weight requires grad here so that the drawing shows the whole network.
    p = known_parameters(0.0, requires_grad=PARAMETERS)
    loss = named_ssr(p)
    derivation = explain.paths(loss, p["b3"])
    say("The chain rule for dSSR/db3 at b3 = 0:")
    say(str(derivation))
    results["first_slope"] = float(derivation.value)

    trace = descend_b3()
    steps = trace.steps
    b3_path = [0.0] + [float(s["params"]["b3"]["new_value"]) for s in steps]
    first = steps[0]["params"]["b3"]
    second = steps[1]["params"]["b3"]
    say("Gradient descent on b3 from 0, learning rate 0.1, until |step size| < 0.001:")
    say(trace.table())
    say(
        f"First slope {float(first['slope']):.1f}, step size {float(first['step_size']):.2f}, "
        f"new b3 {float(first['new_value']):.2f}; slope at b3 = {float(second['value']):.2f} is "
        f"{float(second['slope']):.2f}, new b3 {float(second['new_value']):.2f}; final b3 "
        f"{b3_path[-1]:.2f} after {len(steps)} steps"
    )
    say(f"   (the lesson: {QUOTED_STEPS})")
    results.update(b3_trace=trace, b3_final=b3_path[-1])
    trace.to_csv(out / "b3_steps.csv")
    trace.to_json(out / "b3_steps.json")

    def ssr_of_b3(value):
        return ssr(known_parameters(float(value), requires_grad=())).item()

    fig_b3 = trace.plot_parameter(
        "b3", ssr_of_b3, span=(-0.5, 4.0), loss_label="SSR", path=out / "ssr_vs_b3.png"
    )
    fig_b3_loss = trace.plot_loss(path=out / "b3_loss.png", title="SSR against step (b3 only)")
    grid = np.linspace(0.0, 1.0, 101)
    lesson_net = LessonNetwork(dict(KNOWN, b3=b3_path[-1]))
    fig_fit_b3 = _plot_lesson_fit(
        lesson_net, grid, out / "fit_b3.png", "The lesson's fit with b3 found by gradient descent"
    )
    drawing = explain.graph(loss, highlight=p["b3"])
    # Drawn by Graphviz's dot where it is installed, by the built-in layered layout otherwise.
    graph_paths = [drawing.save(out / "lesson_graph.svg"), drawing.save(out / "lesson_graph.png")]

    # ---- (b) all seven parameters ---------------------------------------------------------
    say("")
    say(
        "== (b) All seven parameters, trained from a seeded random start (seed 0, Adam, lr 0.05) =="
    )
    model, start, history, trace7 = train_all_seven()
    x = cr.tensor(DOSAGE, dtype=cr.float64)
    with cr.no_grad():
        fitted = model(x).numpy()
    say("start: " + ", ".join(f"{k} = {v:.3f}" for k, v in start.items()))
    say(
        f"stopped after {history.steps} steps ({history.stop_reason}); SSR "
        f"{history.step_loss[-1]:.2e}"
    )
    say("found: " + ", ".join(f"{k} = {getattr(model, k).item():.3f}" for k in PARAMETERS))
    say(
        "fit at dosage 0, 0.5, 1: "
        + ", ".join(f"{v:.4f}" for v in fitted)
        + "   (the data: 0, 1, 0)"
    )
    say(trace7.table(names=["w1", "b3"], max_rows=8))
    results.update(all_seven=model, all_seven_fit=fitted, all_seven_history=history)
    trace7.to_csv(out / "all_seven_steps.csv")
    fig_fit7 = _plot_lesson_fit(
        model,
        grid,
        out / "fit_all_seven.png",
        "All seven parameters trained: the fit and its two hidden curves",
    )
    fig_loss7 = trace7.plot_loss(
        path=out / "all_seven_loss.png", title="SSR against step (all seven parameters)"
    )

    # ---- (c) the slides' two-input model ----------------------------------------------------
    say("")
    say("== (c) The slides' model: yhat = b + w1 x1 + w2 x2, Loss = (yhat - y)^2 ==")
    slides_loss, t = slides_model()
    say("at b = 0.1, w1 = 1, w2 = 0.5 and the point x1 = 2, x2 = 1, y = 3.5:")
    slides = explain.paths(slides_loss, [t["b"], t["w1"], t["w2"]])
    say(str(slides))
    sym = explain.symbolic(slides_loss, [t["b"], t["w1"], t["w2"]])
    say("Symbolically (SymPy), from the same graph and op formulas:")
    say(str(sym))
    checks = {name: sym.equals(name, text) for name, text in OLD_FASHIONED.items()}
    for name, text in OLD_FASHIONED.items():
        verdict = "equal" if checks[name] else "NOT equal"
        say(f"dLoss/d{name} vs the old-fashioned {text.replace('*', ' ')}: {verdict}")
    results.update(slides=slides, symbolic=sym, symbolic_checks=checks)
    slides_graph = explain.graph(slides_loss, highlight=t["w1"])
    graph_paths += [
        slides_graph.save(out / "slides_graph.svg"),
        slides_graph.save(out / "slides_graph.png"),
    ]

    report = explain.write_report(
        out / "report.html",
        title="chainrule demo: backpropagation, main ideas",
        intro="The lesson's network fitted to three points, and the slides' two-input model.",
        derivations=[derivation, slides],
        symbolic=sym,
        graph=[drawing, slides_graph],
        steps=explain.steps(slides_loss),
        trace=trace,
        figures=[
            ("SSR against b3", fig_b3),
            ("SSR against step", fig_b3_loss),
            ("fit with b3", fig_fit_b3),
            ("all seven: fit", fig_fit7),
            ("all seven: SSR against step", fig_loss7),
        ],
        text=[("The demo's printout", "\n".join(printed))],
    )
    say("")
    say(f"Wrote pictures and the report to {out.resolve()}:")
    for name in (
        *graph_paths,
        "ssr_vs_b3.png",
        "b3_loss.png",
        "fit_b3.png",
        "fit_all_seven.png",
        "all_seven_loss.png",
        "b3_steps.csv",
        "b3_steps.json",
        "all_seven_steps.csv",
        report,
    ):
        say(f"  {Path(name).name}")
    results["report"] = report
    results["out_dir"] = out
    return results


def _plot_lesson_fit(model, grid, path, title):
    from .explain.trace import plot_fit

    g = cr.tensor(grid, dtype=cr.float64)
    with cr.no_grad():
        curve = model(g).numpy()
    blue, orange = model.hidden_curves(g)
    b3 = model.b3.item()
    return plot_fit(
        DOSAGE,
        EFFICACY,
        grid,
        curve,
        components={
            "top node: w3 * softplus(w1 x + b1)": blue,
            "bottom node: w4 * softplus(w2 x + b2)": orange,
        },
        path=path,
        title=f"{title}\n(fitted curve = top + bottom + b3, b3 = {b3:.2f})",
        xlabel="dosage",
        ylabel="efficacy",
    )
