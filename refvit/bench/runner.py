"""Run benchmark cases and print a table of ops x backends.

For each case and backend: forward time, forward+backward time, and the
forward+backward speed-up over the ``numpy`` reference. PyTorch rows appear
when ``torch`` is installed and the case describes its PyTorch equivalent; they are
timed in a child process, since torch's OpenMP runtime slows Numba's threads when both are
loaded in one process. They run on the CPU (backend ``torch``), or with ``--torch-device cuda`` on
the GPU (backend ``torch cuda``, each timed call synchronised). The ``cuda`` backend is timed with
device-resident inputs on a real GPU only (the simulator measures Python, not a GPU).

Whole models are compared with their PyTorch ports as well (:mod:`refvit.bench.compare`): inference
passes and training steps, each side in a process of its own, over several alternating rounds.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

from refvit import ops
from refvit.backend import cuda_available, cuda_simulator_enabled
from refvit.bench import ON_REQUEST, collect_cases, compare
from refvit.bench.timing import matmul_gflops, measure
from refvit.errors import UserError


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _upstream(rng, out):
    grads = tuple(rng.standard_normal(np.shape(o)).astype(o.dtype) for o in _as_tuple(out))
    return grads if isinstance(out, tuple) else grads[0]


def _to_device(args, kwargs):
    from numba import cuda

    move = lambda a: cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a  # noqa: E731
    return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}


def resolve_op(op):
    """An op module from its name in :mod:`refvit.ops`, or the op-like object itself."""
    return getattr(ops, op) if isinstance(op, str) else op


def op_name(op):
    return op if isinstance(op, str) else getattr(op, "OP", getattr(op, "__name__", type(op).__name__))


def time_op(case, backend, dtype, repeat, seed=0):
    """(forward seconds, forward+backward seconds) of ``case`` on ``backend``."""
    op = resolve_op(case.op)
    rng = np.random.default_rng(seed)
    args, kwargs = case.make(rng, dtype)
    out, _ = op.forward(*args, **kwargs, backend="numpy" if backend == "cuda" else backend)
    upstream = _upstream(rng, out)
    sync = lambda: None  # noqa: E731
    if backend == "cuda":
        from numba import cuda

        args, kwargs = _to_device(args, kwargs)
        upstream = tuple(cuda.to_device(g) for g in _as_tuple(upstream))
        upstream = upstream if isinstance(out, tuple) else upstream[0]
        sync = cuda.synchronize

    def forward():
        op.forward(*args, **kwargs, backend=backend)
        sync()

    def forward_backward():
        _, cache = op.forward(*args, **kwargs, backend=backend)
        op.backward(upstream, cache)
        sync()

    return measure(forward, repeat=repeat), measure(forward_backward, repeat=repeat)


def time_torch(case, dtype, repeat, device="cpu"):
    """(forward seconds, forward+backward seconds) of the case in PyTorch on ``device``, timed in a child
    process (:mod:`refvit.bench.torch_worker`) so that torch's OpenMP runtime never shares this process
    with the Numba kernels."""
    command = [sys.executable, "-m", "refvit.bench.torch_worker", case.name, np.dtype(dtype).name, str(repeat),
               device]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserError(f"bench: timing {case.name!r} in PyTorch failed: {result.stderr.strip().splitlines()[-1:]}")
    times = json.loads(result.stdout.strip().splitlines()[-1])
    return times["forward"], times["forward_backward"]


def torch_backend_name(device):
    """The rows' backend for PyTorch on ``device``: ``torch`` on the CPU, ``torch cuda`` on the GPU."""
    return "torch" if device == "cpu" else f"torch {device}"


def torch_available():
    """True when torch can be imported (looked up without importing it here)."""
    return importlib.util.find_spec("torch") is not None


def select(names, filter_text):
    """The case names selected by ``filter_text``: all without a filter; those holding the whole text, when
    any does (case names hold commas: ``attention (8,4,196,32)``); else those holding one of its
    comma-separated parts (``na2d,NATLayer``)."""
    if not filter_text:
        return list(names)
    whole = [name for name in names if filter_text in name]
    if whole:
        return whole
    parts = [part for part in filter_text.split(",") if part]
    return [name for name in names if any(part in name for part in parts)]


def selected_cases(cases, filter_text):
    """The op cases :func:`select` picks by name; those tagged ``ON_REQUEST`` only when there is a filter."""
    chosen = set(select([c.name for c in cases], filter_text))
    return [c for c in cases if c.name in chosen and (filter_text or ON_REQUEST not in c.tags)]


def run(filter_text=None, backends=("numpy", "cpu", "cuda", "torch"), dtype=np.float32, repeat=5, out=None,
        rounds=3, compile_too=False, markdown=False, torch_device="cpu"):
    """Time every matching case; print the table (Markdown with ``markdown``); return the rows as dicts.

    Op cases fill ``rows``; the whole-model comparisons with PyTorch (:mod:`refvit.bench.compare`, run
    when ``torch`` is among the backends and installed) fill ``compare``, over ``rounds`` rounds.
    PyTorch runs on ``torch_device`` (``cpu`` or ``cuda``) in both.
    """
    out = out or sys.stdout
    progress = sys.stderr if markdown else out
    cases = selected_cases(collect_cases(), filter_text)
    comparisons = []
    if "torch" in backends and torch_available():
        comparisons = compare.selected(compare.compare_cases(), filter_text, select)
    if not cases and not comparisons:
        raise UserError(f"bench: no case matches {filter_text!r}")
    gflops = matmul_gflops()
    print(f"float32 matmul (1024x1024, NumPy BLAS): {gflops:.1f} GFLOP/s on {os.cpu_count()} cores", file=progress)
    rows = time_cases(cases, backends, dtype, repeat, progress, torch_device) if cases else []
    compared = (compare.run_compare(comparisons, rounds, repeat, compile_too, progress, torch_device)
                if comparisons else [])
    if markdown:
        print(markdown_tables(rows, compared, rounds, gflops), file=out)
    return {"matmul_gflops": gflops, "rows": rows, "compare": compared, "rounds": rounds,
            "torch_device": torch_device}


def markdown_tables(rows, compared, rounds, gflops):
    """The header line and the tables of one run, in Markdown."""
    from refvit.bench import markdown

    parts = [markdown.machine_line(1, rounds if compared else None)
             + f"; float32 1024x1024 matmul {gflops:.0f} GFLOP/s"]
    if rows:
        parts.append(markdown.ops_table(rows))
    if compared:
        parts.append(markdown.compare_table(compared))
    return "\n\n".join(parts)


def time_cases(cases, backends, dtype, repeat, out, torch_device="cpu"):
    """The op cases' rows, one per case and backend, each printed as it is timed."""
    real_gpu = cuda_available() and not cuda_simulator_enabled()
    header = f"{'case':<44} {'backend':<8} {'forward ms':>11} {'fwd+bwd ms':>11} {'vs numpy':>9} {'GFLOP/s':>8}"
    print(header, file=out)
    print("-" * len(header), file=out)
    rows = []
    for case in cases:
        reference = None
        for backend in backends:
            if backend == "torch":
                if not (case.torch_forward and torch_available()):
                    continue
                fwd, fwd_bwd = time_torch(case, dtype, repeat, torch_device)
            else:
                if backend not in case.backends or (backend == "cuda" and not real_gpu):
                    continue
                fwd, fwd_bwd = time_op(case, backend, dtype, repeat)
            if backend == "numpy":
                reference = fwd_bwd
            speedup = reference / fwd_bwd if reference else float("nan")
            rate = float("nan")
            if case.flops:
                args, kwargs = case.make(np.random.default_rng(0), dtype)
                rate = case.flops(args, kwargs) / fwd / 1e9
            label = torch_backend_name(torch_device) if backend == "torch" else backend
            row = dict(case=case.name, op=op_name(case.op), backend=label, forward_ms=fwd * 1e3,
                       forward_backward_ms=fwd_bwd * 1e3, speedup_vs_numpy=speedup, forward_gflops=rate)
            rows.append(row)
            print(f"{case.name:<44} {label:<8} {fwd * 1e3:>11.3f} {fwd_bwd * 1e3:>11.3f} "
                  f"{speedup:>8.1f}x {rate:>8.2f}", file=out, flush=True)
    return rows


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="refvit bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def add_arguments(parser):
    parser.add_argument("--filter", help="a substring of the case names to run, or several separated by commas")
    parser.add_argument("--backends", default="numpy,cpu,cuda,torch",
                        help="comma-separated: numpy, cpu, cuda (real GPU only), torch (when installed)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (at least)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument("--markdown", action="store_true",
                        help="print the tables as Markdown (progress goes to stderr), headed by the machine")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the whole-model comparison with PyTorch (the sides alternate)")
    parser.add_argument("--torch-device", default="cpu",
                        help="where the PyTorch rows and the comparison's PyTorch side run: cpu or cuda "
                             "(cuda: model and batch on the GPU, each timed call synchronised)")
    parser.add_argument("--compile", action="store_true",
                        help="add a torch.compile column to the comparison (compilation not timed; it takes minutes)")
    parser.add_argument("--profile", metavar="MODEL",
                        help="time one training step of MODEL op by op instead (refvit.bench.profile)")
    parser.add_argument("--steps", type=int, default=5, help="with --profile: timed steps (after 2 warm-up steps)")
    parser.add_argument("--batch", type=int, default=64, help="with --profile: images of 32x32 per step")
    parser.add_argument("--backend", default="cpu", choices=("numpy", "cpu", "cuda"),
                        help="with --profile: the backend of the step")


def run_from_args(args):
    if args.list:
        for case in collect_cases():
            print(case.name)
        for case in compare.compare_cases():
            print(case.name)
        return 0
    if args.profile:
        return _profile_from_args(args)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = set(backends) - {"numpy", "cpu", "cuda", "torch"}
    if unknown:
        raise UserError(f"bench: '--backends' must name numpy, cpu, cuda or torch; got {', '.join(sorted(unknown))}")
    if args.torch_device.split(":")[0] not in ("cpu", "cuda"):
        raise UserError(f"bench: '--torch-device' must be cpu or cuda (cuda:N); got {args.torch_device!r}")
    if args.rounds < 1:
        raise UserError(f"bench: '--rounds' must be at least 1; got {args.rounds}")
    result = run(args.filter, backends, np.dtype(args.dtype).type, args.repeat, rounds=args.rounds,
                 compile_too=args.compile, markdown=args.markdown, torch_device=args.torch_device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def _profile_from_args(args):
    from refvit.bench import profile

    result = profile.profile_step(args.profile, batch=args.batch, steps=args.steps, backend=args.backend,
                                  dtype=np.dtype(args.dtype).type)
    print(profile.format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(profile.as_json(result), f, indent=2)
    return 0
