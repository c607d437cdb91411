"""`cr.datasets`: the source documents' data built in, a careful CSV loader, and scikit-learn's
bundled data sets, all as tensors.

Every loader returns a `Table` (like scikit-learn's Bunch: `data`, `target`, `feature_names`,
`target_name`, `classes`), or `(data, target)` with `return_X_y=True`. Problems with a file raise
`DataError`, a `ValueError` whose one-line message names the file, the line and the column.
"""

import csv
import math
import os
import stat
from typing import NamedTuple

import numpy as np

from .engine import dtypes
from .engine.tensor import Tensor

__all__ = [
    "DataError",
    "Table",
    "dosage",
    "infer_task",
    "load_breast_cancer",
    "load_csv",
    "load_diabetes",
    "load_digits",
    "load_iris",
    "load_wine",
    "read_cells",
    "sorted_labels",
    "slides_example",
]

# Cells that mean "no value" in the tables people export from spreadsheets, R and pandas.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})

# A numeric target is read as class labels when it holds whole numbers written without a decimal
# point, with at most this many distinct values and at least two rows per value on average.
MAX_INFERRED_CLASSES = 10


class DataError(ValueError):
    """A problem with a data file or table, stated in one line that names where it is."""


class Table:
    """A data set: `data` (n, features), `target` (n,), their names, and for classification the
    class labels (`target[i]` indexes `classes`). `dropped_rows` lists the file lines that
    `drop_missing=True` removed."""

    def __init__(
        self,
        data,
        target,
        feature_names,
        target_name,
        classes=None,
        dropped_rows=(),
        description="",
    ):
        self.data = data
        self.target = target
        self.feature_names = list(feature_names)
        self.target_name = target_name
        self.classes = None if classes is None else list(classes)
        self.dropped_rows = list(dropped_rows)
        self.description = description

    @property
    def task(self):
        return "regression" if self.classes is None else "classification"

    def __repr__(self):
        if self.target is None:
            kind = "no target"
        elif self.classes is None:
            kind = "regression"
        else:
            kind = f"classification, {len(self.classes)} classes"
        names = self.feature_names
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        return (
            f"Table({self.data.shape[0]} rows, features [{shown}], "
            f"target {self.target_name!r} ({kind}))"
        )


def _float(dtype):
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def _finish(table, return_X_y):
    return (table.data, table.target) if return_X_y else table


# ---- the source documents' data -----------------------------------------------------------------


# The lesson's drug-dosage measurements (the demo in lesson.py reads them from here).
DOSAGE = [0.0, 0.5, 1.0]
EFFICACY = [0.0, 1.0, 0.0]


def dosage(dtype=None, return_X_y=False):
    """The lesson's three points: dosage 0, 0.5, 1 with efficacy 0, 1, 0 (data shape (3, 1))."""
    dtype = _float(dtype)
    table = Table(
        Tensor(np.array(DOSAGE, dtype=dtype).reshape(-1, 1)),
        Tensor(np.array(EFFICACY, dtype=dtype)),
        ["dosage"],
        "efficacy",
        description="The backpropagation lesson's drug-dosage data: low and high dosages do not "
        "work, the middle one does.",
    )
    return _finish(table, return_X_y)


# Chosen for the slides' two-input model yhat = b + w1 x1 + w2 x2, which has no numbers of its own:
# y is exactly 0.5 + 2 x1 - 1 x2, so the model fits it with loss 0 at b = 0.5, w1 = 2, w2 = -1,
# and the five points are in general position so those parameters are the unique fit.
SLIDES_PARAMETERS = {"b": 0.5, "w1": 2.0, "w2": -1.0}
_SLIDES_X = [(0.0, 1.0), (1.0, 0.0), (2.0, 1.0), (0.5, 2.0), (1.5, 0.5)]


def slides_example(dtype=None, return_X_y=False):
    """Five points (x1, x2, y) for the slides' two-input linear model. They lie exactly on
    y = 0.5 + 2 x1 - x2 (see `SLIDES_PARAMETERS`), so a fitted model can be checked by eye."""
    dtype = _float(dtype)
    x = np.array(_SLIDES_X, dtype=np.float64)
    p = SLIDES_PARAMETERS
    y = p["b"] + p["w1"] * x[:, 0] + p["w2"] * x[:, 1]
    table = Table(
        Tensor(x.astype(dtype)),
        Tensor(y.astype(dtype)),
        ["x1", "x2"],
        "y",
        description="The slides' two-input example: y = 0.5 + 2 x1 - x2 exactly.",
    )
    return _finish(table, return_X_y)


# ---- CSV files ----------------------------------------------------------------------------------


def _read_rows(path):
    """The file's rows as (line number, fields), or a DataError saying why they cannot be read."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise DataError(f"{name}: no such file")
    if os.path.isdir(name):
        raise DataError(f"{name} is a folder, not a CSV file")
    if not stat.S_ISREG(os.stat(name).st_mode):
        # A device or a pipe may never end (/dev/zero) or block until a writer comes.
        raise DataError(f"{name} is not a regular file (a device or a pipe?); give a CSV file")
    try:
        with open(name, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=_delimiter(f.readline()))
            f.seek(0)
            rows = []
            for fields in reader:
                # Blank lines carry no data; csv gives them as [].
                if fields and any(cell.strip() for cell in fields):
                    rows.append((reader.line_num, fields))
    except UnicodeDecodeError:
        raise DataError(
            f"{name} is not a UTF-8 text file (a spreadsheet or a binary file?); "
            "save it as CSV in UTF-8"
        ) from None
    except csv.Error as e:
        raise DataError(f"{name} is not a readable CSV file: {e}") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read it ({e.strerror})") from None
    if not rows:
        raise DataError(f"{name} is empty: a CSV file needs a header line and data rows")
    return name, rows


def _delimiter(first_line):
    """Commas, unless the header line has none and has semicolons or tabs (as spreadsheets write
    where the comma is the decimal mark)."""
    if "," in first_line:
        return ","
    return max(";\t", key=first_line.count) if any(c in first_line for c in ";\t") else ","


def _header(name, fields):
    header = [h.strip() for h in fields]
    seen = {}
    for i, column in enumerate(header):
        if not column:
            raise DataError(f"{name}: column {i + 1} of the header has no name")
        if column in seen:
            raise DataError(
                f"{name}: the header names column {column!r} twice "
                f"(columns {seen[column] + 1} and {i + 1})"
            )
        seen[column] = i
    return header, seen


def _pick_columns(name, header, index, target, features):
    def known(column, role):
        if column not in index:
            raise DataError(
                f"{name} has no column {column!r} ({role}); its columns are "
                + ", ".join(repr(h) for h in header)
            )
        return index[column]

    target_index = None if target is None else known(target, "the target")
    if features is None:
        features = [h for h in header if h != target]
    else:
        features = list(features)
        seen = set()
        for column in features:
            if column in seen:
                raise DataError(f"feature column {column!r} is named twice")
            seen.add(column)
            if column == target:
                raise DataError(f"column {column!r} cannot be both the target and a feature")
    if not features:
        raise DataError(f"{name} has no feature columns: it has only the target {target!r}")
    return target_index, [known(f, "a feature") for f in features], features


def _refuse_text_column(name, column, cells):
    """A feature column with no number in it is a text column (a category, a name): dropping its
    rows would drop them all, so say what it is instead."""
    present = [(line, c.strip()) for line, c in cells if c.strip().lower() not in MISSING]
    if present and all(parse_number(c)[0] is None for _, c in present):
        line, example = present[0]
        raise DataError(
            f"{name}: column {column!r} holds text, not numbers ({example!r} on line {line}); "
            "features must be numeric: choose the feature columns with --features "
            "(features= in Python)"
        )


def parse_number(cell):
    """(value, None) for a finite number, else (None, why)."""
    text = cell.strip()
    if text.lower() in MISSING:
        return None, "missing value"
    try:
        value = float(text)
    except ValueError:
        return None, f"{text!r} is not a number"
    if not math.isfinite(value):
        return None, f"{text!r} is not a finite number"
    return value, None


def infer_task(labels):
    """'classification' or 'regression' for a target column given as strings (see
    MAX_INFERRED_CLASSES): text labels are classes; whole numbers written without a decimal point
    are classes when few and repeated; anything else is a quantity to regress."""
    distinct = set(labels)
    numbers = [parse_number(v)[0] for v in distinct]
    if any(v is None for v in numbers):
        return "classification"
    whole = all(v.lstrip("+-").isdigit() for v in distinct)
    if whole and len(distinct) <= MAX_INFERRED_CLASSES and len(labels) >= 2 * len(distinct):
        return "classification"
    return "regression"


class Cells(NamedTuple):
    """A CSV file's chosen columns as text: `name` (the file), `lines` (each data row's line
    number), `features` (names), `columns` ({name: [stripped cell per row]}), `target` (its name
    or None)."""

    name: str
    lines: list
    features: list
    columns: dict
    target: str | None


def read_cells(path, target=None, features=None):
    """The cells of the target and feature columns (default: all but the target) of a CSV file,
    as stripped strings, after the checks every reader needs: a readable regular file, a header
    naming each column once, every row as wide as the header."""
    name, rows = _read_rows(path)
    (_, header_fields), body = rows[0], rows[1:]
    header, index = _header(name, header_fields)
    if not body:
        raise DataError(f"{name} has a header but no data rows")
    target_index, feature_index, feature_names = _pick_columns(
        name, header, index, target, features
    )
    for line, fields in body:
        if len(fields) != len(header):
            raise DataError(
                f"{name}, line {line}: {len(fields)} fields, but the header has "
                f"{len(header)} columns"
            )
    wanted = feature_index if target_index is None else [*feature_index, target_index]
    columns = {header[i]: [fields[i].strip() for _, fields in body] for i in wanted}
    return Cells(name, [line for line, _ in body], feature_names, columns, target)


def is_missing(cell):
    """Whether a (stripped) cell is one of the spellings of "no value" in `MISSING`."""
    return cell.lower() in MISSING


def load_csv(
    path, target, features=None, drop_missing=False, dtype=None, task=None, return_X_y=False
):
    """Read a CSV file with a header line into a `Table`. Fields are separated by commas, or by
    semicolons or tabs when the header line has those and no comma.

    `target` names the column to predict (None: read only the features, for prediction);
    `features` the input columns (default: all others).
    Feature cells must be numbers; a missing or non-numeric cell is an error naming its line and
    column unless `drop_missing=True`, which drops such rows (their lines are in `dropped_rows`).
    `task` is 'regression', 'classification' or None to infer it from the target (`infer_task`);
    for classification `target` holds indices into `classes` (sorted: numerically when the labels
    are numbers).
    """
    if task not in (None, "regression", "classification"):
        raise ValueError(
            f"load_csv: task must be 'regression', 'classification' or None, not {task!r}"
        )
    name, lines, feature_names, columns, _ = read_cells(path, target, features)
    for column in feature_names:
        _refuse_text_column(name, column, list(zip(lines, columns[column], strict=True)))

    if target is None:
        target_cells = [None] * len(lines)
    else:
        target_cells = columns[target]
        present = [c for c in target_cells if not is_missing(c)]
        if task is None:
            task = infer_task(present) if present else "regression"

    values, dropped, first_problem = [], [], None
    for r, (line, label) in enumerate(zip(lines, target_cells, strict=True)):
        row, problem = [], None
        for column in feature_names:
            value, why = parse_number(columns[column][r])
            if why is not None:
                problem = problem or (column, why)
            row.append(value)
        if label is not None and task == "regression":
            value, why = parse_number(label)
            problem = problem or (None if why is None else (target, why))
            row.append(value)
        elif label is not None:
            if is_missing(label):
                problem = problem or (target, "missing value")
            row.append(label)
        if problem is not None:
            dropped.append(line)
            first_problem = first_problem or (line, *problem)
            continue
        values.append(row)

    if dropped and not drop_missing:
        line, column, why = first_problem
        others = f" ({len(dropped)} rows have such values)" if len(dropped) > 1 else ""
        raise DataError(
            f"{name}, line {line}, column {column!r}: {why}{others}; drop such rows "
            "with --drop-missing (drop_missing=True in Python)"
        )
    if not values:
        raise DataError(f"{name}: every row has a missing or non-numeric value, none is left")

    dtype = _float(dtype)
    k = len(feature_names)
    data = np.array([row[:k] for row in values], dtype=np.float64).astype(dtype)
    classes = y = None
    if target is not None and task == "regression":
        y = Tensor(np.array([row[k] for row in values], dtype=np.float64).astype(dtype))
    elif target is not None:
        labels = [row[k] for row in values]
        classes = sorted_labels(set(labels))
        position = {c: i for i, c in enumerate(classes)}
        y = Tensor(np.array([position[c] for c in labels], dtype=np.int64))
    table = Table(
        Tensor(data), y, feature_names, target, classes, dropped, description=f"read from {name}"
    )
    return _finish(table, return_X_y)


def sorted_labels(labels):
    """Class labels in a stable order: numerically when all are numbers (so '10' follows '9')."""
    numbers = {label: parse_number(label)[0] for label in labels}
    if all(v is not None for v in numbers.values()):
        return sorted(labels, key=lambda label: (numbers[label], label))
    return sorted(labels)


# ---- scikit-learn's bundled data sets ---------------------------------------------------------


def _from_sklearn(loader, classification, dtype, return_X_y):
    bunch = loader()
    data = Tensor(np.asarray(bunch.data).astype(_float(dtype)))
    if classification:
        target = Tensor(np.asarray(bunch.target).astype(np.int64))
        classes = [str(c) for c in bunch.target_names]
    else:
        target = Tensor(np.asarray(bunch.target).astype(_float(dtype)))
        classes = None
    names = [str(n) for n in bunch.feature_names]
    table = Table(data, target, names, "target", classes, description=bunch.DESCR)
    return _finish(table, return_X_y)


def load_digits(dtype=None, return_X_y=False):
    """8x8 images of handwritten digits: 1797 rows, 64 pixel features (0-16), 10 classes."""
    from sklearn.datasets import load_digits as loader

    return _from_sklearn(loader, True, dtype, return_X_y)


def load_iris(dtype=None, return_X_y=False):
    """Fisher's iris flowers: 150 rows, 4 measurements, 3 species."""
    from sklearn.datasets import load_iris as loader

    return _from_sklearn(loader, True, dtype, return_X_y)


def load_wine(dtype=None, return_X_y=False):
    """Wine from three cultivars: 178 rows, 13 chemical measurements, 3 classes."""
    from sklearn.datasets import load_wine as loader

    return _from_sklearn(loader, True, dtype, return_X_y)


def load_breast_cancer(dtype=None, return_X_y=False):
    """Breast tumour measurements: 569 rows, 30 features, 2 classes (malignant, benign)."""
    from sklearn.datasets import load_breast_cancer as loader

    return _from_sklearn(loader, True, dtype, return_X_y)


def load_diabetes(dtype=None, return_X_y=False):
    """Diabetes progression: 442 rows, 10 (already scaled) features, a continuous target."""
    from sklearn.datasets import load_diabetes as loader

    return _from_sklearn(loader, False, dtype, return_X_y)
