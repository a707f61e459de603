"""Every op's ``cuda`` kernels once, forward and backward, each result compared with the ``numpy`` reference.

``python -m refvit.testing.cuda_smoke [--only OP,OP] [--dtype float32|float64] [--json PATH]``

The cases are every op's ``example`` inputs from the op table (:mod:`refvit.ops._table`) and a few
larger ones that give the kernels with shared memory or atomics several blocks and ragged edges:
the tiled matmul of ``linear`` (shared tiles), the weight gradients of ``conv2d`` and its depthwise
path (lane sums in shared memory), ``attention``'s bias gradient (``cuda.atomic.add``), a 7x7
``na2d`` with ``rpb`` and ``layer_norm`` over many rows. Each case runs once, so the whole run is
short enough to run under ``compute-sanitizer`` (racecheck, memcheck) on a GPU, where running the
pytest suite would take far longer; it also runs under ``NUMBA_ENABLE_CUDASIM=1``.

Each case prints one line (``ok`` or ``FAIL`` with the first mismatch); the exit status is 0 when
all pass, 1 when any fails, 2 when the ``cuda`` backend cannot run (no GPU and no simulator).
Tolerances (``TOLERANCES``) allow for a GPU's summation order and fused multiply-adds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

TOLERANCES = {"float32": dict(rtol=1e-3, atol=1e-4), "float64": dict(rtol=1e-9, atol=1e-11)}


@dataclass(frozen=True)
class SmokeCase:
    name: str
    op: str
    make: Callable  # (rng, big) -> (args, kwargs), float64 arrays; big: sized for a GPU's blocks


def _normal(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def _linear_tiles(rng, big):
    rows, depth, out = (37, 40, 33) if big else (9, 10, 7)
    return (_normal(rng, 2, rows, depth), _normal(rng, out, depth, scale=0.2), _normal(rng, out)), {}


def _conv_depthwise(rng, big):
    size, channels, kernel = (9, 40, 7) if big else (5, 6, 3)
    x, weight = _normal(rng, 1, size, size, channels), _normal(rng, channels, 1, kernel, kernel, scale=0.2)
    return (x, weight, _normal(rng, channels)), {"padding": kernel // 2, "groups": channels}


def _conv_dense(rng, big):
    size, channels, out = (9, 8, 6) if big else (5, 3, 2)
    x, weight = _normal(rng, 1, size, size, channels), _normal(rng, out, channels, 3, 3, scale=0.2)
    return (x, weight, _normal(rng, out)), {"padding": 1, "stride": 2}


def _attention_bias(rng, big):
    queries, keys = (20, 24) if big else (5, 6)
    q, k, v = _normal(rng, 1, 2, queries, 8), _normal(rng, 1, 2, keys, 8), _normal(rng, 1, 2, keys, 8)
    return (q, k, v), {"bias": _normal(rng, 2, queries, keys)}


def _na2d_7x7(rng, big):
    heads, height, width, dim = (2, 9, 11, 8) if big else (1, 7, 8, 4)
    q, k, v = (_normal(rng, 1, heads, height, width, dim) for _ in range(3))
    return (q, k, v, 7), {"rpb": _normal(rng, heads, 13, 13, scale=0.2)}


def _layer_norm_rows(rng, big):
    rows = 50 if big else 6
    return (_normal(rng, 3, rows, 40), 1.0 + _normal(rng, 40, scale=0.1), _normal(rng, 40, scale=0.1)), {}


# Sizes for a GPU's blocks; under the simulator, whose blocks are smaller (``THREADS_2D`` 4x4, 8 reduction
# lanes), smaller inputs give as many blocks and ragged edges at a fraction of its (slow) run time.
EXTRA = (
    SmokeCase("linear (2,R,D)->O, ragged tiles", "linear", _linear_tiles),
    SmokeCase("conv2d depthwise (1,S,S,C), several channel blocks", "conv2d", _conv_depthwise),
    SmokeCase("conv2d dense 3x3/2 (1,S,S,C)->O", "conv2d", _conv_dense),
    SmokeCase("attention (1,2,Nq|Nk,8) with bias", "attention", _attention_bias),
    SmokeCase("na2d 7x7 (1,h,H,W,d) rpb", "na2d", _na2d_7x7),
    SmokeCase("layer_norm (3,R,40)", "layer_norm", _layer_norm_rows),
)


def smoke_cases(only=None):
    """Every op's example case, then the extra ones; only the ops named in ``only`` when given."""
    from refvit import ops

    cases = [SmokeCase(f"{spec.name} example", spec.name, lambda rng, big, spec=spec: spec.example(rng))
             for spec in ops.table() if "cuda" in spec.backends]
    cases += list(EXTRA)
    if only:
        unknown = set(only) - {case.op for case in cases}
        if unknown:
            raise SystemExit(f"cuda_smoke: no case for {', '.join(sorted(unknown))}")
        cases = [case for case in cases if case.op in only]
    return cases


def run_case(case, dtype="float32", seed=0):
    """``(ok, seconds, message)``: the case's forward and backward on ``cuda`` against ``numpy``."""
    from numba import cuda

    from refvit import ops
    from refvit.testing import check_backends

    from refvit.backend import cuda_simulator_enabled

    args, kwargs = case.make(np.random.default_rng(seed), not cuda_simulator_enabled())
    start = time.perf_counter()
    try:
        check_backends(ops.spec(case.op).module, args, kwargs, backend="cuda", reference="numpy",
                       dtype=np.dtype(dtype).type, seed=seed, **TOLERANCES[dtype])
        cuda.synchronize()
    except Exception as error:  # a mismatch (AssertionError) or a CUDA error: reported, the run goes on
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        return False, time.perf_counter() - start, message
    return True, time.perf_counter() - start, ""


def device_line():
    """What the kernels run on: the GPU's name, or the simulator."""
    from refvit.backend import cuda_simulator_enabled

    if cuda_simulator_enabled():
        return "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    from numba import cuda

    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m refvit.testing.cuda_smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated op names (default: every op)")
    parser.add_argument("--dtype", default="float32", choices=tuple(TOLERANCES))
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    from refvit.backend import cuda_available

    if not cuda_available():
        print("cuda_smoke: the cuda backend cannot run here (no CUDA GPU, NUMBA_ENABLE_CUDASIM not set)",
              file=sys.stderr)
        return 2
    cases = smoke_cases([name for name in (args.only or "").split(",") if name])
    print(f"cuda_smoke: {len(cases)} cases, {args.dtype}, on {device_line()}", flush=True)
    results = []
    for case in cases:
        ok, seconds, message = run_case(case, args.dtype)
        results.append(dict(case=case.name, op=case.op, ok=ok, seconds=seconds, message=message))
        print(f"{'ok  ' if ok else 'FAIL'} {seconds:7.2f} s  {case.name}" + (f"  {message}" if message else ""),
              flush=True)
    failed = [r for r in results if not r["ok"]]
    print(f"cuda_smoke: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(device=device_line(), dtype=args.dtype, results=results), handle, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
