"""``refvit bench --profile MODEL``: where the time of one training step of a model goes, op by op.

A step is the one ``refvit bench``'s ``train step`` rows time (:mod:`refvit.bench._train_step`): the
model and its cross-entropy on the tape (forward), the tape's backward from the loss (backward), and
one AdamW step. After warm-up steps (Numba compilation), every call of :func:`refvit.ops._dispatch.run`
is timed: the op's kernel entry on ``cpu``/``cuda`` (the thread rule of ``cpu`` included), or its NumPy
reference where the backend has no kernel for it. A call made inside another one counts towards the
outer call only. What is left of each phase's wall-clock time is Python and the tape outside the ops
(argument checks, recording, graph walk, gradient accumulation); the optimizer step is a row of its own.
The rows therefore add up to the step. ``cuda`` times are host times: a kernel that is still running when
its call returns is counted where the host next waits for it.

    refvit bench --profile dinat_nano                   # batch 64 of 32x32, float32, cpu, 5 steps
    refvit bench --profile coatnet_nano --steps 10 --batch 32 --backend numpy
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from refvit.backend import use_backend
from refvit.bench import _train_step
from refvit.errors import UserError
from refvit.ops import _dispatch

OUTSIDE = "Python and the tape outside the ops"
OPTIMIZER = "AdamW step"
PHASES = ("forward", "backward")


@dataclass
class Profile:
    """The timed steps of one model: each step's seconds, and per row its total seconds and calls."""

    model: str
    backend: str
    batch: int
    size: int
    dtype: str
    step_seconds: list = field(default_factory=list)
    seconds: dict = field(default_factory=lambda: defaultdict(float))  # (label, step) -> seconds, all steps
    calls: dict = field(default_factory=lambda: defaultdict(int))  # (label, step) -> calls, all steps

    def rows(self):
        """``[{"op", "step", "calls_per_step", "ms_per_step", "share"}]``, the slowest first; the shares
        are of the summed step time, so they add up to 1."""
        steps, total = len(self.step_seconds), sum(self.step_seconds)
        ordered = sorted(self.seconds.items(), key=lambda item: -item[1])
        return [dict(op=label, step=step, calls_per_step=self.calls.get((label, step), 0) / steps,
                     ms_per_step=seconds / steps * 1e3, share=seconds / total if total else float("nan"))
                for (label, step), seconds in ordered]


class _OpClock:
    """Times the outermost :func:`refvit.ops._dispatch.run` calls while installed (``with`` block)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self._depth = 0
        self._run = None

    def __enter__(self):
        self._run = _dispatch.run
        original = self._run

        def timed_run(op, backend, step, reference, args, kernel_args=None):
            if self._depth:
                return original(op, backend, step, reference, args, kernel_args)
            self._depth += 1
            start = time.perf_counter()
            try:
                return original(op, backend, step, reference, args, kernel_args)
            finally:
                self.seconds[(op, step)] += time.perf_counter() - start
                self.calls[(op, step)] += 1
                self._depth -= 1

        _dispatch.run = timed_run
        return self

    def __exit__(self, *exc):
        _dispatch.run = self._run
        return False

    def take(self):
        """The seconds and calls counted since the last ``take``; the counters restart from zero."""
        seconds, calls = self.seconds, self.calls
        self.seconds, self.calls = defaultdict(float), defaultdict(int)
        return seconds, calls


def _inputs(batch, size, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, size, size, 3)).astype(dtype), rng.integers(0, 10, batch)


def _one_step(images, labels, model, backend):
    """One training step; returns (forward seconds, backward seconds, optimizer seconds)."""
    start = time.perf_counter()
    loss, cache = _train_step.forward(images, labels, model, backend=backend)
    with use_backend(backend):
        middle = time.perf_counter()
        cache.loss.backward(np.ones((), loss.dtype))
        before_step = time.perf_counter()
        cache.optimizer.step()
        end = time.perf_counter()
    return middle - start, before_step - middle, end - before_step


def profile_step(model, batch=64, size=32, steps=5, warmup=2, backend="cpu", dtype=np.float32, seed=0):
    """Time ``steps`` training steps of ``model`` after ``warmup`` untimed ones -> :class:`Profile`."""
    from refvit.models import list_models

    if model not in list_models():
        raise UserError(f"bench: '--profile' must name a model ({', '.join(list_models())}); got {model!r}")
    if steps < 1 or batch < 1:
        raise UserError(f"bench: '--steps' and '--batch' must be at least 1; got {steps} and {batch}")
    images, labels = _inputs(batch, size, dtype, seed)
    for _ in range(warmup):
        _one_step(images, labels, model, backend)
    result = Profile(model, backend, batch, size, np.dtype(dtype).name)
    with _OpClock() as clock:
        for _ in range(steps):
            clock.take()
            phase_seconds = _one_step(images, labels, model, backend)
            seconds, calls = clock.take()
            _add_step(result, phase_seconds, seconds, calls)
    return result


def _add_step(result, phase_seconds, seconds, calls):
    """Fold one step's op times into ``result``; what each phase's ops leave of it goes to ``OUTSIDE``.
    No op runs inside the optimizer step (its update is one compiled loop per parameter)."""
    forward_s, backward_s, optimizer_s = phase_seconds
    op_seconds = {phase: 0.0 for phase in PHASES}
    for key, value in seconds.items():
        result.seconds[key] += value
        result.calls[key] += calls[key]
        op_seconds[key[1]] += value
    for phase, wall in zip(PHASES, (forward_s, backward_s)):
        result.seconds[(OUTSIDE, phase)] += wall - op_seconds[phase]
    result.seconds[(OPTIMIZER, "step")] += optimizer_s
    result.step_seconds.append(forward_s + backward_s + optimizer_s)


def format_table(result):
    """The profile as a text table, headed by the step's least and median time."""
    steps = result.step_seconds
    lines = [f"{result.model}: training step, batch {result.batch} of {result.size}x{result.size}, "
             f"{result.dtype}, backend {result.backend}{_threads(result.backend)}, {len(steps)} steps: "
             f"least {min(steps) * 1e3:.1f} ms, median {statistics.median(steps) * 1e3:.1f} ms, "
             f"mean {statistics.fmean(steps) * 1e3:.1f} ms"]
    header = f"{'op':<38} {'step':<9} {'calls/step':>10} {'ms/step':>9} {'share':>7}"
    lines += [header, "-" * len(header)]
    for row in result.rows():
        calls = f"{row['calls_per_step']:g}" if row["calls_per_step"] else "-"
        lines.append(f"{row['op']:<38} {row['step']:<9} {calls:>10} "
                     f"{row['ms_per_step']:>9.2f} {100 * row['share']:>6.1f}%")
    return "\n".join(lines)


def _threads(backend):
    if backend != "cpu":
        return ""
    import numba

    return f" (Numba threads {numba.get_num_threads()})"


def as_json(result):
    """The profile as a JSON-ready dict."""
    return dict(model=result.model, backend=result.backend, batch=result.batch, size=result.size,
                dtype=result.dtype, step_ms=[s * 1e3 for s in result.step_seconds], rows=result.rows())


def main(argv=None):
    """``python -m refvit.bench.profile MODEL [--steps N] [--batch B] [--backend NAME] [--dtype D]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m refvit.bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--backend", default="cpu", choices=("numpy", "cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    result = profile_step(args.model, batch=args.batch, steps=args.steps, backend=args.backend,
                          dtype=np.dtype(args.dtype).type)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
