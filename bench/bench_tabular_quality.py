"""How good `chainrule fit` is with its defaults, on tables no one here tuned for.

Each data set ships with a package (scikit-learn; palmerpenguins and statsmodels where they are
installed) and is written to a CSV file as a user would have it: text columns as text, missing
cells empty. A quarter of the rows is held out as the test split (stratified for classification),
and every model is fitted on the other three quarters and scored on the held-out quarter, which
none of them sees while fitting (early stopping uses a validation split carved out of the
training rows):

- `chainrule fit`: the command line itself (`cli.main(["fit", train.csv, "--target", ...])` with
  its defaults, so its own 20% validation split and early stopping), then the saved model loaded
  back with `TabularModel.load` and scored on the test CSV.
- `chainrule.sklearn` MLP: the scikit-learn estimator backed by chainrule, with scikit-learn's
  defaults (it has no early stopping).
- scikit-learn's `MLPRegressor`/`MLPClassifier` with its defaults plus `early_stopping=True` on
  the same 20% validation fraction, and `max_iter=500` (the CLI's epoch limit).
- a linear baseline: `Ridge` / `LogisticRegression`.

The regressors are fitted to the standardised target (`TransformedTargetRegressor`), as `chainrule
fit` fits its network: without that scikit-learn's MLPRegressor scores far worse on targets in
the hundreds (diabetes, grunfeld), and the comparison would flatter chainrule.

The estimators get their inputs from one scikit-learn `ColumnTransformer` learned on the training
split (numbers standardised, missing numbers imputed with the mean; text one-hot encoded, a
missing text cell a category of its own): the preprocessing `chainrule fit` does itself. Every
configuration is run with several seeds (the seed draws the test split and seeds every model);
the table shows the mean (and standard deviation) of the held-out score, R2 or accuracy, and the
mean fit time in CPU seconds with BLAS held to one thread (wall-clock times on a shared machine
swing with other load).

    .venv/bin/python bench/bench_tabular_quality.py [--seeds 5] [--only NAME,...]
"""

import argparse
import importlib
import importlib.util
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn.datasets
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

import chainrule.sklearn
from chainrule import cli, tabular

VALIDATION_FRACTION = cli.TABLE_DEFAULTS["val_fraction"]
TEST_FRACTION = 0.25


def _scikit_learn(name, target):
    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.rename(columns={"target": target})
    if name in ("breast_cancer", "wine", "digits"):
        # Class labels as text, as a user's file would have them ("malignant", "class_0", ...).
        frame[target] = np.asarray(bunch.target_names)[bunch.target]
    return frame


def _penguins():
    import palmerpenguins

    return palmerpenguins.load_penguins()


def _statsmodels(name):
    module = importlib.import_module(f"statsmodels.datasets.{name}")
    return module.load_pandas().data


# name, source package, loader, target column, task
DATA_SETS = [
    ("diabetes", "sklearn", lambda: _scikit_learn("diabetes", "progression"), "progression",
     "regression"),
    ("breast_cancer", "sklearn", lambda: _scikit_learn("breast_cancer", "diagnosis"), "diagnosis",
     "classification"),
    ("wine", "sklearn", lambda: _scikit_learn("wine", "cultivar"), "cultivar", "classification"),
    ("digits", "sklearn", lambda: _scikit_learn("digits", "digit"), "digit", "classification"),
    ("penguins species", "palmerpenguins", _penguins, "species", "classification"),
    ("penguins body mass", "palmerpenguins", _penguins, "body_mass_g", "regression"),
    ("grunfeld", "statsmodels", lambda: _statsmodels("grunfeld"), "invest", "regression"),
    ("fair (affairs)", "statsmodels", lambda: _statsmodels("fair"), "affairs", "regression"),
]  # fmt: skip


def available(source):
    return source == "sklearn" or importlib.util.find_spec(source) is not None


def preprocessing(features):
    """The transformer `chainrule fit` builds for itself, for the scikit-learn estimators."""
    texts = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    numbers = [c for c in features.columns if c not in texts]
    encode = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=tabular.MISSING_CATEGORY),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    scale = make_pipeline(StandardScaler(), SimpleImputer(strategy="constant", fill_value=0.0))
    return ColumnTransformer([("numbers", scale, numbers), ("text", encode, texts)])


def scaled_target(regressor):
    """The regressor fitted to the standardised target, as `chainrule fit` fits its network."""
    return TransformedTargetRegressor(regressor, transformer=StandardScaler())


def estimators(task, seed):
    if task == "regression":
        return {
            "linear": Ridge(),
            "sklearn MLP": scaled_target(MLPRegressor(
                early_stopping=True, validation_fraction=VALIDATION_FRACTION, max_iter=500,
                random_state=seed,
            )),
            "chainrule.sklearn MLP": scaled_target(
                chainrule.sklearn.MLPRegressor(random_state=seed)
            ),
        }  # fmt: skip
    return {
        "linear": LogisticRegression(max_iter=5000),
        "sklearn MLP": MLPClassifier(
            early_stopping=True, validation_fraction=VALIDATION_FRACTION, max_iter=500,
            random_state=seed,
        ),
        "chainrule.sklearn MLP": chainrule.sklearn.MLPClassifier(random_state=seed),
    }  # fmt: skip


def fit_with_cli(train, test, target, seed, folder):
    """`chainrule fit` on the training CSV with its defaults; the saved model scored on the test
    CSV. Returns (score, CPU seconds of the fit)."""
    train_csv, test_csv, model_path = folder / "train.csv", folder / "test.csv", folder / "m.st"
    train.to_csv(train_csv, index=False)
    test.to_csv(test_csv, index=False)
    argv = ["fit", str(train_csv), "--target", target, "--out", str(model_path)]
    argv += ["--seed", str(seed), "--no-progress"]
    start = time.process_time()
    status = cli.main(argv, echo=lambda *_: None)
    seconds = time.process_time() - start
    if status != 0:
        raise SystemExit(f"chainrule fit {' '.join(argv[1:])} failed with status {status}")
    model = tabular.TabularModel.load(model_path)
    metrics = tabular.score(model, model.read(test_csv, with_target=True))
    return metrics["accuracy" if model.classification else "R2"], seconds


def run_one(frame, target, task, seed, folder):
    """{model: (held-out score, CPU seconds)} for one seed's test split of a frame whose rows all
    have a target value."""
    stratify = frame[target] if task == "classification" else None
    train, test = train_test_split(
        frame, test_size=TEST_FRACTION, random_state=seed, stratify=stratify
    )
    results = {"chainrule fit": fit_with_cli(train, test, target, seed, folder)}
    x_train, y_train = train.drop(columns=[target]), train[target].to_numpy()
    x_test, y_test = test.drop(columns=[target]), test[target].to_numpy()
    if task == "regression":
        y_train, y_test = y_train.astype(np.float64), y_test.astype(np.float64)
    for name, estimator in estimators(task, seed).items():
        pipeline = make_pipeline(preprocessing(x_train), estimator)
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(x_train, y_train)
        seconds = time.process_time() - start
        results[name] = (pipeline.score(x_test, y_test), seconds)
    return results


MODELS = ("chainrule fit", "chainrule.sklearn MLP", "sklearn MLP", "linear")


def run(seeds, only):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, load, target, task in DATA_SETS:
            if (only and name not in only) or not available(source):
                if not available(source):
                    print(f"({name}: {source} is not installed, skipped)")
                continue
            frame = load().dropna(subset=[target])
            scores = {m: [] for m in MODELS}
            seconds = {m: [] for m in MODELS}
            for seed in range(seeds):
                for model, (score, cpu) in run_one(frame, target, task, seed, Path(tmp)).items():
                    scores[model].append(score)
                    seconds[model].append(cpu)
            features = frame.drop(columns=[target])
            texts = sum(not pd.api.types.is_numeric_dtype(features[c]) for c in features)
            shape = f"{len(frame)} x {features.shape[1]}" + (f" ({texts} text)" if texts else "")
            missing = int(features.isna().sum().sum())
            rows.append((name, source, shape, missing, task, scores, seconds))
            print(f"({name} done)", flush=True)
    return rows


def table(rows, seeds):
    header = (
        "| data set | from | rows x columns | missing cells | metric | "
        + " | ".join(MODELS)
        + " | fit − sklearn MLP | fit − linear | fit CPU s (same order) |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for name, source, shape, missing, task, scores, seconds in rows:
        metric = "R2" if task == "regression" else "accuracy"
        cells = [f"{np.mean(scores[m]):.3f} ± {np.std(scores[m]):.3f}" for m in MODELS]
        ours = np.mean(scores["chainrule fit"])
        cells += [f"{ours - np.mean(scores[m]):+.3f}" for m in ("sklearn MLP", "linear")]
        times = " / ".join(f"{np.mean(seconds[m]):.2f}" for m in MODELS)
        lines.append(
            f"| {name} | {source} | {shape} | {missing} | {metric} | "
            + " | ".join(cells)
            + f" | {times} |"
        )
    lines.append(
        f"\n(held-out quarter of the rows, mean ± standard deviation over {seeds} seeds, each "
        "seed its own test split; fit times: mean CPU seconds per fit, one BLAS thread)"
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", type=lambda s: s.split(","), default=None)
    args = parser.parse_args()
    with threadpool_limits(1):
        rows = run(args.seeds, args.only)
    print(table(rows, args.seeds))


if __name__ == "__main__":
    main()
