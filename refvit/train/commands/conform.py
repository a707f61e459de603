"""``refvit conform MODULE:FUNCTION --op na2d``: check your own implementation of an op against refvit.

Prints the report of :mod:`refvit.testing.conformance` (a table of the cases, then every failing
case with its largest error and where it sits). Exit status: 0 when every case passes, 1 when one
differs, 2 for a mistake in the command (a module that does not import, a name it does not have,
an unknown op, layout or case).
"""
from __future__ import annotations

import importlib
import os
import sys

COMMAND = "conform"
# the ops of refvit.testing.conformance.CHECKS (listed here so that building the parser imports nothing)
OPS = ("attention", "batch_norm", "conv2d", "layer_norm", "multiscale_dwconv", "na1d", "na2d",
       "relative_position_bias", "stripe_attention")


def add_arguments(parser):
    parser.add_argument("target", metavar="MODULE:FUNCTION", help="your function, e.g. natten.functional:na2d")
    parser.add_argument("--op", required=True, choices=OPS, help="the op family it implements")
    parser.add_argument("--layout", help="argument names and axis order (default: refvit's; na1d/na2d also take "
                        "natten, attention/stripe_attention heads_last, conv2d/multiscale_dwconv nchw, "
                        "layer_norm/batch_norm torch)")
    parser.add_argument("--framework", choices=("numpy", "torch"), default="numpy",
                        help="arrays the function takes; torch: gradients from torch autograd (default numpy)")
    parser.add_argument("--cases", default="standard",
                        help="standard, random, standard+random, or case names separated by commas")
    parser.add_argument("--random", type=int, default=None, metavar="N", help="how many random cases to draw")
    parser.add_argument("--exclude", action="append", default=[], metavar="FEATURE",
                        help="leave out the cases using FEATURE (rpb, stride, causal, dilation, float32, ...)")
    parser.add_argument("--dtype", choices=("float32", "float64"),
                        help="run every case in this dtype (default: each case's own; most are float64)")
    parser.add_argument("--head-dim", type=int, metavar="D", help="na1d/na2d: the size of each head (default 3)")
    parser.add_argument("--forward-only", action="store_true", help="compare outputs only, no gradients")
    parser.add_argument("--backward-fn", metavar="MODULE:FUNCTION",
                        help="your backward: backward_fn(dout, *args, **kwargs) -> gradients")
    parser.add_argument("--save-reproducers", metavar="DIR", help="write each failing case's .npz and .py here")


def load(target, what="MODULE:FUNCTION"):
    """The function named ``target`` (``module.path:function``); :class:`UserError` when there is none."""
    from refvit.errors import UserError

    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise UserError(f"{COMMAND}: {what} must look like package.module:function; got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"{COMMAND}: cannot import {module_name!r}: {error}") from None
    fn = module
    for part in name.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise UserError(f"{COMMAND}: module {module_name!r} has no {name!r}")
    if not callable(fn):
        raise UserError(f"{COMMAND}: {target} is not a function")
    return fn


def run_from_args(args):
    from refvit.errors import UserError
    from refvit.testing.conformance import CHECKS, FAMILIES

    fn = load(args.target)
    backward_fn = load(args.backward_fn, "--backward-fn") if args.backward_fn else None
    family = FAMILIES[args.op]
    layout = args.layout or next(iter(family.layouts))
    cases = args.cases if "," not in args.cases and args.cases in ("standard", "random", "standard+random") \
        else [name.strip() for name in args.cases.split(",") if name.strip()]
    extra = {}
    if args.head_dim is not None:
        if args.op not in ("na1d", "na2d") or args.head_dim < 1:
            raise UserError(f"{COMMAND}: --head-dim takes a positive size and is for --op na1d or na2d")
        extra["head_dim"] = args.head_dim
    try:
        report = CHECKS[args.op](fn, layout=layout, framework=args.framework, backward=not args.forward_only,
                                 cases=cases, backward_fn=backward_fn, random=args.random, exclude=args.exclude,
                                 dtype=args.dtype, **extra)
    except (ValueError, ImportError) as error:
        raise UserError(f"{COMMAND}: {error}") from None
    print(report)
    if args.save_reproducers and report.failures:
        scripts = report.save_reproducers(args.save_reproducers)
        print(f"reproducers: {len(scripts)} written to {args.save_reproducers}")
    return 0 if report.passed else 1
