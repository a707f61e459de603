"""``refvit check``: gradient checks of every op on every available backend.

For each op of the op table (:func:`refvit.ops.table`), its ``example(rng)`` inputs are run through
:func:`refvit.testing.gradcheck` (float64 central differences) on each backend,
and the ``cpu``/``cuda`` backends are compared with the ``numpy`` reference in
float32. The result is a table of the largest relative gradient error per op and
backend; the command fails if any check fails.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from refvit import ops
from refvit.backend import cuda_available
from refvit.errors import UserError
from refvit.testing import check_backends, gradcheck

FLOAT32_TOLERANCE = dict(rtol=2e-4, atol=2e-5)


def check_op(name, backend, seed=0):
    """Return (ok, text) for one op on one backend."""
    spec = ops.spec(name)
    op = spec.module
    args, kwargs = spec.example(np.random.default_rng(seed))
    # The upstream gradient is drawn from another stream than the inputs: with the same seed
    # it would equal the input, a special direction that hides errors (e.g. in layer_norm).
    gradient_seed = seed + 1
    try:
        errors = gradcheck(op, args, kwargs, backend=backend, seed=gradient_seed)
        if backend != "numpy":
            check_backends(op, args, kwargs, backend=backend, dtype=np.float32, seed=gradient_seed,
                           **FLOAT32_TOLERANCE)
    except (AssertionError, ValueError, TypeError, RuntimeError) as error:
        return False, f"FAIL: {type(error).__name__}: {str(error).splitlines()[0]}"
    worst = max(errors.values(), default=0.0)
    return True, f"ok {worst:.1e}"


def run(op_names=None, backends=None, out=None):
    """Check the ops; print the table; return True when every check passed."""
    out = out or sys.stdout
    known = [spec.name for spec in ops.table()]
    names = op_names or known
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UserError(f"check: unknown op(s) {', '.join(unknown)}; ops are: {', '.join(known)}")
    backends = backends or ["numpy", "cpu"] + (["cuda"] if cuda_available() else [])
    width = max(len(n) for n in names) + 2
    print(f"{'op':<{width}}" + "".join(f"{b:<16}" for b in backends), file=out)
    all_ok = True
    failures = []
    start = time.perf_counter()
    for name in names:
        cells = []
        for backend in backends:
            ok, text = check_op(name, backend)
            all_ok &= ok
            if not ok:
                failures.append(f"{name} [{backend}] {text}")
                text = "FAIL"
            cells.append(text)
        print(f"{name:<{width}}" + "".join(f"{c:<16}" for c in cells), file=out, flush=True)
    print(f"\n{len(names)} ops x {len(backends)} backends checked in {time.perf_counter() - start:.1f} s; "
          "cells give the largest relative gradient error (float64 central differences); "
          "cpu/cuda also match numpy in float32.", file=out)
    for line in failures:
        print(line, file=out)
    print("all checks passed" if all_ok else f"{len(failures)} check(s) failed", file=out)
    return all_ok


def add_arguments(parser):
    parser.add_argument("ops", nargs="*", help="op names (default: all)")
    parser.add_argument("--backends", help="comma-separated subset of numpy,cpu,cuda (default: all available)")


def run_from_args(args):
    backends = None
    if args.backends:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        bad = [b for b in backends if b not in ("numpy", "cpu", "cuda")]
        if bad:
            raise UserError(f"check: '--backends' must name numpy, cpu or cuda; got {', '.join(bad)}")
    return 0 if run(args.ops, backends) else 1
