"""The ``refvit`` command (also ``python -m refvit``).

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run_from_args(args) -> exit code``. Errors a user can fix (unknown names, bad
values, missing files) print one line and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS = {
    "check": ("refvit.check", "gradient checks of every op on every available backend"),
    "bench": ("refvit.bench.runner", "time ops x backends, forward and backward"),
    "train": ("refvit.train.commands.train", "train a model on digits, shapes or .npz images (no PyTorch)"),
    "eval": ("refvit.train.commands.evaluate", "test accuracy of a checkpoint written by refvit train"),
    "models": ("refvit.train.commands.models", "the registered models: parameters and input size"),
}

USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError, RuntimeError)


def build_parser():
    parser = argparse.ArgumentParser(prog="refvit", description="refvit: reference vision-transformer ops")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return module.run_from_args(args)
    except USER_ERRORS as error:
        message = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
        prefix = f"{args.command}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        print(f"refvit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"refvit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
