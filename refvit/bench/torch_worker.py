"""Time one benchmark case in PyTorch, in a process of its own.

``refvit bench`` runs this as a child process (``python -m refvit.bench.torch_worker CASE DTYPE
REPEAT``) and reads one JSON line back, so that torch is never imported next to the Numba
kernels being timed: the two libraries bring their own OpenMP runtimes, and with both loaded
Numba's parallel kernels ran several times slower. PyTorch gets one thread per core this process may
run on, so ``NUMBA_NUM_THREADS=1 taskset -c 0 refvit bench ...`` times both sides on one core.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from refvit.bench import collect_cases
from refvit.bench.timing import measure


def time_torch(case, dtype, repeat, seed=0):
    """(forward seconds, forward+backward seconds) of the case's PyTorch equivalent."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    rng = np.random.default_rng(seed)
    args, kwargs = case.make(rng, dtype)
    run = case.torch_forward(args, kwargs)
    with torch.no_grad():
        out = run()
    grad = torch.from_numpy(rng.standard_normal(tuple(out.shape)).astype(dtype))

    def forward():
        with torch.no_grad():
            run()

    def forward_backward():
        run().backward(grad)

    return measure(forward, repeat=repeat), measure(forward_backward, repeat=repeat)


def main(argv):
    name, dtype, repeat = argv[0], np.dtype(argv[1]).type, int(argv[2])
    (case,) = [c for c in collect_cases() if c.name == name]
    forward, forward_backward = time_torch(case, dtype, repeat)
    print(json.dumps({"forward": forward, "forward_backward": forward_backward}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
