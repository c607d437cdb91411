"""The `chainrule` command line: fit a network to a CSV table, predict with it, explain it, and
replay the lesson. The work is done by `chainrule.tabular`; this module parses arguments, checks
the paths and prints.

Every problem a user can cause ends in one line on stderr and exit status 2, never a traceback or
a raw warning; every file is written to a temporary name beside its target and renamed into
place, and a command that fails says which of its outputs, if any, it had already written.
"""

import argparse
import csv
import io
import math
import os
import sys
import textwrap
import warnings
from types import SimpleNamespace

from . import __version__, lesson, tabular
from .datasets import DataError
from .io import atomic_write

EXIT_USAGE = 2

# What `chainrule fit` uses unless told otherwise: for a table, and for the lesson's three points.
TABLE_DEFAULTS = dict(
    hidden=[64, 32], activation="relu", lr=1e-3, epochs=500, val_fraction=0.2, patience=20
)
LESSON_DEFAULTS = dict(
    hidden=[2], activation="softplus", loss="ssr", lr=0.1, epochs=1000, val_fraction=0.0
)


class CLIError(Exception):
    """A problem the user can fix, reported as one line and exit status 2."""


def check_output_path(path, what, inputs=()):
    """Refuse, before any work, an output path that is an input file, a folder, or in a folder
    that does not exist."""
    for given in inputs:
        if given is not None and os.path.exists(path) and os.path.samefile(path, given):
            raise CLIError(
                f"cannot write the {what} to {path}: that is an input file, which this would "
                "overwrite"
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


def _bytes_writer(data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return write


def load_model(path):
    return tabular.TabularModel.load(path)


# ---- fit ----------------------------------------------------------------------------------------


def plot_path(model_path):
    return os.path.splitext(model_path)[0] + ".loss.png"


def _training_frame(args):
    if args.data is None:
        return tabular.dosage_frame(), "regression"
    features = args.features.split(",") if args.features else None
    return tabular.read_frame(args.data, args.target, features, None, args.drop_missing, args.task)


def cmd_fit(args, echo):
    if args.data is not None and args.target is None:
        raise CLIError("fitting a CSV file needs --target COLUMN (the column to predict)")
    if args.data is None and (args.target or args.features):
        raise CLIError("--target and --features need a DATA.csv file")
    if args.data is None and args.task == "classification":
        raise CLIError("the lesson's dosage data is a regression; give a DATA.csv file to classify")
    plot = plot_path(args.out)
    check_output_path(args.out, "model", [args.data])
    check_output_path(plot, "loss plot", [args.data])
    defaults = LESSON_DEFAULTS if args.data is None else TABLE_DEFAULTS
    options = {
        k: getattr(args, k) if getattr(args, k) is not None else v
        for k, v in {**TABLE_DEFAULTS, **defaults, "loss": defaults.get("loss")}.items()
    }
    if args.max_steps and args.epochs is None:
        options["epochs"] = None
    frame, task = _training_frame(args)
    result = tabular.fit(
        frame,
        task,
        optimizer=args.optimizer,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False if args.no_progress else None,
        **options,
    )
    model = result.model
    png = model.loss_plot_png()
    model.save(args.out)
    try:
        atomic_write(plot, _bytes_writer(png))
    except OSError as e:
        raise CLIError(
            f"the model was written to {args.out}, but the loss plot {plot} could not be "
            f"written ({e.strerror or e})"
        ) from None
    for line in result.summary(frame.dropped):
        echo(line)
    echo(f"model written to {args.out}")
    echo(f"loss plot written to {plot}")
    return 0


# ---- predict and explain ------------------------------------------------------------------------


def cmd_predict(args, echo):
    model = load_model(args.model)
    if args.out:
        check_output_path(args.out, "predictions", [args.model, args.data])
    header, rows = model.prediction_table(model.read(args.data, args.drop_missing))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if args.out:
        write_atomic(args.out, _bytes_writer(buffer.getvalue().encode()), "predictions")
        echo(f"{len(rows)} predictions of {model.spec['target']!r} written to {args.out}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0


def cmd_explain(args, echo):
    from . import explain

    model = load_model(args.model)
    check_output_path(args.out, "report", [args.model, args.data])
    spec = model.spec
    if args.data is not None:
        frame = model.read(args.data, args.drop_missing, with_target=True)
    elif spec["data"] == "dosage":
        frame = tabular.dosage_frame()
    else:
        raise CLIError(
            f"{args.model} was fitted on {spec['data']}: give that (or a similar) CSV file to "
            "explain the model on"
        )
    inputs, targets = model.tensors(frame)
    val = model.history.get("val_loss")
    history = SimpleNamespace(
        step_loss=None,
        epoch_loss=[float(v) for v in model.history.get("train_loss", ())],
        metrics={} if val is None else {"held-out loss": [float(v) for v in val]},
    )
    sample = min(args.sample, len(frame.rows) - 1)
    title = f"chainrule explain: {spec['target']} from {', '.join(spec['features'])}"[:120]
    write_atomic(
        args.out,
        lambda tmp: explain.model_report(
            model.network,
            inputs,
            targets,
            tabular.LOSSES[spec["loss"]](),
            tmp,
            history=history,
            sample=sample,
            title=title,
        ),
        "report",
    )
    echo(f"report on row {sample + 1} of {len(frame.rows)} written to {args.out}")
    return 0


def cmd_demo(args, echo):
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(
            f"cannot write the demo's pictures to {args.out}: it is a file, not a folder"
        )
    lesson.run_demo(out_dir=args.out, echo=echo)
    return 0


# ---- the parser ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line that points to --help (not the whole usage)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, low, low_included=False, high=None):
    """An argparse type: a `kind` number above `low` (or equal, if included) and below `high`."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        ok = value >= low if low_included else value > low
        if not ok or (high is not None and not value < high) or not math.isfinite(value):
            bounds = f"{'>=' if low_included else '>'} {low}" + (f" and < {high}" if high else "")
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return parse


def _hidden(text):
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of layer sizes (write e.g. 2 or 64,32)"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be at least 1, got {text!r}")
    return sizes


def _row_number(text):
    return _number(int, 1, low_included=True)(text) - 1


def _text(paragraph):
    return textwrap.fill(" ".join(paragraph.split()), width=78)


def _command(sub, name, summary, description):
    return sub.add_parser(
        name,
        help=summary,
        description=_text(description),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _options(parser, rows):
    """Add options from rows of (flag, type or choices or action, metavar, help[, default])."""
    for flag, kind, metavar, help_text, *default in rows:
        if kind == "flag":
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        how = {"choices": kind} if isinstance(kind, list | tuple | dict) else {"type": kind}
        if kind is not None and not isinstance(kind, list | tuple | dict):
            how["metavar"] = metavar
        parser.add_argument(flag, help=help_text, default=(default or [None])[0], **how)


def build_parser():
    t, s = TABLE_DEFAULTS, LESSON_DEFAULTS
    parser = _Parser(
        prog="chainrule",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_text(
            "Backpropagation that shows its work: fit a small neural network to a CSV table, "
            "predict with it, explain it, or replay the lesson."
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
    positive_int, positive = _number(int, 0), _number(float, 0)
    counting = _number(int, 0, low_included=True)
    hidden = ",".join(map(str, t["hidden"]))
    activations = [a for a in tabular.ACTIVATIONS if a != "logistic"]

    fit = _command(sub, "fit", "fit a network to a CSV table", FIT_DESCRIPTION)
    fit.add_argument("data", nargs="?", metavar="DATA.csv", help="the table (omit: the lesson's)")
    _options(fit, [
        ("--target", str, "COL", "the column to predict"),
        ("--features", str, "COL,COL", "input columns (default: all others)"),
        ("--hidden", _hidden, "N[,N...]", f"hidden layer sizes (default: {hidden}; lesson: 2)"),
        ("--activation", activations, None, f"default: {t['activation']}; lesson: softplus"),
        ("--loss", tabular.LOSSES, None, "default: mse, or cross-entropy to classify; lesson: ssr"),
        ("--task", ("regression", "classification"), None, "override the task the target implies"),
        ("--optimizer", tabular.OPTIMIZERS, None, "default: adam", "adam"),
        ("--lr", positive, "RATE", f"learning rate (default: {t['lr']}; lesson: {s['lr']})"),
        ("--epochs", positive_int, "N", f"at most N passes (default: {t['epochs']}; lesson: 1000)"),
        ("--max-steps", positive_int, "N", "stop after this many updates"),
        ("--patience", counting, "N",
         f"stop after N epochs without a better held-out loss (default: {t['patience']})"),
        ("--batch-size", positive_int, "N", "rows per update (default: 32)", 32),
        ("--val-fraction", _number(float, 0, low_included=True, high=1), "F",
         f"share of rows held out (default: {t['val_fraction']}; lesson: 0)"),
        ("--seed", counting, "N", "seed of the split, initialisation, shuffling (default: 0)", 0),
        ("--out", str, "MODEL", "the model file (default: model.safetensors); the loss plot goes "
         "beside it, named like MODEL with .loss.png for its suffix", "model.safetensors"),
        ("--drop-missing", "flag", None, "drop rows with missing values instead of imputing"),
        ("--no-progress", "flag", None, "no progress bar"),
    ])  # fmt: skip

    predict = _command(sub, "predict", "predict with a fitted model", PREDICT_DESCRIPTION)
    predict.add_argument("model", metavar="MODEL", help="a model file written by chainrule fit")
    predict.add_argument("data", metavar="DATA.csv")
    _options(predict, [("--out", str, "PREDS.csv", "write here instead of stdout")])
    explain = _command(
        sub, "explain", "write an HTML report on a fitted model", EXPLAIN_DESCRIPTION
    )
    explain.add_argument("model", metavar="MODEL")
    explain.add_argument("data", nargs="?", metavar="DATA.csv")
    _options(explain, [
        ("--out", str, "REPORT.html", "the report (default: report.html)", "report.html"),
        ("--sample", _row_number, "ROW", "the row (1 = first) whose loss it explains", "1"),
    ])  # fmt: skip
    for command in (predict, explain):
        _options(command, [("--drop-missing", "flag", None, "skip rows with missing values")])
    demo = _command(sub, "demo", "reproduce the lesson end to end", DEMO_DESCRIPTION)
    _options(demo, [("--out", str, "DIR", "picture folder (default: chainrule-demo)",
                     "chainrule-demo")])  # fmt: skip
    return parser


FIT_DESCRIPTION = """Fit a neural network to the columns of a CSV file (header line first).
Number columns are standardized, text columns one-hot encoded, missing cells imputed (numbers: the
mean; text: a category of its own) unless --drop-missing; scikit-learn's transformers learn this
on the training split and the model file keeps what they learned. A target of text labels, or of
a few whole numbers, is a classification. Training stops once the held-out loss has not improved
for --patience epochs, and keeps the best weights. Without DATA it fits the lesson's dosage
data."""
PREDICT_DESCRIPTION = """Predict the target for each row of a CSV file that has the model's
feature columns, written as CSV (to stdout unless --out). Classification adds one probability
column per class."""
EXPLAIN_DESCRIPTION = """Write a self-contained HTML report showing how backpropagation computes
the model's gradients on DATA (required unless the model was fitted on the lesson's data)."""
DEMO_DESCRIPTION = """Replay the lesson: every number it quotes, the chain rule for all seven
parameters (the lesson's next chapter), all seven trained from scratch, the slides' two-input model,
and the multiplications backpropagation saves, with its pictures and report written to --out."""


COMMANDS = {"fit": cmd_fit, "predict": cmd_predict, "explain": cmd_explain, "demo": cmd_demo}


def main(argv=None, echo=print):
    args = build_parser().parse_args(argv)
    try:
        # Every command checks the results NumPy and matplotlib would warn about, and says what
        # went wrong in its one line; their raw warnings would only bury it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return COMMANDS[args.command](args, echo)
    except (CLIError, DataError, tabular.TabularError) as e:
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
