"""Where the ``cpu`` backend's small calls should stop running on one thread
(``refvit.kernels.cpu._threads.PARALLEL_MIN_SIZE``): the kernel calls of a training step below a size,
each timed on one thread and on all, and whole steps with each threshold.

    python examples/parallel_threshold.py --model dualvit_nano --below 32768
    python examples/parallel_threshold.py --model dualvit_nano --sizes 32768,4096 --rounds 3

The first form runs two training steps of the model (batch 64 of float32 32x32 images, forward,
cross-entropy, backward, AdamW) to compile and warm up, records the kernel calls of a third step
whose largest array has fewer than ``--below`` elements, then times each of them again, ``--repeat``
times on one Numba thread and as many on all of them, taking turns call by call (the median of each), and prints per kernel
entry and largest size the calls, the two sums in microseconds and their difference, the largest
gains first. The results do not depend on the thread count, so only the time is compared.

The second form is :mod:`spin_count`'s comparison with the threshold in place of the spin count:
one process per threshold and round, the thresholds taking turns, each timing ``--steps`` training
steps and inference passes and keeping the least; the table gives the median and range over the rounds.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections import defaultdict


def _spin_count():
    """The sibling script ``spin_count.py``, whose measurement and table this one reuses."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spin_count.py")
    spec = importlib.util.spec_from_file_location("examples_spin_count", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_calls(model_name, below, batch=64):
    """``[(kernel entry, args, largest size)]``: the kernel calls of one warm training step of
    ``model_name`` whose largest array has fewer than ``below`` elements."""
    import numpy as np

    from refvit.bench import _train_step
    from refvit.kernels.cpu import _threads

    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, batch)

    def step():
        loss, cache = _train_step.forward(images, labels, model_name, backend="cpu")
        _train_step.backward(np.ones((), loss.dtype), cache)

    step()
    step()
    calls, entry = [], _threads.run_as_kernel_entry

    def recording(fn, args, kwargs=None):
        size = _threads.largest_size(args)
        if size < below and not kwargs:
            calls.append((fn, args, size))
        return entry(fn, args, kwargs)

    _threads.run_as_kernel_entry = recording
    try:
        step()
    finally:
        _threads.run_as_kernel_entry = entry
    return calls


def time_call(fn, args, repeat):
    """``(one thread, all threads)``: median seconds of ``fn(*args)`` under the thread rule's setting of one
    Numba thread and of all of them, the two settings taking turns call by call (after two untimed calls
    of each), so that a change in the machine's load falls on both."""
    from refvit.kernels.cpu import _threads

    times = {1: [], None: []}
    for i in range(repeat + 2):
        for threads in times:
            start = time.perf_counter()
            _threads.run_with_threads(fn, args, None, threads)
            if i >= 2:
                times[threads].append(time.perf_counter() - start)
    return statistics.median(times[1]), statistics.median(times[None])


def scan(model_name, below, repeat, batch):
    """``{(entry, size): [calls, one-thread us, all-threads us]}`` for the small calls of one step."""
    table = defaultdict(lambda: [0, 0.0, 0.0])
    for fn, args, size in small_calls(model_name, below, batch):
        row = table[(f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}", size)]
        one, every = time_call(fn, args, repeat)
        row[0] += 1
        row[1] += one * 1e6
        row[2] += every * 1e6
    return dict(table)


def print_scan(model_name, below, table):
    import numba

    one = sum(row[1] for row in table.values())
    every = sum(row[2] for row in table.values())
    print(f"{model_name}: {sum(row[0] for row in table.values())} kernel calls of one training step below "
          f"{below} elements; summed medians {one:.0f} us on one thread, {every:.0f} us on "
          f"{numba.config.NUMBA_NUM_THREADS} threads")
    print(f"{'kernel entry':<32s} {'largest':>8s} {'calls':>5s} {'1 thread us':>11s} {'all us':>8s} {'change':>8s}")
    for (entry, size), (calls, one, every) in sorted(table.items(), key=lambda item: item[1][2] - item[1][1]):
        print(f"{entry:<32s} {size:>8d} {calls:>5d} {one:>11.1f} {every:>8.1f} {every - one:>+8.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="dualvit_nano")
    parser.add_argument("--below", type=int, default=32768, help="scan the calls below this many elements")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls of each recorded call, per side")
    parser.add_argument("--sizes", help="comma-separated thresholds: compare whole steps instead")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="with --sizes: timed steps per process")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # one process's measurement
    args = parser.parse_args(argv)
    spin_count = _spin_count()
    if args.measure is not None:
        from refvit.kernels.cpu import _threads

        _threads.PARALLEL_MIN_SIZE = args.measure
        print(" ".join(f"{value:.2f}" for value in spin_count.measure(args.model, args.steps, args.batch)))
        return
    if args.sizes is None:
        print_scan(args.model, args.below, scan(args.model, args.below, args.repeat, args.batch))
        return

    def command(size):
        return [sys.executable, os.path.abspath(__file__), "--measure", size, "--model", args.model,
                "--steps", str(args.steps), "--batch", str(args.batch)]

    results = spin_count.run_rounds(args.sizes.split(","), args.rounds, command, lambda size: dict(os.environ))
    spin_count.print_table(f"{args.model}, batch {args.batch}, cpu backend, {args.rounds} rounds: median (min-max) ms",
                           "threshold", results)


if __name__ == "__main__":
    main()
