"""Arrays from memory the process already holds, not from fresh pages of the kernel.

glibc's ``malloc`` serves a large request (from 128 KiB, a threshold it raises up to 32 MiB as
such blocks are freed) with its own ``mmap`` and gives the pages back on ``free``; and it gives the
top of its heap back once more than twice that threshold lies free there. A training step frees
most of its arrays between the forward and the backward, so the next array of a few MiB is fresh
memory again, and the first write to every 4 KiB page of it is a page fault.

Measured on a 2-core virtual machine, one Numba thread, batch 64 of 32x32, float32: the CPU time
(``time.process_time``) of the training step :func:`refvit.bench.profile.profile_step` times, median of 6
steps after 2 warm-up steps, the range over 3 processes alternating with processes that leave glibc's
defaults (``GLIBC_TUNABLES=glibc.malloc.tcache_count=7``, glibc's default, which makes this module stand
aside): ``coatnet_nano`` 140-151 -> 112-125 ms (13,200-13,800 page faults a step -> 6), ``smt_nano``
82-87 -> 69-76 ms (5,400-7,300 faults -> 7), ``dualvit_nano`` 112-117 -> 110-115 ms (3,900 faults -> 8,
within the noise); peak resident memory unchanged (242-290 MB). The
elementwise kernels paid most of it: ``gelu``'s forward at (64, 16, 16, 128) took 5.4-6.0 ms of
CPU time inside the ``coatnet_nano`` step, 4.5-4.7 ms without the faults.

:func:`keep_freed_memory` sets the two thresholds (``mallopt``) so that arrays up to 32 MiB come
from the heap and freed memory stays in it, ready for the next step. It leaves them alone when the
user set them (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``) and does
nothing where the C library has no ``mallopt`` (not glibc).
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: requests from this size on still get their own mapping
TRIM_THRESHOLD = (1 << 31) - 1  # the largest int mallopt takes: the top of the heap is kept (up to 2 GiB)

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def _mallopt():
    """glibc's ``mallopt`` as a ``ctypes`` function, or None where the C library has none."""
    try:
        function = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return function


def keep_freed_memory():
    """Serve arrays below :data:`MMAP_THRESHOLD` from the heap and keep freed memory in it.
    -> True when both settings were made."""
    if any(name in os.environ for name in _USER_SETTINGS) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
