"""chainrule.sklearn's MLPs beside scikit-learn's, on the data sets that ship with scikit-learn.

Same architecture, hyperparameters and stopping rule for both; fixed splits (a quarter held out,
stratified for classification, random_state=0) with features standardized on the training split.
Each configuration is fitted with several seeds, alternating the two libraries so that machine
load hits both alike; the table shows the mean held-out score (accuracy or R2), the mean epochs
run, and the fit times (the sum over the seeds) with their ratio. Times are the process's CPU
seconds with BLAS held to one thread for both libraries: on a shared machine wall-clock times of
multi-threaded BLAS swing by factors of several with other load, and CPU time of one thread does
not.

    .venv/bin/python bench/bench_sklearn.py [--seeds 5]
"""

import argparse
import time
import warnings

import numpy as np
import sklearn.datasets
import sklearn.neural_network
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import chainrule.sklearn

# name, classification?, hyperparameters shared by both estimators
CONFIGS = [
    ("digits", True, {"hidden_layer_sizes": (100,), "max_iter": 200}),
    ("iris", True, {"hidden_layer_sizes": (16,), "max_iter": 500, "learning_rate_init": 0.01}),
    ("wine", True, {"hidden_layer_sizes": (16,), "max_iter": 300, "learning_rate_init": 0.01}),
    ("breast_cancer", True, {"hidden_layer_sizes": (32,), "max_iter": 200}),
    (
        "diabetes",
        False,
        {"hidden_layer_sizes": (16,), "max_iter": 1000, "learning_rate_init": 0.01},
    ),
]


def split(name, classification):
    x, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y if classification else None
    )
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test), y_train, y_test


def timed_fit(estimator, x, y):
    start = time.process_time()
    estimator.fit(x, y)
    return time.process_time() - start


def run(seeds):
    rows = []
    for name, classification, params in CONFIGS:
        x_train, x_test, y_train, y_test = split(name, classification)
        kind = "Classifier" if classification else "Regressor"
        libraries = {
            "sklearn": getattr(sklearn.neural_network, f"MLP{kind}"),
            "chainrule": getattr(chainrule.sklearn, f"MLP{kind}"),
        }
        results = {lib: {"score": [], "time": 0.0, "epochs": []} for lib in libraries}
        for seed in range(seeds):
            order = list(libraries) if seed % 2 == 0 else list(reversed(libraries))
            for lib in order:
                estimator = libraries[lib](random_state=seed, **params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    results[lib]["time"] += timed_fit(estimator, x_train, y_train)
                results[lib]["score"].append(estimator.score(x_test, y_test))
                results[lib]["epochs"].append(estimator.n_iter_)
        rows.append((name, "accuracy" if classification else "R2", params, results))
    return rows


def table(rows, seeds):
    header = (
        "| data set | metric | hidden | sklearn score | chainrule score | sklearn epochs | "
        "chainrule epochs | sklearn fit s | chainrule fit s | chainrule/sklearn time |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for name, metric, params, results in rows:
        s, c = results["sklearn"], results["chainrule"]
        lines.append(
            f"| {name} | {metric} | {params['hidden_layer_sizes']} | {np.mean(s['score']):.4f} "
            f"| {np.mean(c['score']):.4f} | {np.mean(s['epochs']):.0f} "
            f"| {np.mean(c['epochs']):.0f} | {s['time']:.2f} | {c['time']:.2f} "
            f"| {c['time'] / s['time']:.2f}x |"
        )
    lines.append(
        f"\n(means over {seeds} seeds; fit times: CPU seconds, one BLAS thread, "
        "summed over the seeds)"
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    with threadpool_limits(1):
        rows = run(args.seeds)
    print(table(rows, args.seeds))


if __name__ == "__main__":
    main()
