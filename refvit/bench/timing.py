"""Wall-clock timing: one warm-up call (JIT compilation), then the median of repeats."""
from __future__ import annotations

import statistics
import time

import numpy as np


def measure(fn, repeat=5, min_time=0.2, max_calls=50):
    """Median seconds per call of ``fn()`` after one warm-up call.

    Runs at least ``repeat`` calls and keeps calling until ``min_time`` seconds
    have passed (capped at ``max_calls``), so fast ops are timed over many calls.
    """
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start < min_time and len(times) < max_calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(n=1024, dtype=np.float32, repeat=5):
    """This machine's dense matmul rate (GFLOP/s) for ``n x n`` float32 matrices, through NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    seconds = measure(lambda: a @ b, repeat=repeat)
    return 2.0 * n**3 / seconds / 1e9
