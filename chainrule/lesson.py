"""The lesson's network: one input (dosage), two softplus hidden nodes, one output, fitted to three
points. With the six weights the lesson already knows, gradient descent finds the last bias b3;
`run_demo` reproduces the lesson end to end, its next chapter (the chain rule for all seven
parameters) and the slides' two-input model, with pictures and an HTML report."""

import ast
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np

import chainrule as cr
from chainrule import data, explain, optim, train
from chainrule.datasets import DOSAGE, EFFICACY
from chainrule.explain import Trace, expr
from chainrule.explain.trace import plot_fit

KNOWN = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30}
PARAMETERS = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")

# The numbers the lesson quotes (seeds/README.md), printed beside ours.
QUOTED_SSR = {0: 20.4, 1: 7.8, 2: 1.11, 3: 0.46}
QUOTED_STEPS = (
    "first slope -15.7, step size -1.57, b3 -> 1.57 (slope there -6.26) -> 2.19 -> ... -> 2.61"
)


class Nodes(NamedTuple):
    """One forward pass through the network, holding the nodes the lesson talks about. The top
    hidden node: x1, the x-axis coordinates (w1 * dosage + b1), and y1 = softplus(x1), the
    y-axis coordinates; blue = w3 * y1 is the final blue curve. The bottom node likewise: x2,
    y2, orange = w4 * y2. predicted = blue + orange + b3, the green squiggle."""

    x1: cr.Tensor
    y1: cr.Tensor
    blue: cr.Tensor
    x2: cr.Tensor
    y2: cr.Tensor
    orange: cr.Tensor
    predicted: cr.Tensor


def network(dosage, p):
    """The forward pass, every node the lesson names named so (the scaled curves stay unnamed, so
    that explanations write predicted = y1 * w3 + y2 * w4 + b3 as the lesson's next chapter does)."""
    x1 = _named(dosage * p["w1"] + p["b1"], "x1")
    y1 = _named(cr.softplus(x1), "y1")
    x2 = _named(dosage * p["w2"] + p["b2"], "x2")
    y2 = _named(cr.softplus(x2), "y2")
    blue = y1 * p["w3"]
    orange = y2 * p["w4"]
    predicted = _named(blue + orange + p["b3"], "predicted")
    return Nodes(x1, y1, blue, x2, y2, orange, predicted)


def predict(dosage, p):
    """The green squiggle: w3 * softplus(w1 x + b1) + w4 * softplus(w2 x + b2) + b3."""
    return network(dosage, p).predicted


def _named(tensor, name):
    tensor.name = name
    return tensor


def ssr(p):
    x = cr.tensor(DOSAGE, dtype=cr.float64)
    y = cr.tensor(EFFICACY, dtype=cr.float64)
    residual = y - predict(x, p)
    return (residual**2).sum()


def named_ssr(p):
    """SSR with every tensor named as the lesson names it, for explanations and drawings: dosage
    -> x1, x2 -> y1, y2 (the hidden nodes) -> predicted -> SSR, against the observed values."""
    x = cr.tensor(DOSAGE, dtype=cr.float64, name="dosage")
    y = cr.tensor(EFFICACY, dtype=cr.float64, name="observed")
    return _named(((y - predict(x, p)) ** 2).sum(), "SSR")


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
    """The lesson's network with all seven parameters trainable (each named as the lesson names
    it, so explanations of its graph need no names=)."""

    def __init__(self, start):
        super().__init__()
        for name in PARAMETERS:
            value = cr.nn.Parameter(cr.tensor(float(start[name]), dtype=cr.float64))
            value.name = name
            setattr(self, name, value)

    def parameters_by_name(self):
        return {name: getattr(self, name) for name in PARAMETERS}

    def nodes(self, dosage):
        """The forward pass with its hidden nodes (`Nodes`): the plots draw these."""
        return network(dosage, self.parameters_by_name())

    def forward(self, dosage):
        return self.nodes(dosage).predicted


def seeded_start(seed=0):
    """The seven parameters' starting values: standard normal draws, b3 = 0 (as biases often
    start)."""
    cr.manual_seed(seed)
    draws = cr.randn(len(PARAMETERS), dtype=cr.float64).tolist()
    start = dict(zip(PARAMETERS, draws, strict=True))
    start["b3"] = 0.0
    return start


def train_all_seven(seed=0, lr=0.05, loss_target=1e-6, max_steps=5000):
    """All seven parameters from `seeded_start(seed)`, Adam on SSR until SSR <= loss_target,
    i.e. the fit passes through the three points. Returns (model, start values, history,
    trace)."""

    start = seeded_start(seed)
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


# What each parameter does in the network, as the lesson describes it.
ROLES = {
    "w1": "through the top node",
    "b1": "through the top node",
    "w2": "through the bottom node",
    "b2": "through the bottom node",
    "w3": "scales the top node's curve",
    "w4": "scales the bottom node's curve",
    "b3": "shifts the green squiggle",
}


def derive_all_seven(p):
    """The lesson's next chapter: dSSR/d(each parameter) at the values of `p` (tensors that
    require grad), by the chain rule over the recorded graph. Returns `cr.explain.paths`'s
    derivations, in PARAMETERS order."""

    loss = named_ssr(p)
    return explain.paths(loss, [p[name] for name in PARAMETERS])


def chain_rule_lines(derivation):
    """One derivation the way the lesson writes it: the chain of derivatives, the formula summed
    over the data points i, each point's numbers, and the sum (the engine's gradient)."""

    if len(derivation.paths) != 1 or not derivation.paths[0].is_product:
        return str(derivation).splitlines()
    path = derivation.paths[0]
    rec = derivation.recorded
    points = len(DOSAGE)
    per_point = {v.name for v in rec.vertices if v.visible and np.size(v.value) == points}
    indexed = {name: expr.name(f"{name}_i") for name in per_point}
    factors = [_factor_text(expr.substitute(e.formula, indexed)) for e in path.edges]
    role = ROLES.get(derivation.target.name)
    name = derivation.name
    pad = " " * len(name)
    lines = [
        f"{name} = {path.chain_text(derivation.output.name)}" + (f"   ({role})" if role else "")
    ]
    lines.append(f"{pad} = Σ " + " * ".join(factors))
    terms = []
    for i in range(points):
        numbers = [_number_at(e.value, i, points) for e in path.edges]
        terms.append("".join(f"({n})" for n in numbers))
    lines.append(f"{pad} = " + " + ".join(terms))
    products = [expr.format_number(float(x)) for x in np.broadcast_to(path.product, (points,))]
    sums = products[0] + "".join(
        f" - {x[1:]}" if x.startswith("-") else f" + {x}" for x in products[1:]
    )
    lines.append(f"{pad} = {sums} = {expr.format_number(float(derivation.value))}")
    return lines


def _factor_text(tree):
    """A factor of a product, in parentheses where it is a sum or a difference."""

    text = expr.to_text(tree)
    is_sum = isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Add | ast.Sub)
    return f"({text})" if is_sum else text


def _number_at(value, i, points):

    a = np.asarray(value)
    return expr.format_number(float(a.reshape(-1)[i] if a.size == points else a.reshape(())))


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


def multiplication_examples():
    """The graphs whose multiplications the demo counts: (title, output, names) for the slides'
    model, the lesson's network and one nn.Linear layer of many neurons."""
    slides_loss, _ = slides_model()
    lesson_loss = named_ssr(known_parameters(0.0, requires_grad=PARAMETERS))
    cr.manual_seed(0)
    layer = cr.nn.Linear(64, 32)
    x, target = cr.randn(16, 64), cr.randn(16, 32)
    layer_loss = cr.nn.functional.mse_loss(layer(x), target)
    names = {p: name for name, p in layer.named_parameters()}
    return [
        ("The slides' model", slides_loss, None),
        ("The lesson's network", lesson_loss, None),
        ("nn.Linear(64, 32), a batch of 16, MSE loss", layer_loss, names),
    ]


def run_demo(out_dir="chainrule-demo", echo=print):
    """Reproduce the lesson and the slides: (a) b3 by gradient descent with every number the
    lesson quotes, (b) the lesson's next chapter, the chain rule for all seven parameters at a
    seeded random start, (c) all seven trained from there, (d) the slides' two-input model with
    its derivation and symbolic check, (e) the multiplications the backward pass saves. Writes
    pictures and report.html into `out_dir` and returns a dict of the key results."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    printed = []

    def say(line=""):
        printed.append(line)
        echo(line)

    def say_wrapped(text):
        for line in textwrap.wrap(text, 100):
            say(line)

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

    # ---- (b) the next chapter: the chain rule for all seven --------------------------------
    start = seeded_start(0)
    start_net = LessonNetwork(start)
    seven = derive_all_seven(start_net.parameters_by_name())
    say("")
    say("== (b) The next chapter: dSSR/d(each parameter) by the chain rule, all seven at once ==")
    say_wrapped(
        "At a seeded random start (seed 0): "
        + ", ".join(f"{k} = {v:.3f}" for k, v in start.items())
    )
    say_wrapped(
        "The lesson's names: x1 = w1 dosage + b1 and y1 = softplus(x1) are the top hidden "
        "node's x- and y-axis coordinates, x2 and y2 the bottom node's; predicted = w3 y1 + "
        "w4 y2 + b3. The chain rule goes from SSR back through predicted and, for w1, b1, w2 and "
        "b2, through a hidden node; SSR sums over the three data points i, and so does each "
        "derivative. The numbers are those of the seeded random start that (c) trains from."
    )
    for d in seven:
        say("")
        for line in chain_rule_lines(d):
            say(line)
    say("")
    say("sigmoid(x) = e^x / (1 + e^x) is the slope of softplus(x) = log(1 + e^x).")
    results["seven"] = {name: float(d.value) for name, d in zip(PARAMETERS, seven, strict=True)}
    results["seven_derivations"] = seven

    # ---- (c) all seven parameters trained -------------------------------------------------
    say("")
    say("== (c) All seven parameters trained from that start (Adam, learning rate 0.05) ==")
    model, start, history, trace7 = train_all_seven()
    x = cr.tensor(DOSAGE, dtype=cr.float64)
    with cr.no_grad():
        fitted = model(x).numpy()
    say("The first step's slopes are the seven derivatives of (b); the table shows w1's and b3's.")
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
    results["all_seven_trace"] = trace7
    trace7.to_csv(out / "all_seven_steps.csv")
    fig_fit7 = _plot_lesson_fit(
        model,
        grid,
        out / "fit_all_seven.png",
        "All seven parameters trained: the fit and its two hidden nodes",
    )
    fig_loss7 = trace7.plot_loss(
        path=out / "all_seven_loss.png", title="SSR against step (all seven parameters)"
    )

    # ---- (d) the slides' two-input model ----------------------------------------------------
    say("")
    say("== (d) The slides' model: yhat = b + w1 x1 + w2 x2, Loss = (yhat - y)^2 ==")
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

    # ---- (e) calculate once and use many times ----------------------------------------------
    say("")
    say("== (e) Backprop is very efficient: calculate once and use many times, counted ==")
    say_wrapped(
        "Counted from each recorded graph: a multiplication is a gradient times one local "
        "derivative (· 1 included, as the slides write it); additions are not counted."
    )
    counted = []
    for title, output, names in multiplication_examples():
        counts = explain.count_multiplications(output, names=names)
        counted.append((title, counts))
        say("")
        for line in counts.lines(title):
            say(line)
    say("")
    say_wrapped(
        "The backward pass computes each shared partial once (the slides' dLoss/dyhat serves b, "
        "w1 and w2; the lesson's dSSR/dpredicted serves all seven) and hands it on. Multiplying "
        "out every path repeats those shared steps, and forward mode repeats the whole pass for "
        "each parameter. In the layer, the backward pass is mostly one matrix product, g.T @ x "
        "for the weight: what GPUs are built for."
    )
    results["multiplications"] = dict(counted)

    report = explain.write_report(
        out / "report.html",
        title="chainrule demo: backpropagation, main ideas",
        intro=(
            "The lesson's network fitted to three points, the chain rule for all seven of its "
            "parameters, and the slides' two-input model."
        ),
        derivations=[derivation, seven, slides],
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
        multiplications=counted,
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
    """The fit and the two hidden nodes' scaled curves, all from one forward pass's nodes."""

    with cr.no_grad():
        nodes = model.nodes(cr.tensor(grid, dtype=cr.float64))
    b3 = model.b3.item()
    return plot_fit(
        DOSAGE,
        EFFICACY,
        grid,
        nodes.predicted.numpy(),
        components={
            "top node: w3 * y1, y1 = softplus(w1 dosage + b1)": nodes.blue.numpy(),
            "bottom node: w4 * y2, y2 = softplus(w2 dosage + b2)": nodes.orange.numpy(),
        },
        path=path,
        title=f"{title}\n(predicted = w3 y1 + w4 y2 + b3, b3 = {b3:.2f})",
        xlabel="dosage",
        ylabel="efficacy",
    )
