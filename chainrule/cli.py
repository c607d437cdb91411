"""The `chainrule` command line."""

import argparse
import sys


def _demo(args):
    from .lesson import run_b3_descent

    run_b3_descent()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="chainrule", description="Backpropagation that shows its work.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="reproduce the lesson: fit b3 by gradient descent")
    args = parser.parse_args(argv)
    return {"demo": _demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
