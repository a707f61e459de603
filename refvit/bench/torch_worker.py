"""Time one benchmark case in PyTorch, in a process of its own.

``refvit bench`` runs this as a child process (``python -m refvit.bench.torch_worker CASE DTYPE
REPEAT [DEVICE]``) and reads one JSON line back, so that torch is never imported next to the Numba
kernels being timed: the two libraries bring their own OpenMP runtimes, and with both loaded
Numba's parallel kernels ran several times slower. PyTorch gets one thread per core this process may
run on, so ``NUMBA_NUM_THREADS=1 taskset -c 0 refvit bench ...`` times both sides on one core.

``DEVICE`` (default ``cpu``; ``refvit bench --torch-device``) is where PyTorch runs: on ``cuda`` the
case's tensors are built on the GPU (:func:`tensors_on`) and every timed call ends with
``torch.cuda.synchronize()``, so the clock reads the GPU's work, not its queueing.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np

from refvit.bench import collect_cases
from refvit.bench.timing import measure


@contextlib.contextmanager
def tensors_on(device):
    """Build a case's PyTorch side on ``device``: inside, ``torch.from_numpy`` (which the cases use for their
    arrays) returns a copy on ``device``, and the factories (``torch.zeros``, ...) make tensors there.

    A case marks its inputs ``requires_grad_`` after this copy, so they are leaves on the device and the
    timed backward never copies a gradient back to the host. Nothing changes for ``cpu``.
    """
    import torch

    if torch.device(device).type == "cpu":
        yield
        return
    original = torch.from_numpy
    torch.from_numpy = lambda array: original(array).to(device)
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.from_numpy = original
        torch.set_default_device(None)


def synchronizer(device):
    """A function of no arguments that waits for ``device``'s queued work (nothing to wait for on the CPU)."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_torch(case, dtype, repeat, seed=0, device="cpu"):
    """(forward seconds, forward+backward seconds) of the case's PyTorch equivalent on ``device``."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    rng = np.random.default_rng(seed)
    args, kwargs = case.make(rng, dtype)
    with tensors_on(device):
        run = case.torch_forward(args, kwargs)
    sync = synchronizer(device)
    with torch.no_grad():
        out = run()
    grad = torch.from_numpy(rng.standard_normal(tuple(out.shape)).astype(dtype)).to(out.device)

    def forward():
        with torch.no_grad():
            run()
        sync()

    def forward_backward():
        run().backward(grad)
        sync()

    return measure(forward, repeat=repeat), measure(forward_backward, repeat=repeat)


def main(argv):
    name, dtype, repeat = argv[0], np.dtype(argv[1]).type, int(argv[2])
    device = argv[3] if len(argv) > 3 else "cpu"
    (case,) = [c for c in collect_cases() if c.name == name]
    forward, forward_backward = time_torch(case, dtype, repeat, device=device)
    print(json.dumps({"forward": forward, "forward_backward": forward_backward, "device": device}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
