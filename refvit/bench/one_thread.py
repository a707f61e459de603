"""One-thread CPU-time runs of the example timing scripts (``examples/*_shapes.py --cpu-time``).

:func:`pin_one_thread` must run before NumPy, Numba or PyTorch is imported: their thread pools read
these variables when they start. This module imports none of them at load time.
"""
from __future__ import annotations

import os
import time

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_one_thread():
    """One thread for Numba, BLAS and OpenMP in this process (and the processes it starts)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


def side_and_clock(use_torch, cpu_time, refvit_label):
    """``(label, clock)``: the label of the side being timed (PyTorch's version, or ``refvit_label``)
    and the clock to read: ``time.process_time`` for one-thread CPU time (PyTorch then runs on one
    thread too), else ``time.perf_counter``."""
    label = refvit_label
    if use_torch:
        import torch

        if cpu_time:
            torch.set_num_threads(1)
        label = f"PyTorch {torch.__version__}"
    return label, (time.process_time if cpu_time else time.perf_counter)
