"""The cpu kernels' heap settings: a freed array's memory serves the next one without page faults."""
import os
import subprocess
import sys

from refvit.kernels.cpu import _heap

PROBE = """
import resource
import numpy as np
{setup}
def faults(size):
    first = np.empty(size, np.float32); first.fill(1.0); del first  # glibc raises its thresholds to 8 MiB
    for _ in range(2):  # 24 MiB of 2 MiB arrays, from the heap; freed, they exceed the top's trim threshold
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        arrays = [np.full(size // 4, 1.0, np.float32) for _ in range(12)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults(1 << 21))
"""


def _probe(setup):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                            env=env, check=True)
    return int(result.stdout.split()[-1])


def test_freed_arrays_are_reused_without_page_faults():
    # the second round of 24 MiB: 6144 pages of 4 KiB, each a fault where the memory is fresh
    assert _probe("") > 1000
    assert _probe("from refvit.kernels.cpu._heap import keep_freed_memory; assert keep_freed_memory()") < 64


def test_user_settings_are_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert _heap.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")
    assert _heap.keep_freed_memory() is False
