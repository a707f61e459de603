"""How long Numba's idle OpenMP workers should spin before they sleep: a training step and an
inference pass of a ``*_nano`` model with each ``GOMP_SPINCOUNT``.

    python examples/spin_count.py --model dinat_nano --counts 10000,300000,3000000 --rounds 3

Every measurement is a process of its own (the OpenMP runtime reads ``GOMP_SPINCOUNT`` once, when it
is loaded); the counts take turns, round after round, so a shared machine's load falls on all of
them alike. One process times ``--steps`` training steps (forward, cross-entropy, backward, AdamW)
and ``--steps`` inference passes of a batch of 64 float32 32x32 images on the ``cpu`` backend, after
one of each to warm up, and prints the least wall time and its CPU time in ms. The table gives, per
count, the median and the range over the rounds. ``refvit.kernels.cpu._threads.SPIN_COUNT`` is the
count the ``cpu`` backend sets when the user sets neither ``GOMP_SPINCOUNT`` nor ``OMP_WAIT_POLICY``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def measure(model_name, steps, batch):
    """``(train ms, train CPU ms, inference ms, inference CPU ms)``: least wall time over ``steps`` calls."""
    import numpy as np

    from refvit import functional as F
    from refvit.autograd import Tensor, no_grad
    from refvit.backend import use_backend
    from refvit.models import create_model
    from refvit.optim import AdamW

    model = create_model(model_name)
    for parameter in model.parameters():
        parameter.data = parameter.data.astype(np.float32)
    optimizer = AdamW(list(model.parameters()), lr=1e-3)
    rng = np.random.default_rng(0)
    images = Tensor(rng.random((batch, 32, 32, 3)).astype(np.float32))
    labels = rng.integers(0, 10, batch)

    def train():
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    def infer():
        with no_grad():
            model(images)

    results = []
    with use_backend("cpu"):
        for fn in (train, infer):
            fn()
            best = (float("inf"), 0.0)
            for _ in range(steps):
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                best = min(best, ((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
            results.extend(best)
    return tuple(results)


def run_rounds(settings, rounds, command, environment):
    """``{setting: [measurement, ...]}``: one process per setting and round, the settings taking turns;
    ``environment(setting)`` is the process's environment, its output :func:`measure`'s four numbers."""
    results = {setting: [] for setting in settings}
    for _ in range(rounds):
        for setting in settings:
            output = subprocess.run(command(setting), env=environment(setting), capture_output=True, text=True,
                                    check=True).stdout
            results[setting].append(tuple(float(v) for v in output.split()))
    return results


def print_table(title, label, results):
    """Per setting: the train step's median (min-max), the median of its CPU time, the inference's median
    (min-max), in ms."""
    print(title)
    print(f"{label:>14s}  {'train step':>22s}  {'its CPU time':>12s}  {'inference':>22s}")
    for setting, rows in results.items():
        columns = list(zip(*rows))

        def cell(values):
            return f"{statistics.median(values):7.1f} ({min(values):.1f}-{max(values):.1f})"
        print(f"{setting:>14s}  {cell(columns[0]):>22s}  {statistics.median(columns[1]):12.1f}  {cell(columns[2]):>22s}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="dinat_nano")
    parser.add_argument("--counts", default="10000,300000,3000000", help="comma-separated GOMP_SPINCOUNT values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one process's measurement
    args = parser.parse_args(argv)
    if args.measure:
        print(" ".join(f"{value:.2f}" for value in measure(args.model, args.steps, args.batch)))
        return

    def environment(count):
        env = dict(os.environ, GOMP_SPINCOUNT=count)
        env.pop("OMP_WAIT_POLICY", None)
        return env

    command = [sys.executable, os.path.abspath(__file__), "--measure", "--model", args.model,
               "--steps", str(args.steps), "--batch", str(args.batch)]
    results = run_rounds(args.counts.split(","), args.rounds, lambda count: command, environment)
    print_table(f"{args.model}, batch {args.batch}, cpu backend, {args.rounds} rounds: median (min-max) ms",
                "GOMP_SPINCOUNT", results)


if __name__ == "__main__":
    main()
