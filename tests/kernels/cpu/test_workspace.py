"""Scratch arrays kept between kernel calls (``refvit.kernels.cpu._workspace``)."""
import threading

import numpy as np

from refvit.kernels.cpu import _workspace


def test_scratch_reuses_one_buffer_per_name_and_grows_it():
    _workspace.release()
    first = _workspace.scratch("test.a", (4, 5), np.float32)
    assert first.shape == (4, 5) and first.dtype == np.float32 and first.flags.c_contiguous
    again = _workspace.scratch("test.a", (2, 3), np.float64)
    assert np.shares_memory(first, again)                      # the same memory, another view
    other = _workspace.scratch("test.b", (4, 5), np.float32)
    assert not np.shares_memory(first, other)
    held = _workspace.held_bytes()
    larger = _workspace.scratch("test.a", (100,), np.float64)
    assert larger.shape == (100,) and _workspace.held_bytes() == held - 80 + 800
    assert _workspace.scratch("test.a", (0, 3), np.float32).shape == (0, 3)
    _workspace.release()
    assert _workspace.held_bytes() == 0


def test_threads_get_their_own_buffers():
    mine = _workspace.scratch("test.shared", (8,), np.float64)
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(_workspace.scratch("test.shared", (8,), np.float64)))
    worker.start()
    worker.join()
    assert not np.shares_memory(mine, theirs[0])
    _workspace.release()
