"""Gradient-descent traces: per step and per parameter the value, the slope (the gradient), the
step size and the new value, with the loss; as a terminal table, CSV, JSON and plots.

A `Trace` is a callback for `chainrule.train.fit` (its `on_step(info)`), or is fed by hand around
a manual loop with `record(...)`. The step size is the lesson's: new value = value - step size,
which for plain gradient descent is learning rate * slope.
"""

import csv
import html
import io
import json

import numpy as np

from .expr import format_number


class Trace:
    """Records gradient-descent steps. params: names to keep (default: all)."""

    def __init__(self, params=None, stop_below=None):
        self.keep = None if params is None else set(params)
        self.stop_below = stop_below
        self.steps = []  # {"step", "epoch", "loss", "lr", "params": {name: {...arrays}}}

    # ---- feeding ----------------------------------------------------------------------------
    def on_step(self, info):
        """The training loop's callback: `fit(..., callbacks=[trace])`. Returns True (stop) once
        every step size is below `stop_below`, when that is set."""
        params = {}
        for name, p in info.params.items():
            if self.keep is not None and name not in self.keep:
                continue
            slope = np.zeros_like(p.before) if p.grad is None else p.grad
            params[name] = _entry(p.before, slope, p.before - p.after, p.after)
        self.steps.append(
            {
                "step": info.step,
                "epoch": info.epoch,
                "loss": float(info.loss),
                "lr": info.lr,
                "params": params,
            }
        )
        return self._small_enough()

    def record(self, loss, params, lr, step=None, epoch=None):
        """Record one plain gradient-descent step by hand, before updating: `params` maps names
        to tensors whose `.grad` holds the slope; the step size is lr * slope and the new value
        value - step size. Returns the step sizes ({name: array}) to apply."""
        entries = {}
        for name, t in params.items():
            value = np.array(t._data, copy=True)
            if t.grad is None:
                raise ValueError(f"Trace.record: {name} has no gradient; call backward() first")
            slope = np.array(t.grad._data, copy=True)
            size = lr * slope
            entries[name] = _entry(value, slope, size, value - size)
        self.steps.append(
            {
                "step": len(self.steps) + 1 if step is None else step,
                "epoch": epoch,
                "loss": float(_number(loss)),
                "lr": lr,
                "params": entries,
            }
        )
        return {name: e["step_size"] for name, e in entries.items()}

    def _small_enough(self):
        if self.stop_below is None or not self.steps:
            return False
        return all(
            float(np.max(np.abs(e["step_size"]))) < self.stop_below
            for e in self.steps[-1]["params"].values()
        )

    # ---- reading ----------------------------------------------------------------------------
    @property
    def names(self):
        return list(self.steps[0]["params"]) if self.steps else []

    def losses(self):
        return np.array([s["loss"] for s in self.steps])

    def series(self, name, field="value"):
        """One parameter's field over the steps (value, slope, step_size, new_value)."""
        return np.array([s["params"][name][field] for s in self.steps])

    def __len__(self):
        return len(self.steps)

    def rows(self):
        """Flat rows: one per step, parameter and element."""
        for s in self.steps:
            for name, e in s["params"].items():
                for index in np.ndindex(np.shape(e["value"])):
                    yield {
                        "step": s["step"],
                        "epoch": s["epoch"],
                        "loss": s["loss"],
                        "lr": s["lr"],
                        "parameter": name,
                        "index": ",".join(str(k) for k in index),
                        "value": float(np.asarray(e["value"])[index]),
                        "slope": float(np.asarray(e["slope"])[index]),
                        "step_size": float(np.asarray(e["step_size"])[index]),
                        "new_value": float(np.asarray(e["new_value"])[index]),
                    }

    def table(self, names=None, max_rows=None, digits=4):
        """The steps as a text table. Scalars get value, slope, step size and new value
        columns; larger parameters a summary (largest |slope| and |step size|)."""
        names = self.names if names is None else list(names)
        header = ["step", "loss"]
        for name in names:
            if self._scalar(name):
                header += [name, "slope", "step size", f"new {name}"]
            else:
                header += [f"{name} max|slope|", f"{name} max|step|"]
        body = []
        steps = (
            self.steps
            if max_rows is None or len(self.steps) <= max_rows
            else (self.steps[: max_rows - 1] + [None] + self.steps[-1:])
        )
        for s in steps:
            if s is None:
                body.append(["..."] + [""] * (len(header) - 1))
                continue
            row = [str(s["step"]), format_number(s["loss"], digits + 1)]
            for name in names:
                e = s["params"][name]
                if self._scalar(name):
                    row += [
                        format_number(float(np.ravel(e[k])[0]), digits)
                        for k in ("value", "slope", "step_size", "new_value")
                    ]
                else:
                    row += [
                        format_number(float(np.max(np.abs(e["slope"]))), digits),
                        format_number(float(np.max(np.abs(e["step_size"]))), digits),
                    ]
            body.append(row)
        widths = [max(len(r[k]) for r in [header] + body) for k in range(len(header))]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        return "\n".join(lines)

    def _scalar(self, name):
        return np.size(self.steps[0]["params"][name]["value"]) == 1

    def __str__(self):
        return self.table(max_rows=40) if self.steps else "Trace (no steps)"

    def _repr_html_(self):
        return self.html_table()

    def html_table(self, names=None, max_rows=200):
        text = self.table(names, max_rows=max_rows)
        rows = [line.split("  ") for line in text.splitlines()]
        rows = [[c.strip() for c in r if c.strip() != ""] for r in rows]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
        )
        return (
            f'<table class="chainrule-trace"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )

    def to_csv(self, path=None):
        """CSV text (one row per step, parameter and element); written to `path` when given."""
        buffer = io.StringIO()
        fields = [
            "step",
            "epoch",
            "loss",
            "lr",
            "parameter",
            "index",
            "value",
            "slope",
            "step_size",
            "new_value",
        ]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow(
                {
                    k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                    for k, v in row.items()
                }
            )
        text = buffer.getvalue()
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def to_json(self, path=None):
        """JSON text: a list of steps with each parameter's arrays as nested lists."""
        data = [
            {
                "step": s["step"],
                "epoch": s["epoch"],
                "loss": s["loss"],
                "lr": s["lr"],
                "params": {
                    name: {k: np.asarray(v).tolist() for k, v in e.items()}
                    for name, e in s["params"].items()
                },
            }
            for s in self.steps
        ]
        text = json.dumps(data, indent=1)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    # ---- plots ------------------------------------------------------------------------------
    def plot_loss(self, path=None, ax=None, title="Loss against step"):
        return plot_loss(
            self.losses(), path=path, ax=ax, title=title, steps=[s["step"] for s in self.steps]
        )

    def plot_parameter(
        self,
        name,
        loss_at,
        path=None,
        ax=None,
        span=None,
        tangents=True,
        loss_label="loss",
        max_marked=12,
    ):
        """Loss against one scalar parameter: the curve `loss_at(value)` over `span` (default:
        around the visited values), each step's point, and its tangent line (slope)."""
        fig, ax = _axes(ax)
        values = self.series(name).reshape(len(self), -1)[:, 0]
        slopes = self.series(name, "slope").reshape(len(self), -1)[:, 0]
        losses = self.losses()
        lo, hi = span if span is not None else _span(values)
        grid = np.linspace(lo, hi, 200)
        ax.plot(
            grid,
            [loss_at(x) for x in grid],
            color="#d6336c",
            lw=2,
            label=f"{loss_label} against {name}",
        )
        marked = (
            range(len(values))
            if len(values) <= max_marked
            else list(range(max_marked - 1)) + [len(values) - 1]
        )
        width = (hi - lo) * 0.08
        for k in marked:
            x, y, m = values[k], losses[k], slopes[k]
            ax.plot([x], [y], "o", color="#1f77b4", ms=6, zorder=3)
            if tangents:
                ax.plot(
                    [x - width, x + width],
                    [y - m * width, y + m * width],
                    color="#2b8a3e",
                    zorder=4,
                    lw=1.6,
                )
        if len(values):
            ax.annotate(
                f"start {name}={format_number(values[0])}",
                (values[0], losses[0]),
                textcoords="offset points",
                xytext=(8, 8),
                fontsize=8,
            )
            last = self.steps[-1]["params"][name]["new_value"]
            ax.axvline(float(np.ravel(last)[0]), color="#868e96", ls=":", lw=1)
        ax.set_xlabel(name)
        ax.set_ylabel(loss_label)
        ax.set_title(f"{loss_label} against {name}: steps and tangent lines")
        ax.legend(loc="best", fontsize=8)
        return _finish(fig, path)


def _entry(value, slope, size, new):
    return {
        "value": np.array(value, copy=True),
        "slope": np.array(slope, copy=True),
        "step_size": np.array(size, copy=True),
        "new_value": np.array(new, copy=True),
    }


def _number(x):
    return x.item() if hasattr(x, "item") else x


def _span(values):
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = max(0.5, (hi - lo) * 0.35)
    return lo - pad, hi + pad


def _axes(ax):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def plot_loss(losses, path=None, ax=None, title="Loss against step", steps=None, label="loss"):
    """Loss against step (log scale when it spans more than two decades)."""
    fig, ax = _axes(ax)
    losses = np.asarray(losses, dtype=float)
    steps = np.arange(1, len(losses) + 1) if steps is None else steps
    ax.plot(
        steps,
        losses,
        color="#1f77b4",
        lw=2,
        marker="o" if len(losses) <= 40 else None,
        ms=3,
        label=label,
    )
    positive = losses[losses > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.set_title(title)
    return _finish(fig, path)


def plot_fit(
    x,
    y,
    grid,
    curve,
    components=None,
    path=None,
    ax=None,
    title="The fitted curve",
    xlabel="x",
    ylabel="y",
):
    """The data points, the fitted curve over `grid`, and optional component curves
    ({label: values over grid}) that add up to it."""
    fig, ax = _axes(ax)
    colors = ["#1c7ed6", "#f08c00", "#7048e8", "#0ca678"]
    for k, (label, values) in enumerate((components or {}).items()):
        ax.plot(grid, values, color=colors[k % len(colors)], lw=1.5, ls="--", label=label)
    ax.plot(grid, curve, color="#2b8a3e", lw=2.5, label="fitted curve")
    ax.scatter(np.ravel(x), np.ravel(y), color="black", zorder=3, s=40, label="data")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return _finish(fig, path)


def figure_png(fig, dpi=100):
    """A matplotlib figure as PNG bytes (Agg, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
