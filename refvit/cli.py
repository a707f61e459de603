"""The ``refvit`` command (also ``python -m refvit``).

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run_from_args(args) -> exit code``.

Exit status and messages:

* ``0``: done.
* ``2``: a mistake the user can fix (a bad flag, a damaged or missing file, a wrong
  folder, a full disk): one line ``refvit COMMAND: error: MESSAGE`` on stderr, never a
  traceback. These are :class:`refvit.errors.UserError`, the operating system's errors
  about a named file (:func:`refvit.errors.user_message`), and argparse's own errors.
* ``1``: anything else, which is a bug in refvit: the traceback, then a line saying how
  to report it.
* ``130``: interrupted with Ctrl-C.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from refvit.errors import user_message

# subcommand -> (module, one-line help)
COMMANDS = {
    "check": ("refvit.check", "gradient checks of every op on every available backend"),
    "bench": ("refvit.bench.runner", "time ops x backends, forward and backward"),
    "train": ("refvit.train.commands.train", "train a model on digits, shapes or .npz images (no PyTorch)"),
    "eval": ("refvit.train.commands.evaluate", "test accuracy of a checkpoint written by refvit train"),
    "models": ("refvit.train.commands.models", "the registered models: parameters and input size"),
    "export": ("refvit.train.commands.export", "a checkpoint's weights as a .safetensors, .npz or .pth file"),
    "predict": ("refvit.train.commands.predict", "top-k classes of a trained model for your own images"),
    "conform": ("refvit.train.commands.conform", "check your own implementation of an op against refvit"),
}

BUG_REPORT = ("this is a bug in refvit; please report it with the command line and the traceback above "
              "(refvit {version}, Python {python})")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``refvit train: error: MESSAGE (see refvit train --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(prog="refvit", description="refvit: reference vision-transformer ops")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def report(command, error):
    """Print ``error`` the way the command line shows it; return the exit status (2 or 1)."""
    message = user_message(error)
    if message is not None:
        prefix = f"{command}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        message = " ".join(message.split())  # one line
        print(f"refvit {command}: error: {message}", file=sys.stderr)
        return 2
    from refvit import __version__

    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    python = ".".join(map(str, sys.version_info[:3]))
    print(f"refvit {command}: {BUG_REPORT.format(version=__version__, python=python)}", file=sys.stderr)
    return 1


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or argparse's one-line error (2): a status, also in-process
        return stop.code
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return module.run_from_args(args)
    except KeyboardInterrupt:
        print(f"refvit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every error is either the user's (2) or a bug (1)
        return report(args.command, error)


if __name__ == "__main__":
    sys.exit(main())
