"""The `chainrule` command line: fit a network to a CSV table, predict with it, explain it, and
replay the lesson.

Every problem a user can cause (bad arguments, a missing, empty or malformed file, a model file from
another program, an output folder that does not exist) ends in one line on stderr and exit status 2,
never a traceback; every file is written to a temporary name beside its target and renamed into
place, so an interrupted run never leaves half a file.
"""

import argparse
import json
import math
import os
import sys
import textwrap
from types import SimpleNamespace

import numpy as np

from . import __version__
from .datasets import DataError, dosage, load_csv
from .io import CheckpointError, atomic_write, read_header

EXIT_USAGE = 2

ACTIVATIONS = ("softplus", "relu", "tanh", "sigmoid")
LOSSES = ("ssr", "mse", "cross-entropy")
OPTIMIZERS = ("sgd", "adam")

# A model file is safetensors: the network's tensors, the scaling, and the loss history, with
# everything needed to rebuild and use the model in its metadata under "model" (JSON).
MODEL_FORMAT = "chainrule.model"
MODEL_FORMAT_VERSION = 1


class CLIError(Exception):
    """A problem the user can fix, reported as one line and exit status 2."""


# ---- writing files atomically -------------------------------------------------------------------


def check_output_path(path, what, inputs=()):
    """Refuse an output path whose folder does not exist, or that is one of the command's input
    files (before any work is done)."""
    for given in inputs:
        if given is not None and os.path.exists(path) and os.path.samefile(path, given):
            raise CLIError(
                f"cannot write the {what} to {path}: that is an input file, which "
                "this would overwrite"
            )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"cannot write the {what} to {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"cannot write the {what} to {path}: it is a folder; give a file name")


def write_atomic(path, write, what="output"):
    """`io.atomic_write` after the checks that give a one-line error for a bad output path."""
    check_output_path(path, what)
    atomic_write(path, write)


def _write_bytes(data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return write


# ---- the model file -----------------------------------------------------------------------------


def build_network(layers, activation):
    """Linear layers of the given sizes with `activation` between them (none after the last)."""
    from . import nn

    act = {"softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    modules = []
    for i in range(len(layers) - 1):
        modules.append(nn.Linear(layers[i], layers[i + 1]))
        if i < len(layers) - 2:
            modules.append(act[activation]())
    return nn.Sequential(*modules)


class FittedModel:
    """A network together with the scaling and names it was fitted with: what a model file holds.

    `spec` keys: task, layers, activation, loss, features, target, classes, data (where the
    training data came from), dtype. `scaling` holds x_mean, x_scale and, for regression, y_mean,
    y_scale (float64 arrays); `history` the per-epoch losses."""

    def __init__(self, network, spec, scaling, history=None):
        self.network = network
        self.spec = spec
        self.scaling = scaling
        self.history = history or {}

    @property
    def classification(self):
        return self.spec["task"] == "classification"

    def scale_inputs(self, x):
        return (np.asarray(x, dtype=np.float64) - self.scaling["x_mean"]) / self.scaling["x_scale"]

    def scale_targets(self, y):
        """Targets as the network was trained on them: class indices, or standardized values."""
        if self.classification:
            return np.asarray(y)
        return (np.asarray(y, dtype=np.float64) - self.scaling["y_mean"]) / self.scaling["y_scale"]

    def outputs(self, x):
        """The network's raw outputs (logits, or scaled regression values) for raw inputs `x`."""
        import chainrule as cr

        with cr.no_grad():
            self.network.eval()
            scaled = cr.tensor(self.scale_inputs(x), dtype=self.spec["dtype"])
            return self.network(scaled).numpy().astype(np.float64)

    def predict(self, x):
        """Regression: values in the target's units; classification: (class indices,
        probabilities)."""
        out = self.outputs(x)
        if not self.classification:
            return out[:, 0] * self.scaling["y_scale"][0] + self.scaling["y_mean"][0]
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return probabilities.argmax(axis=1), probabilities

    def to_bytes(self):
        import safetensors.numpy

        tensors = {
            f"net.{k}": np.ascontiguousarray(v.detach().numpy())
            for k, v in self.network.state_dict().items()
        }
        tensors.update({f"scaling.{k}": np.ascontiguousarray(v) for k, v in self.scaling.items()})
        tensors.update(
            {f"history.{k}": np.asarray(v, dtype=np.float64) for k, v in self.history.items()}
        )
        metadata = {
            "format": MODEL_FORMAT,
            "format_version": str(MODEL_FORMAT_VERSION),
            "chainrule_version": __version__,
            "model": json.dumps(self.spec),
        }
        return safetensors.numpy.save(tensors, metadata=metadata)

    def save(self, path):
        write_atomic(path, _write_bytes(self.to_bytes()), "model")


def _model_error(path, why):
    return CLIError(f"{path} is not a chainrule model file: {why}")


def _read_header(path, blob):
    try:
        return read_header(blob, path)
    except CheckpointError as e:
        raise CLIError(f"{path} is not a chainrule model file: {e.reason}") from None


def _check_spec(path, spec, layers, task, features, classes, scaling):
    """Refuse metadata that does not describe a network we can rebuild and use, before use."""
    problems = []
    if task not in ("regression", "classification"):
        problems.append(f"unknown task {task!r}")
    if spec["activation"] not in ACTIVATIONS:
        problems.append(f"unknown activation {spec['activation']!r}")
    if spec["loss"] not in LOSSES:
        problems.append(f"unknown loss {spec['loss']!r}")
    if spec["dtype"] not in ("float32", "float64"):
        problems.append(f"unknown dtype {spec['dtype']!r}")
    if len(layers) < 2 or min(layers) < 1:
        problems.append(f"layer sizes {layers} do not describe a network")
    elif layers[0] != len(features):
        problems.append(f"{layers[0]} inputs but {len(features)} feature names")
    elif task == "classification" and (not isinstance(classes, list) or len(classes) < 2):
        problems.append("a classifier without at least two class labels")
    elif task == "classification" and layers[-1] != len(classes):
        problems.append(f"{layers[-1]} outputs for {len(classes)} classes")
    elif task == "regression" and layers[-1] != 1:
        problems.append(f"a regression with {layers[-1]} outputs")
    needed = {"x_mean": (len(features),), "x_scale": (len(features),)}
    if task == "regression":
        needed.update(y_mean=(1,), y_scale=(1,))
    for key, shape in needed.items():
        if key not in scaling:
            problems.append(f"no scaling.{key} tensor")
        elif scaling[key].shape != shape:
            problems.append(f"scaling.{key} has shape {scaling[key].shape}, expected {shape}")
    if problems:
        raise _model_error(path, "its metadata is inconsistent: " + "; ".join(problems))


def load_model(path):
    """Read and check a model file written by `chainrule fit`; every fault is a CLIError."""
    import safetensors.numpy

    import chainrule as cr

    if not os.path.exists(path):
        raise CLIError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder, not a model file")
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise CLIError(f"{path}: cannot read it ({e.strerror})") from None
    header = _read_header(path, blob)
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != MODEL_FORMAT:
        raise _model_error(
            path,
            "it is a safetensors file without chainrule's model metadata "
            "(written by another program?)",
        )
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise _model_error(path, "its format_version is not a number") from None
    if version > MODEL_FORMAT_VERSION:
        raise CLIError(
            f"{path} was written by a newer chainrule (model format {version}; this is "
            f"chainrule {__version__}, which reads format {MODEL_FORMAT_VERSION})"
        )
    try:
        tensors = safetensors.numpy.load(blob)
    except Exception as e:  # the library raises its own SafetensorError for any malformed body
        raise _model_error(path, f"its tensors cannot be read ({e})") from None
    try:
        spec = json.loads(metadata["model"])
        layers = spec["layers"] = [int(n) for n in spec["layers"]]
        task, features, classes = spec["task"], list(spec["features"]), spec.get("classes")
        for key in ("activation", "loss", "target", "dtype"):
            spec[key]  # noqa: B018 - only checks that the key is there
    except (KeyError, ValueError, TypeError) as e:
        raise _model_error(path, f"its model metadata is incomplete or malformed ({e})") from None
    scaling = {k[len("scaling.") :]: v for k, v in tensors.items() if k.startswith("scaling.")}
    _check_spec(path, spec, layers, task, features, classes, scaling)
    network = build_network(layers, spec["activation"])
    state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
    expected = network.state_dict()
    for name, value in expected.items():
        if name not in state:
            raise _model_error(path, f"it lacks the tensor net.{name}")
        if state[name].shape != tuple(value.shape):
            raise _model_error(
                path,
                f"net.{name} has shape {state[name].shape}, but the "
                f"architecture {layers} needs {tuple(value.shape)}",
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise _model_error(
            path,
            f"it has tensors the architecture {layers} does not use: "
            + ", ".join(f"net.{k}" for k in extra),
        )
    network.load_state_dict({k: cr.tensor(v) for k, v in state.items()})
    history = {k[len("history.") :]: v for k, v in tensors.items() if k.startswith("history.")}
    return FittedModel(network, spec, scaling, history)


# ---- fit ----------------------------------------------------------------------------------------


def _hidden(text):
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of layer sizes (write e.g. 2 or 64,32)"
        ) from None
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one layer size (e.g. 2 or 64,32)")
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be at least 1, got {text!r}")
    return sizes


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _row_number(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a row number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"rows are numbered from 1, got {value}")
    return value - 1


def _resolve_task(args):
    """Regression or classification: --task, else what --loss implies, else the target's type."""
    from_loss = {"ssr": "regression", "mse": "regression", "cross-entropy": "classification"}
    task = args.task or (from_loss[args.loss] if args.loss else None)
    if args.task and args.loss and from_loss[args.loss] != args.task:
        raise CLIError(
            f"--loss {args.loss} is for {from_loss[args.loss]}, but --task is {args.task}"
        )
    return task


def _load_training_table(args):
    if args.data is None:
        return dosage(dtype=np.float64), "regression"
    task = _resolve_task(args)
    features = None
    if args.features is not None:
        features = [f.strip() for f in args.features.split(",") if f.strip()]
    table = load_csv(
        args.data,
        args.target,
        features=features,
        drop_missing=args.drop_missing,
        dtype=np.float64,
        task=task,
    )
    return table, table.task


def _split(n, fraction, seed):
    """Shuffled train and held-out row indices; with a fraction > 0 at least one row is held out
    and at least one kept for training."""
    order = np.random.default_rng(seed).permutation(n)
    held = 0 if fraction == 0 else min(max(1, round(n * fraction)), n - 1)
    return np.sort(order[held:]), np.sort(order[:held])


def _standardize(columns):
    mean = columns.mean(axis=0)
    scale = columns.std(axis=0)
    # A constant column carries no information; dividing by 1 keeps it finite.
    scale[scale == 0] = 1.0
    return mean, scale


def _metrics(model, x, y):
    if model.classification:
        predicted, _ = model.predict(x)
        return {"accuracy": float((predicted == y).mean())}
    predicted = model.predict(x)
    residual = y - predicted
    mse = float((residual**2).mean())
    total = float(((y - y.mean()) ** 2).sum())
    metrics = {"mse": mse}
    if total > 0:
        metrics["r2"] = 1.0 - float((residual**2).sum()) / total
    return metrics


def _plot_path(model_path):
    stem, _ = os.path.splitext(model_path)
    return stem + ".loss.png"


def _save_loss_plot(history, path, title, ylabel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_loss", "training"), ("val_loss", "held-out")):
        values = history.get(key)
        if values is not None and len(values):
            ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if min((min(v) for v in history.values() if len(v)), default=1.0) > 0:
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100), "loss plot")
    finally:
        plt.close(fig)


def cmd_fit(args, echo):
    import chainrule as cr

    if args.data is not None and args.target is None:
        raise CLIError("fitting a CSV file needs --target COLUMN (the column to predict)")
    if args.data is None and (args.target or args.features):
        raise CLIError("--target and --features need a DATA.csv file")
    if args.data is None and args.task == "classification":
        raise CLIError("the lesson's dosage data is a regression; give a DATA.csv file to classify")
    check_output_path(args.out, "model", [args.data])
    check_output_path(_plot_path(args.out), "loss plot", [args.data])

    table, task = _load_training_table(args)
    lesson = args.data is None
    loss_name = args.loss or (
        "ssr" if lesson else "cross-entropy" if task == "classification" else "mse"
    )
    if (loss_name == "cross-entropy") != (task == "classification"):
        raise CLIError(
            f"--loss {loss_name} does not fit a {task} target "
            f"(use {'--loss cross-entropy' if task == 'classification' else '--loss mse or ssr'}"
            " or --task)"
        )
    x = table.data.numpy().astype(np.float64)
    y = table.target.numpy()
    if task == "classification" and len(table.classes) < 2:
        raise CLIError(
            f"{args.data}: the target {table.target_name!r} has only one class "
            f"({table.classes[0]!r}); a classifier needs at least two"
        )
    val_fraction = args.val_fraction if args.val_fraction is not None else (0.0 if lesson else 0.2)
    if len(y) < 2 and val_fraction > 0:
        val_fraction = 0.0
    train_rows, val_rows = _split(len(y), val_fraction, args.seed)

    hidden = args.hidden or ([2] if lesson else [16])
    classes = table.classes
    outputs = len(classes) if task == "classification" else 1
    x_mean, x_scale = _standardize(x[train_rows])
    scaling = {"x_mean": x_mean, "x_scale": x_scale}
    if task == "regression":
        y_mean, y_scale = _standardize(y[train_rows].reshape(-1, 1).astype(np.float64))
        scaling.update(y_mean=y_mean, y_scale=y_scale)
    spec = {
        "task": task,
        "layers": [x.shape[1], *hidden, outputs],
        "activation": args.activation or ("softplus" if lesson else "relu"),
        "loss": loss_name,
        "features": table.feature_names,
        "target": table.target_name,
        "classes": classes,
        "data": "dosage" if lesson else os.path.basename(args.data),
        "dtype": "float32",
    }
    cr.manual_seed(args.seed)
    model = FittedModel(build_network(spec["layers"], spec["activation"]), spec, scaling)

    history = _train(model, x, y, train_rows, val_rows, args, lesson)
    model.history = history
    losses = history["train_loss"]
    diverged = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if diverged is not None:
        raise CLIError(
            f"training diverged: the loss became {losses[diverged]} in epoch {diverged + 1}; "
            "nothing was written; try a smaller --lr"
        )

    shown_rows = val_rows if len(val_rows) else train_rows
    metrics = _metrics(model, x[shown_rows], y[shown_rows])
    model.save(args.out)
    plot = _plot_path(args.out)
    names = table.feature_names
    inputs = ", ".join(names) if len(names) <= 3 else f"{len(names)} features"
    scale = " (standardized target)" if task == "regression" else ""
    _save_loss_plot(history, plot, f"{table.target_name} from {inputs}", f"{loss_name} loss{scale}")
    where = (
        f"{len(val_rows)} held-out rows"
        if len(val_rows)
        else (f"the {len(train_rows)} training rows (nothing held out)")
    )
    shown = ", ".join(f"{k.upper() if k != 'accuracy' else k} {v:.4g}" for k, v in metrics.items())
    echo(
        f"{task} on {spec['data']}: {len(train_rows)} training rows; "
        f"layers {'-'.join(map(str, spec['layers']))}, {spec['activation']}, {spec['loss']}"
    )
    if table.dropped_rows:
        echo(f"dropped {len(table.dropped_rows)} rows with missing or non-numeric values")
    echo(f"metrics on {where}: {shown}")
    echo(f"model written to {args.out}")
    echo(f"loss plot written to {plot}")
    return 0


def _train(model, x, y, train_rows, val_rows, args, lesson):
    """Fit the network with the toolkit's loop (`cr.train.fit`), the held-out loss recorded after
    each epoch; returns {'train_loss': [...], 'val_loss': [...]} per epoch."""
    import chainrule as cr

    from . import data, optim, train

    def tensors(rows):
        inputs = cr.tensor(model.scale_inputs(x[rows]), dtype=model.spec["dtype"])
        if model.classification:
            return inputs, cr.tensor(y[rows].astype(np.int64))
        targets = model.scale_targets(y[rows]).reshape(-1, 1)
        return inputs, cr.tensor(targets, dtype=model.spec["dtype"])

    network = model.network
    loss_fn = _loss_module(model.spec["loss"])
    lr = args.lr or (0.1 if lesson else 0.003)
    optimizer = (optim.Adam if args.optimizer == "adam" else optim.SGD)(network.parameters(), lr=lr)
    loader = data.DataLoader(
        data.TensorDataset(*tensors(train_rows)),
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
    )
    epochs = args.epochs or (None if args.max_steps else (1000 if lesson else 200))
    val_loss = []

    class Watch:
        """Records the held-out loss after each epoch, and stops at a non-finite loss: nothing
        after it can recover, and the caller reports the divergence."""

        def on_epoch(self, info):
            if len(val_rows):
                val_loss.append(train.evaluate(network, held_out, loss_fn)["loss"])
            return not math.isfinite(info.loss)

    if len(val_rows):
        held_out = data.DataLoader(data.TensorDataset(*tensors(val_rows)), batch_size=1024)
    # Overflow warnings from NumPy would spill over the one-line report of a divergence.
    with np.errstate(all="ignore"):
        history = train.fit(
            network,
            loss_fn,
            optimizer,
            loader,
            epochs=epochs,
            max_steps=args.max_steps,
            progress=False if args.no_progress else None,
            callbacks=[Watch()],
        )
    network.eval()
    losses = {"train_loss": history.epoch_loss}
    if val_loss:
        losses["val_loss"] = val_loss
    return losses


# ---- predict and explain ------------------------------------------------------------------------


def _read_features(model, path, drop_missing):
    return load_csv(
        path,
        None,
        features=model.spec["features"],
        drop_missing=drop_missing,
        dtype=np.float64,
        task="regression",
    )


def cmd_predict(args, echo):
    model = load_model(args.model)
    if args.out:
        check_output_path(args.out, "predictions", [args.model, args.data])
    table = _read_features(model, args.data, args.drop_missing)
    x = table.data.numpy()
    target = model.spec["target"]
    header = list(model.spec["features"]) + [target]
    if model.classification:
        indices, probabilities = model.predict(x)
        classes = model.spec["classes"]
        header += [f"p({c})" for c in classes]
        rows = [
            [*map(_number, xr), classes[i], *(f"{p:.6g}" for p in pr)]
            for xr, i, pr in zip(x, indices, probabilities, strict=True)
        ]
    else:
        rows = [[*map(_number, xr), f"{v:.8g}"] for xr, v in zip(x, model.predict(x), strict=True)]
    text = _csv_text(header, rows)
    if args.out:
        write_atomic(args.out, _write_bytes(text.encode("utf-8")), "predictions")
        echo(f"{len(rows)} predictions of {target!r} written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _number(v):
    return f"{v:.10g}"


def _csv_text(header, rows):
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def cmd_explain(args, echo):
    import chainrule as cr

    model = load_model(args.model)
    check_output_path(args.out, "report", [args.model, args.data])
    spec = model.spec
    if args.data is not None:
        table = load_csv(
            args.data,
            spec["target"],
            features=spec["features"],
            drop_missing=args.drop_missing,
            dtype=np.float64,
            task=spec["task"],
        )
        if model.classification:
            unknown = sorted(set(table.classes) - set(spec["classes"]))
            if unknown:
                raise CLIError(
                    f"{args.data}: target classes {unknown} were not seen in training "
                    f"(the model knows {spec['classes']})"
                )
            known = {c: i for i, c in enumerate(spec["classes"])}
            y = np.array([known[table.classes[i]] for i in table.target.numpy()])
        else:
            y = table.target.numpy()
        x = table.data.numpy()
    elif spec.get("data") == "dosage":
        x, y = (t.numpy().astype(np.float64) for t in dosage(return_X_y=True))
    else:
        raise CLIError(
            f"{args.model} was fitted on {spec.get('data')}: give that (or a similar) "
            "CSV file to explain the model on"
        )
    from . import explain

    dtype = spec["dtype"]
    inputs = cr.tensor(model.scale_inputs(x), dtype=dtype)
    if model.classification:
        targets = cr.tensor(np.asarray(y, dtype=np.int64))
    else:
        targets = cr.tensor(model.scale_targets(y).reshape(-1, 1), dtype=dtype)
    loss_fn = _loss_module(spec["loss"])
    # The file keeps per-epoch losses; the report plots whatever a History-like object carries.
    history = SimpleNamespace(
        step_loss=None,
        epoch_loss=[float(v) for v in model.history.get("train_loss", ())],
        metrics={"held-out loss": [float(v) for v in model.history["val_loss"]]}
        if "val_loss" in model.history
        else {},
    )
    sample = min(args.sample, len(x) - 1)
    write_atomic(
        args.out,
        lambda tmp: explain.model_report(
            model.network,
            inputs,
            targets,
            loss_fn,
            tmp,
            history=history,
            sample=sample,
            title=f"chainrule explain: {spec['target']} from {', '.join(spec['features'])}"[:120],
        ),
        "report",
    )
    echo(f"report on row {sample + 1} of {len(x)} written to {args.out}")
    return 0


def _loss_module(name):
    from . import nn

    return {"ssr": nn.SSR, "mse": nn.MSELoss, "cross-entropy": nn.CrossEntropyLoss}[name]()


# ---- demo ---------------------------------------------------------------------------------------


def cmd_demo(args, echo):
    from .lesson import run_demo

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(
            f"cannot write the demo's pictures to {args.out}: it is a file, not a folder"
        )
    run_demo(out_dir=args.out, echo=echo)
    return 0


# ---- the parser ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (it prints the whole usage first, which for `fit`
    is ten lines) that point to --help."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; descriptions are wrapped by `_text`. Defaults are stated
    in each option's help, where they can say how the lesson's run differs."""


def _text(paragraph):
    return textwrap.fill(" ".join(paragraph.split()), width=78)


def build_parser():
    parser = _Parser(
        prog="chainrule",
        formatter_class=_Formatter,
        description=_text(
            "Backpropagation that shows its work: fit a small neural network to a CSV "
            "table, predict with it, explain it, or replay the lesson."
        ),
        epilog="examples:\n"
        "  chainrule demo\n"
        "  chainrule fit                       # the lesson's dosage data\n"
        "  chainrule fit data.csv --target y --hidden 64,32 --out model.safetensors\n"
        "  chainrule predict model.safetensors new.csv --out predictions.csv\n"
        "  chainrule explain model.safetensors data.csv --out report.html",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        formatter_class=_Formatter,
        help="fit a network to a CSV table",
        description=_text(
            "Fit a neural network to the columns of a CSV file (header line first). "
            "Regression or classification follows from the target column: text labels, "
            "or a few whole numbers, are classes. Features (and a regression target) are "
            "standardized with the training split's mean and standard deviation, which the "
            "model file keeps; predictions come back in the target's units. The held-out "
            "rows give the metrics printed at the end. Without DATA it fits the lesson's "
            "dosage data (hidden 2, softplus, SSR)."
        ),
    )
    fit.add_argument(
        "data", nargs="?", metavar="DATA.csv", help="the table (omit: the lesson's dosage data)"
    )
    fit.add_argument("--target", metavar="COL", help="the column to predict")
    fit.add_argument("--features", metavar="COL,COL", help="input columns (default: all others)")
    fit.add_argument(
        "--hidden",
        type=_hidden,
        metavar="N[,N...]",
        help="hidden layer sizes, e.g. 2 or 64,32 (default: 16; lesson: 2)",
    )
    fit.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        help="hidden activation (default: relu; lesson: softplus)",
    )
    fit.add_argument(
        "--loss",
        choices=LOSSES,
        help="default: mse for regression, cross-entropy for classification, ssr for the lesson",
    )
    fit.add_argument(
        "--task",
        choices=("regression", "classification"),
        help="override the task inferred from the target",
    )
    fit.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default: adam")
    fit.add_argument(
        "--lr",
        type=_positive(float),
        metavar="RATE",
        help="learning rate (default: 0.003; lesson: 0.1)",
    )
    fit.add_argument(
        "--epochs",
        type=_positive(int),
        metavar="N",
        help="passes over the training rows (default: 200; lesson: 1000)",
    )
    fit.add_argument(
        "--max-steps", type=_positive(int), metavar="N", help="stop after this many updates"
    )
    fit.add_argument(
        "--batch-size",
        type=_positive(int),
        default=32,
        metavar="N",
        help="rows per update (default: 32)",
    )
    fit.add_argument(
        "--val-fraction",
        type=_fraction,
        metavar="F",
        help="share of rows held out for the metrics (default: 0.2; lesson: 0)",
    )
    fit.add_argument(
        "--seed",
        type=int,
        metavar="N",
        default=0,
        help="seed for the split, initialisation and shuffling (default: 0)",
    )
    fit.add_argument(
        "--out",
        default="model.safetensors",
        metavar="MODEL",
        help="where to write the model (default: model.safetensors); the loss plot goes "
        "beside it, named like MODEL with .loss.png in place of its suffix",
    )
    fit.add_argument(
        "--drop-missing",
        action="store_true",
        help="drop rows with missing or non-numeric values instead of failing",
    )
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")

    predict = sub.add_parser(
        "predict",
        formatter_class=_Formatter,
        help="predict with a fitted model",
        description=_text(
            "Predict the target for each row of a CSV file that has the model's feature "
            "columns, written as CSV (to stdout unless --out). Classification adds one "
            "probability column per class."
        ),
    )
    predict.add_argument("model", metavar="MODEL", help="a model file written by chainrule fit")
    predict.add_argument("data", metavar="DATA.csv")
    predict.add_argument("--out", metavar="PREDS.csv", help="write here instead of stdout")
    predict.add_argument(
        "--drop-missing",
        action="store_true",
        help="skip rows with missing or non-numeric values instead of failing",
    )

    explain = sub.add_parser(
        "explain",
        formatter_class=_Formatter,
        help="write an HTML report on a fitted model",
        description=_text(
            "Write a self-contained HTML report showing how backpropagation computes the "
            "model's gradients on DATA (required unless the model was fitted on the "
            "lesson's data)."
        ),
    )
    explain.add_argument("model", metavar="MODEL")
    explain.add_argument("data", nargs="?", metavar="DATA.csv")
    explain.add_argument(
        "--out",
        default="report.html",
        metavar="REPORT.html",
        help="where to write the report (default: report.html)",
    )
    explain.add_argument(
        "--sample",
        type=_row_number,
        default="1",
        metavar="ROW",
        help="the data row (1 = first) whose loss the report differentiates (default: 1)",
    )
    explain.add_argument(
        "--drop-missing",
        action="store_true",
        help="skip rows with missing or non-numeric values instead of failing",
    )

    demo = sub.add_parser(
        "demo",
        formatter_class=_Formatter,
        help="reproduce the lesson end to end",
        description=_text(
            "Replay the lesson: every number it quotes, then all seven parameters "
            "trained from scratch, with its pictures written to --out."
        ),
    )
    demo.add_argument(
        "--out",
        default="chainrule-demo",
        metavar="DIR",
        help="folder for the pictures (default: chainrule-demo)",
    )
    return parser


COMMANDS = {"fit": cmd_fit, "predict": cmd_predict, "explain": cmd_explain, "demo": cmd_demo}


def main(argv=None, echo=print):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args, echo)
    except (CLIError, DataError) as e:
        print(f"chainrule {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader of our output went away (`chainrule predict ... | head`): stop quietly, as
        # Unix tools do, and keep Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        # Disk full, permission denied: the file operation failed, and said on which file.
        where = f" ({e.filename})" if e.filename else ""
        print(f"chainrule {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"chainrule {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
