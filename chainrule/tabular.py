"""Neural networks for tables: what the command line (`chainrule fit/predict/explain`) and the
scikit-learn estimators share.

- `ACTIVATIONS` and `build_network`: the multi-layer perceptron, `nn.Linear` layers with one
  activation between them; `check_memory` refuses a size the machine cannot hold, before anything
  is allocated.
- `read_frame`: a CSV file as a table of columns, each a number column or a text column (a
  category), with missing cells kept as missing.
- `fit`: scikit-learn's own transformers learn the preprocessing on the training split (numbers:
  `StandardScaler`, missing values imputed with the mean; text: `OneHotEncoder`, a missing value
  being a category of its own; a regression target is standardised too), then `cr.train.fit`
  trains the network with `train.EarlyStopping` on the held-out split, which keeps the best
  weights.
- `TabularModel`: the fitted network with its preprocessing; `save` writes one `cr.save`
  checkpoint (tensors, and JSON for the names and categories: nothing is pickled) and
  `TabularModel.load` checks every claim of such a file before it builds anything.
"""

import io
import math
import os
import stat
import warnings

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import __version__, data, nn, optim, train
from .datasets import (
    DataError,
    dosage,
    infer_task,
    is_missing,
    parse_number,
    read_cells,
    sorted_labels,
)
from .engine.autograd import no_grad
from .engine.tensor import Tensor
from .io import CheckpointError
from .io import load as load_checkpoint
from .io import save as save_checkpoint
from .ops import from_numpy, manual_seed, softmax

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "Frame",
    "TabularError",
    "TabularModel",
    "build_network",
    "check_memory",
    "fit",
    "read_frame",
    "split_rows",
]

# Hidden activations by name; 'logistic' is scikit-learn's name for the sigmoid.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "logistic": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": None,
}
LOSSES = {"ssr": nn.SSR, "mse": nn.MSELoss, "cross-entropy": nn.CrossEntropyLoss}
OPTIMIZERS = {"adam": optim.Adam, "sgd": optim.SGD}
DTYPES = ("float32", "float64")
FORMAT = "chainrule.tabular"
FORMAT_VERSION = 2
# A missing cell in a text column is a category of its own (its absence may say something).
MISSING_CATEGORY = "(missing)"
# Weights, their gradients and Adam's two moments: four arrays the size of the parameters.
ARRAYS_PER_PARAMETER = 4


class TabularError(ValueError):
    """A problem with a model, a model file or a request that the user can fix, in one line."""


# ---- the network --------------------------------------------------------------------------------


def build_network(sizes, activation, dtype="float32"):
    """`nn.Sequential` of Linear layers of the given sizes (inputs, hidden..., outputs) with
    `ACTIVATIONS[activation]` between them, none after the last."""
    act = ACTIVATIONS[activation]
    modules = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        modules.append(nn.Linear(fan_in, fan_out, dtype=dtype))
        if act is not None and i < len(sizes) - 2:
            modules.append(act())
    return nn.Sequential(*modules)


def parameter_shapes(sizes, activation="relu"):
    """{name: shape} of the parameters `build_network(sizes, activation)` makes, without making
    them."""
    # An activation module follows every Linear but the last; Sequential numbers both.
    stride = 1 if ACTIVATIONS[activation] is None else 2
    shapes = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shapes[f"{stride * i}.weight"], shapes[f"{stride * i}.bias"] = (fan_out, fan_in), (fan_out,)
    return shapes


def parameter_count(sizes):
    return sum(math.prod(shape) for shape in parameter_shapes(sizes).values())


def _available_memory():
    """Bytes this process can still allocate: MemAvailable where Linux says it, else the
    physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(n):
    return f"{n / 2**30:.3g} GiB" if n >= 2**27 else f"{n / 2**20:.3g} MiB"


def check_memory(sizes, dtype="float32", batch_size=1):
    """Refuse a network whose training would not fit in memory, saying what it would need."""
    itemsize = np.dtype(dtype).itemsize
    needed = itemsize * (
        ARRAYS_PER_PARAMETER * parameter_count(sizes) + 3 * batch_size * sum(sizes)
    )
    available = _available_memory()
    if needed > available:
        raise TabularError(
            f"a network with layers {'-'.join(map(str, sizes))} needs about {_gib(needed)} "
            f"to train ({dtype} weights, gradients and optimizer state), but only "
            f"{_gib(available)} is available; choose smaller --hidden sizes"
        )


# ---- tables -------------------------------------------------------------------------------------


class Frame:
    """A table read for a tabular model: `features` (names) and `kinds` ({name: 'number' or
    'text'}), `x` an object array (rows, features) of floats and strings with NaN where a cell is
    missing, `target` (its name or None) and `y` (floats, or label strings), `rows` (each row's
    line in the file, or its number), `dropped` (the lines that were left out) and `source`."""

    def __init__(self, source, features, kinds, x, target, y, rows, dropped=()):
        self.source, self.features, self.kinds = source, list(features), dict(kinds)
        self.x, self.target, self.y = x, target, y
        self.rows, self.dropped = list(rows), list(dropped)

    def take(self, index):
        y = None if self.y is None else self.y[index]
        rows = [self.rows[i] for i in index]
        return Frame(self.source, self.features, self.kinds, self.x[index], self.target, y, rows)


def _column_kind(name, column, lines, cells):
    """'number' when every present cell is a number, 'text' when none is; a column with both is
    an error naming the first cell that is not a number (a typo, or a unit left in)."""
    parsed = [(line, cell, parse_number(cell)) for line, cell in zip(lines, cells, strict=True)]
    present = [p for p in parsed if not is_missing(p[1])]
    if not present:
        raise DataError(f"{name}: column {column!r} has no values")
    numbers = [p for p in present if p[2][0] is not None]
    if not numbers:
        return "text", []
    return "number", [(line, why) for line, _, (value, why) in present if value is None]


def read_frame(path, target=None, features=None, kinds=None, drop_missing=False, task=None):
    """Read a CSV file into a `Frame`. `kinds` fixes each feature's kind (a fitted model's);
    otherwise a column is a number column when its cells are numbers and a text column when none
    is. Missing cells stay missing (to be imputed), unless `drop_missing` drops their rows; a row
    without a target value is always dropped. Returns the Frame and the task ('regression' or
    'classification', inferred from the target unless given)."""
    cells = read_cells(path, target, features)
    name, lines, columns = cells.name, cells.lines, cells.columns
    keep = np.ones(len(lines), dtype=bool)
    kinds = dict(kinds or {})
    for column in cells.features:
        if column not in kinds:
            kinds[column], bad = _column_kind(name, column, lines, columns[column])
        else:
            bad = [] if kinds[column] == "text" else _bad_numbers(lines, columns[column])
        if bad and not drop_missing:
            line, why = bad[0]
            others = f" ({len(bad)} rows have such values)" if len(bad) > 1 else ""
            raise DataError(
                f"{name}, line {line}, column {column!r}: {why}{others}; drop such rows "
                "with --drop-missing"
            )
        bad_lines = {line for line, _ in bad}
        keep &= [line not in bad_lines for line in lines]
        if drop_missing:
            keep &= [not is_missing(cell) for cell in columns[column]]
    y = None
    if target is not None:
        labels = columns[target]
        keep &= [not is_missing(cell) for cell in labels]
        present = [c for c, k in zip(labels, keep, strict=True) if k]
        if not present:
            raise DataError(f"{name}: no row has both a target value and usable features")
        task = task or infer_task(present)
        if task == "regression":
            bad = _bad_numbers(lines, labels)
            if bad:
                line, why = bad[0]
                raise DataError(
                    f"{name}, line {line}, column {target!r}: {why}; a regression target must "
                    "be numbers (or use --task classification)"
                )
            y = np.array([parse_number(c)[0] if not is_missing(c) else np.nan for c in labels])
        else:
            y = np.array(labels, dtype=object)
    if not keep.any():
        raise DataError(f"{name}: every row has a missing or non-numeric value, none is left")
    x = np.empty((len(lines), len(cells.features)), dtype=object)
    for j, column in enumerate(cells.features):
        for i, cell in enumerate(columns[column]):
            if is_missing(cell):
                x[i, j] = np.nan
            elif kinds[column] == "number":
                x[i, j] = parse_number(cell)[0]
            else:
                x[i, j] = cell
    frame = Frame(name, cells.features, kinds, x, target, y, lines)
    kept = frame.take(np.flatnonzero(keep))
    kept.dropped = [line for line, k in zip(lines, keep, strict=True) if not k]
    return kept, task


def _bad_numbers(lines, cells):
    found = []
    for line, cell in zip(lines, cells, strict=True):
        if not is_missing(cell):
            value, why = parse_number(cell)
            if value is None:
                found.append((line, why))
    return found


def frame_from_arrays(source, x, y, features, target):
    """A Frame of number columns from arrays (the built-in data sets)."""
    x = np.asarray(x, dtype=np.float64)
    kinds = dict.fromkeys(features, "number")
    rows = list(range(1, len(x) + 1))
    return Frame(source, features, kinds, x.astype(object), target, np.asarray(y), rows)


def dosage_frame():
    """The lesson's three dosage points as a Frame (a regression of efficacy on dosage)."""
    x, y = (t.numpy() for t in dosage(return_X_y=True))
    return frame_from_arrays("dosage", x, y, ["dosage"], "efficacy")


def split_rows(n, fraction, seed):
    """(training rows, held-out rows): a seeded shuffle with round(n * fraction) held out, at
    least one each when a fraction is asked for and there are two rows."""
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(n * fraction))
    if fraction > 0 and n >= 2:
        held = min(max(held, 1), n - 1)
    return np.sort(order[held:]), np.sort(order[:held])


# ---- preprocessing ------------------------------------------------------------------------------


def _preprocessor(numbers, texts, categories="auto"):
    """scikit-learn's ColumnTransformer for the columns at `numbers` and `texts`: standardised
    numbers whose missing values become the mean (0 after scaling), one-hot text. A kind of
    column the table lacks gets no transformer."""
    parts = []
    if numbers:
        scale = Pipeline(
            [
                ("scale", StandardScaler()),
                ("impute", SimpleImputer(strategy="constant", fill_value=0.0)),
            ]
        )
        parts.append(("numbers", scale, numbers))
    if texts:
        encode = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                (
                    "encode",
                    OneHotEncoder(
                        categories=categories, handle_unknown="ignore", sparse_output=False
                    ),
                ),
            ]
        )
        parts.append(("text", encode, texts))
    return ColumnTransformer(parts, sparse_threshold=0)


def _quietly(function, *args):
    """Run NumPy/scikit-learn arithmetic with its warnings silenced: the callers check the
    results for what the warnings would say (overflow, division by zero) and report it."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return function(*args)


class Preprocessing:
    """The fitted ColumnTransformer of a model and what it learned, as tensors and JSON."""

    def __init__(self, features, kinds, transformer):
        self.features, self.kinds, self.transformer = features, kinds, transformer

    @property
    def numbers(self):
        return [f for f in self.features if self.kinds[f] == "number"]

    @property
    def texts(self):
        return [f for f in self.features if self.kinds[f] == "text"]

    @classmethod
    def fit(cls, frame):
        index = {f: i for i, f in enumerate(frame.features)}
        numbers = [index[f] for f in frame.features if frame.kinds[f] == "number"]
        texts = [index[f] for f in frame.features if frame.kinds[f] == "text"]
        transformer = _quietly(_preprocessor(numbers, texts).fit, frame.x)
        fitted = cls(frame.features, frame.kinds, transformer)
        scaler = fitted._scaler()
        for j, column in enumerate(fitted.numbers):
            mean, scale = scaler.mean_[j], scaler.scale_[j]
            if not (np.isfinite(mean) and np.isfinite(scale) and np.isfinite(scaler.var_[j])):
                raise DataError(
                    f"{frame.source}: column {column!r} has values too large for float64 "
                    f"arithmetic (their mean or variance overflows: largest magnitude "
                    f"{_largest(frame, column):.4g}); rescale that column"
                )
        return fitted

    def _scaler(self):
        """The fitted StandardScaler, or None without number columns."""
        step = self.transformer.named_transformers_.get("numbers")
        return None if step is None else step.named_steps["scale"]

    def _encoder(self):
        """The fitted OneHotEncoder, or None without text columns."""
        step = self.transformer.named_transformers_.get("text")
        return None if step is None else step.named_steps["encode"]

    @property
    def categories(self):
        encoder = self._encoder()
        return [] if encoder is None else [list(values) for values in encoder.categories_]

    @property
    def input_names(self):
        """The network's inputs: number columns, then one per text column and category."""
        names = list(self.numbers)
        for column, values in zip(self.texts, self.categories, strict=True):
            names += [f"{column}={value}" for value in values]
        return names

    def transform(self, frame):
        """The network's inputs (float64, rows x inputs) for a frame with these features."""
        index = {f: i for i, f in enumerate(frame.features)}
        x = frame.x[:, [index[f] for f in self.features]]
        return np.asarray(_quietly(self.transformer.transform, x), dtype=np.float64)

    def state(self):
        scaler = self._scaler()
        empty = np.zeros(0)
        return {
            "numbers": {
                "mean": empty if scaler is None else scaler.mean_.astype(np.float64),
                "scale": empty if scaler is None else scaler.scale_.astype(np.float64),
                "var": empty if scaler is None else scaler.var_.astype(np.float64),
                "samples": 0 if scaler is None else int(np.max(scaler.n_samples_seen_)),
            },
            "categories": [[str(v) for v in values] for values in self.categories],
        }

    @classmethod
    def from_state(cls, features, kinds, state):
        """Rebuild the fitted transformers: the encoder from its stored categories (fitting it
        then learns nothing more), the scaler with its stored statistics."""
        fitted = cls(features, kinds, None)
        numbers, texts = fitted.numbers, fitted.texts
        index = {f: i for i, f in enumerate(features)}
        categories = [np.array(values, dtype=object) for values in state["categories"]]
        transformer = _preprocessor(
            [index[f] for f in numbers], [index[f] for f in texts], categories or "auto"
        )
        template = np.empty((1, len(features)), dtype=object)
        for f in numbers:
            template[0, index[f]] = 0.0
        for f, values in zip(texts, categories, strict=True):
            template[0, index[f]] = values[0]
        fitted.transformer = _quietly(transformer.fit, template)
        scaler = fitted._scaler()
        if scaler is not None:
            stored = state["numbers"]
            scaler.mean_, scaler.scale_ = stored["mean"].numpy(), stored["scale"].numpy()
            scaler.var_ = stored["var"].numpy()
            scaler.n_samples_seen_ = stored["samples"]
        return fitted


def _largest(frame, column):
    values = frame.x[:, frame.features.index(column)].astype(np.float64)
    return float(np.nanmax(np.abs(values)))


# ---- the model ----------------------------------------------------------------------------------


class TabularModel:
    """A fitted network with its preprocessing. `spec` (JSON): task, features, kinds, target,
    classes, layers, activation, loss, dtype, data; `target_scaling` (regression): mean and scale
    of the target; `history`: per-epoch 'train_loss' and, with a held-out split, 'val_loss'."""

    def __init__(self, spec, preprocessing, network, target_scaling=None, history=None):
        self.spec, self.preprocessing, self.network = spec, preprocessing, network
        self.target_scaling, self.history = target_scaling, dict(history or {})

    @property
    def classification(self):
        return self.spec["task"] == "classification"

    def read(self, path, drop_missing=False, with_target=False):
        """A CSV file's rows as a Frame of this model's features (and target), of their kinds."""
        spec = self.spec
        target = spec["target"] if with_target else None
        kinds = spec["kinds"]
        return read_frame(path, target, spec["features"], kinds, drop_missing, spec["task"])[0]

    def inputs(self, frame):
        return self.preprocessing.transform(frame)

    def tensors(self, frame):
        """(inputs, targets) of a frame as the network is trained on them, as tensors."""
        dtype = self.spec["dtype"]
        targets = self.targets(frame)
        targets = targets if self.classification else targets.astype(dtype)
        return from_numpy(self.inputs(frame).astype(dtype)), from_numpy(targets)

    def prediction_table(self, frame):
        """(header, rows) of text: each row's feature cells as read, the prediction, and for a
        classifier each class's probability."""
        spec = self.spec
        header = [*spec["features"], spec["target"]]
        cells = [["" if _is_nan(v) else f"{v}" for v in row] for row in frame.x]
        if not self.classification:
            return header, [
                [*c, f"{v:.8g}"] for c, v in zip(cells, self.predict(frame), strict=True)
            ]
        indices, probabilities = self.predict(frame)
        header += [f"p({c})" for c in spec["classes"]]
        rows = [
            [*c, spec["classes"][i], *(f"{p:.6g}" for p in ps)]
            for c, i, ps in zip(cells, indices, probabilities, strict=True)
        ]
        return header, rows

    def targets(self, frame):
        """The frame's targets as the network is trained on them: class indices, or the
        standardised values as a column."""
        if self.classification:
            position = {c: i for i, c in enumerate(self.spec["classes"])}
            unknown = sorted(set(frame.y) - set(position))
            if unknown:
                raise DataError(
                    f"{frame.source}: target classes {unknown} were not seen in training "
                    f"(the model knows {self.spec['classes']})"
                )
            return np.array([position[c] for c in frame.y], dtype=np.int64)
        mean, scale = self.target_scaling
        return _quietly(lambda: ((frame.y - mean) / scale).reshape(-1, 1))

    def outputs(self, x):
        """The network's raw outputs (logits, or standardised values) for encoded inputs."""
        self.network.eval()
        with no_grad():
            out = self.network(from_numpy(np.asarray(x, dtype=self.spec["dtype"])))
        return out

    def predict(self, frame):
        """Regression: values in the target's units; classification: (class indices,
        probabilities). A row whose prediction is not finite is an error naming it."""
        out = _quietly(self.outputs, self.inputs(frame))
        if self.classification:
            probabilities = softmax(out, dim=1).numpy().astype(np.float64)
            values = probabilities
        else:
            mean, scale = self.target_scaling
            values = _quietly(lambda: out.numpy()[:, 0].astype(np.float64) * scale + mean)
        finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise TabularError(
                f"{frame.source}, line {frame.rows[row]}: the prediction is not a finite number "
                f"({np.ravel(values[row])[0]}): its values are far outside those the model "
                "was fitted on"
            )
        if self.classification:
            return probabilities.argmax(axis=1), probabilities
        return values

    def loss_plot_png(self):
        """The per-epoch losses (training, held-out) as PNG bytes, drawn on a bare matplotlib
        Figure (no pyplot, so no backend is chosen for the user)."""
        from matplotlib.figure import Figure  # heavy: loaded only when a plot is drawn

        spec = self.spec
        names = spec["features"]
        inputs = ", ".join(names) if len(names) <= 3 else f"{len(names)} features"
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for key, label in (("train_loss", "training"), ("val_loss", "held-out")):
            values = self.history.get(key)
            if values is not None and len(values):
                ax.plot(range(1, len(values) + 1), values, label=label)
        scaled = "" if self.classification else " (standardized target)"
        ax.set(xlabel="epoch", ylabel=f"{spec['loss']} loss{scaled}")
        ax.set_title(f"{spec['target']} from {inputs}")
        if min((min(v) for v in self.history.values() if len(v)), default=1.0) > 0:
            ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    def state(self):
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "chainrule_version": __version__,
            "model": self.spec,
            "preprocessing": self.preprocessing.state(),
            "target_scaling": None
            if self.target_scaling is None
            else {"mean": float(self.target_scaling[0]), "scale": float(self.target_scaling[1])},
            "net": dict(self.network.state_dict()),
            "history": {k: np.asarray(v, dtype=np.float64) for k, v in self.history.items()},
        }

    def save(self, path):
        """One `cr.save` checkpoint (written atomically)."""
        save_checkpoint(self.state(), path)

    @classmethod
    def load(cls, path):
        """Read a model file written by `save`, checking every claim in it (types, sizes against
        the file's size, shapes against the architecture, finiteness) before building the
        network. Every fault is a TabularError naming the file."""
        size = _model_file_size(path)
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            raise _model_error(path, e.reason) from None
        return _ModelFileCheck(path, size).build(cls, state)


def _is_nan(value):
    return isinstance(value, float) and math.isnan(value)


def _model_error(path, why):
    return TabularError(f"{path} is not a chainrule model file: {why}")


def _model_file_size(path):
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TabularError(f"{path}: no such model file") from None
    except OSError as e:
        raise TabularError(f"{path}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise TabularError(f"{path} is a folder, not a model file")
    if not stat.S_ISREG(info.st_mode):
        raise TabularError(f"{path} is not a regular file (a device or a pipe?), not a model file")
    return info.st_size


class _ModelFileCheck:
    """The checks of a loaded model file, in the order that lets each trust the ones before."""

    def __init__(self, path, size):
        self.path, self.size = path, size

    def fail(self, why):
        raise _model_error(self.path, why)

    def build(self, cls, state):
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            self.fail(
                "it is a safetensors file without chainrule's model metadata "
                "(written by another program?)"
            )
        version = state.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            self.fail(f"its format_version {version!r} is not a number")
        if version > FORMAT_VERSION:
            raise TabularError(
                f"{self.path} was written by a newer chainrule (model format {version}; this is "
                f"chainrule {__version__}, which reads format {FORMAT_VERSION})"
            )
        spec = self.spec(state.get("model"))
        preprocessing = self.preprocessing(spec, state.get("preprocessing"))
        target_scaling = self.target_scaling(spec, state.get("target_scaling"))
        weights = self.weights(spec, state.get("net"))
        history = self.history(state.get("history", {}))
        network = build_network(spec["layers"], spec["activation"], spec["dtype"])
        network.load_state_dict(weights)
        return cls(spec, preprocessing, network, target_scaling, history)

    def spec(self, spec):
        if not isinstance(spec, dict):
            self.fail("it has no model description")
        fields = {
            "task": str,
            "features": list,
            "kinds": dict,
            "target": str,
            "layers": list,
            "activation": str,
            "loss": str,
            "dtype": str,
            "data": str,
        }
        for key, kind in fields.items():
            if not isinstance(spec.get(key), kind):
                self.fail(f"its model description has no {key} of type {kind.__name__}")
        problems = []
        features, layers = spec["features"], spec["layers"]
        if not features or not all(isinstance(f, str) for f in features):
            problems.append("feature names must be a non-empty list of strings")
        elif len(set(features)) != len(features):
            problems.append("a feature name appears twice")
        elif set(spec["kinds"]) != set(features) or not all(
            v in ("number", "text") for v in spec["kinds"].values()
        ):
            problems.append("kinds must give 'number' or 'text' for each feature")
        if spec["task"] not in ("regression", "classification"):
            problems.append(f"unknown task {spec['task']!r}")
        if spec["activation"] not in ACTIVATIONS:
            problems.append(f"unknown activation {spec['activation']!r}")
        if spec["loss"] not in LOSSES:
            problems.append(f"unknown loss {spec['loss']!r}")
        if spec["dtype"] not in DTYPES:
            problems.append(f"unknown dtype {spec['dtype']!r}")
        if (
            len(layers) < 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in layers)
            or min(layers) < 1
        ):
            problems.append(f"layer sizes {layers} do not describe a network")
        classes = spec.get("classes")
        if spec["task"] == "classification":
            if not (
                isinstance(classes, list)
                and len(classes) >= 2
                and all(isinstance(c, str) for c in classes)
            ):
                problems.append("a classifier needs a list of at least two class names")
            elif not problems and layers[-1] != len(classes):
                problems.append(f"{layers[-1]} outputs for {len(classes)} classes")
        elif not problems and layers[-1] != 1:
            problems.append(f"a regression with {layers[-1]} outputs")
        if problems:
            self.fail("its model description is inconsistent: " + "; ".join(problems))
        claimed = parameter_count(layers) * np.dtype(spec["dtype"]).itemsize
        if claimed > self.size:
            self.fail(
                f"its architecture {layers} claims {claimed} bytes of weights, but the file has "
                f"only {self.size} bytes"
            )
        return spec

    def preprocessing(self, spec, state):
        features, kinds = spec["features"], spec["kinds"]
        numbers = [f for f in features if kinds[f] == "number"]
        texts = [f for f in features if kinds[f] == "text"]
        if not isinstance(state, dict) or not isinstance(state.get("numbers"), dict):
            self.fail("it has no preprocessing")
        stored = state["numbers"]
        for key in ("mean", "scale", "var"):
            self.finite_array(f"preprocessing.numbers.{key}", stored.get(key), (len(numbers),))
        if not (stored["scale"].numpy() > 0).all():
            self.fail("its preprocessing scales a column by zero or a negative number")
        samples = stored.get("samples")
        if not isinstance(samples, int) or samples < (1 if numbers else 0):
            self.fail("its preprocessing has no sample count")
        categories = state.get("categories")
        if not (
            isinstance(categories, list)
            and len(categories) == len(texts)
            and all(
                isinstance(values, list)
                and values
                and all(isinstance(v, str) for v in values)
                and len(set(values)) == len(values)
                for values in categories
            )
        ):
            self.fail("its text columns' categories must be one list of distinct strings each")
        inputs = len(numbers) + sum(len(values) for values in categories)
        if inputs != spec["layers"][0]:
            self.fail(
                f"its model description is inconsistent: {spec['layers'][0]} inputs but "
                f"{len(features)} feature names that encode to {inputs}"
            )
        return Preprocessing.from_state(features, kinds, state)

    def target_scaling(self, spec, state):
        if spec["task"] == "classification":
            return None
        if not isinstance(state, dict) or not all(
            isinstance(state.get(k), float) and math.isfinite(state[k]) for k in ("mean", "scale")
        ):
            self.fail("its target scaling is missing or not finite")
        if not state["scale"] > 0:
            self.fail(f"its target scaling is {state['scale']}, not a positive number")
        return state["mean"], state["scale"]

    def weights(self, spec, state):
        if not isinstance(state, dict):
            self.fail("it has no network weights")
        expected = parameter_shapes(spec["layers"], spec["activation"])
        for name, shape in expected.items():
            if name not in state:
                self.fail(f"it lacks the tensor net.{name}")
            self.finite_array(f"net.{name}", state[name], shape, spec["layers"])
        extra = sorted(set(state) - set(expected))
        if extra:
            self.fail(
                f"it has tensors the architecture {spec['layers']} does not use: "
                + ", ".join(f"net.{k}" for k in extra)
            )
        return {name: state[name] for name in expected}

    def finite_array(self, name, value, shape, layers=None):
        array = value._data if isinstance(value, Tensor) else None
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
            self.fail(f"{name} is not a floating-point tensor")
        if array.shape != tuple(shape):
            needs = f"the architecture {layers} needs" if layers else "expected"
            self.fail(f"{name} has shape {array.shape}, but {needs} {tuple(shape)}")
        if not np.isfinite(array).all():
            self.fail(f"{name} holds values that are not finite (NaN or infinity)")

    def history(self, state):
        if not isinstance(state, dict):
            self.fail("its training history is not a table of losses")
        history = {}
        for key, value in state.items():
            array = value._data if isinstance(value, Tensor) else None
            if not isinstance(array, np.ndarray) or array.ndim != 1:
                self.fail(f"history.{key} is not a list of losses")
            history[key] = array
        return history


# ---- fitting ------------------------------------------------------------------------------------


class FitResult:
    """What `fit` returns: the model, the training and held-out rows, the metrics on the
    held-out rows (or the training rows when none are held out), and the epoch kept."""

    def __init__(self, model, train_rows, val_rows, metrics, best_epoch, epochs):
        self.model, self.train_rows, self.val_rows = model, train_rows, val_rows
        self.metrics, self.best_epoch, self.epochs = metrics, best_epoch, epochs

    def summary(self, dropped=()):
        """The lines that report a fit: what was fitted, the epoch kept, the metrics."""
        spec, held = self.model.spec, len(self.val_rows)
        lines = [
            f"{spec['task']} on {spec['data']}: {len(self.train_rows)} training rows; "
            f"layers {'-'.join(map(str, spec['layers']))}, {spec['activation']}, {spec['loss']}"
        ]
        if dropped:
            lines.append(f"dropped {len(dropped)} rows with missing or unusable values")
        where = f"the {len(self.train_rows)} training rows (nothing held out)"
        if held:
            where = f"{held} held-out rows"
            lines.append(f"kept the weights of epoch {self.best_epoch} of {self.epochs} (best "
                         "held-out loss)")  # fmt: skip
        shown = ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
        return [*lines, f"metrics on {where}: {shown}"]


def fit(
    frame,
    task,
    *,
    hidden=(64, 32),
    activation="relu",
    loss=None,
    optimizer="adam",
    lr=1e-3,
    epochs=500,
    max_steps=None,
    batch_size=32,
    val_fraction=0.2,
    patience=20,
    seed=0,
    dtype="float32",
    progress=False,
):
    """Fit a network to a Frame: preprocessing learned on the training split, Adam (or SGD) on
    mini-batches, early stopping on the held-out split with its best weights kept. Returns a
    `FitResult`."""
    loss = loss or ("cross-entropy" if task == "classification" else "mse")
    if (loss == "cross-entropy") != (task == "classification"):
        raise TabularError(
            f"--loss {loss} does not fit a {task} target (use "
            f"{'--loss cross-entropy' if task == 'classification' else '--loss mse or ssr'}"
            " or --task)"
        )
    classes = None
    if task == "classification":
        classes = sorted_labels(set(frame.y))
        if len(classes) < 2:
            raise DataError(
                f"{frame.source}: the target {frame.target!r} has only one class "
                f"({classes[0]!r}); a classifier needs at least two"
            )
    train_rows, val_rows = split_rows(len(frame.rows), val_fraction, seed)
    training = frame.take(train_rows)
    preprocessing = Preprocessing.fit(training)
    target_scaling = None
    if task == "regression":
        target_scaling = _target_scaling(training)
    outputs = len(classes) if classes else 1
    sizes = [len(preprocessing.input_names), *hidden, outputs]
    check_memory(sizes, dtype, batch_size)
    spec = {
        "task": task,
        "features": frame.features,
        "kinds": frame.kinds,
        "target": frame.target,
        "classes": classes,
        "layers": sizes,
        "activation": activation,
        "loss": loss,
        "dtype": dtype,
        "data": os.path.basename(frame.source),
    }
    manual_seed(seed)
    network = build_network(sizes, activation, dtype)
    model = TabularModel(spec, preprocessing, network, target_scaling)

    def dataset(rows):
        return data.TensorDataset(*model.tensors(frame.take(rows)))

    for column, values in zip(preprocessing.numbers, model.inputs(training).T, strict=False):
        if not np.isfinite(values).all():
            raise DataError(
                f"{frame.source}: column {column!r} has values too large for float64 "
                "arithmetic (standardising them overflows); rescale that column"
            )
    loss_fn = LOSSES[loss]()
    loader = data.DataLoader(dataset(train_rows), batch_size=batch_size, shuffle=True, seed=seed)
    callbacks = [_StopAtNonFiniteLoss()]
    if len(val_rows):
        held_out = data.DataLoader(dataset(val_rows), batch_size=1024)
        callbacks = [train.EarlyStopping(held_out, loss_fn, patience=patience)]
    step = OPTIMIZERS[optimizer](network.parameters(), lr=lr)
    history = _quietly(
        lambda: train.fit(
            network,
            loss_fn,
            step,
            loader,
            epochs=epochs,
            max_steps=max_steps,
            progress=progress,
            callbacks=callbacks,
        )
    )
    network.eval()
    losses = history.epoch_loss
    scores = callbacks[0].scores if len(val_rows) else []
    bad = next((v for v in [*losses, *scores] if not math.isfinite(v)), None)
    if bad is not None or not all(np.isfinite(p._data).all() for p in network.parameters()):
        raise TabularError(
            f"training diverged: the loss became {bad if bad is not None else 'non-finite'}; "
            "nothing was written; try a smaller --lr"
        )
    model.history = {"train_loss": losses}
    best_epoch = len(losses)
    if len(val_rows):
        model.history["val_loss"] = callbacks[0].scores
        best_epoch = callbacks[0].best_epoch
    shown = val_rows if len(val_rows) else train_rows
    metrics = score(model, frame.take(shown))
    return FitResult(model, train_rows, val_rows, metrics, best_epoch, len(losses))


class _StopAtNonFiniteLoss:
    """Without a held-out split nothing else watches the loss: nothing after NaN can recover."""

    def on_epoch(self, info):
        return not math.isfinite(info.loss)


def _target_scaling(training):
    scaler = _quietly(StandardScaler().fit, training.y.reshape(-1, 1).astype(np.float64))
    mean, scale = float(scaler.mean_[0]), float(scaler.scale_[0])
    if not (math.isfinite(mean) and math.isfinite(scale) and math.isfinite(scaler.var_[0])):
        raise DataError(
            f"{training.source}: the target column {training.target!r} has values too large "
            "for float64 arithmetic (their mean or variance overflows); rescale it"
        )
    return mean, scale


def score(model, frame):
    """Accuracy for a classifier; R2, RMSE and MAE in the target's units for a regression."""
    if model.classification:
        indices, _ = model.predict(frame)
        return {"accuracy": float(np.mean(indices == model.targets(frame)))}
    y = frame.y.astype(np.float64)
    residual = model.predict(frame) - y
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(residual @ residual) / total if total > 0 else float("nan")
    return {
        "RMSE": float(np.sqrt(np.mean(residual**2))),
        "MAE": float(np.mean(np.abs(residual))),
        "R2": r2,
    }
