"""The compile notice: printed once when Numba really compiles (a cold cache), never on a cache hit;
the progress bar's rate leaves the compile time out."""
import io
import os
import subprocess
import sys
import textwrap

import numpy as np

from refvit.train import compile_notice, progress
from refvit.train.compile_notice import NOTICE, compile_seconds, watch_compiles


def test_notice_once_at_the_first_compilation_and_its_time_counted():
    from numba import njit

    @njit
    def twice(x):
        return x * 2.0

    @njit
    def thrice(x):
        return x * 3.0

    stream = io.StringIO()
    before = compile_seconds()
    with watch_compiles("cpu", "float32", stream=stream):
        assert stream.getvalue() == ""
        twice(np.ones(3, np.float32))
        twice(np.ones(3, np.float32))  # compiled already: no event
        thrice(np.ones(3, np.float32))  # a second compilation: counted, not announced again
    assert stream.getvalue() == NOTICE.format(backend="cpu", dtype="float32") + "\n"
    assert stream.getvalue().startswith("compiling cpu kernels for float32, first run only")
    assert compile_seconds() > before
    quiet = io.StringIO()
    with watch_compiles("cpu", stream=quiet, notice=False):
        twice(np.ones(3, np.float64))  # a new signature compiles; the time counts, the line is not written
    assert quiet.getvalue() == ""
    numpy_stream = io.StringIO()
    with watch_compiles("numpy", stream=numpy_stream):
        thrice(np.ones(3, np.int64))
    assert numpy_stream.getvalue() == ""


def test_a_warm_disk_cache_prints_nothing(tmp_path):
    (tmp_path / "cached_kernel.py").write_text(textwrap.dedent("""
        from numba import njit

        @njit(cache=True)
        def add_one(x):
            return x + 1.0
    """))
    script = textwrap.dedent("""
        import numpy as np
        from refvit.train.compile_notice import watch_compiles
        import cached_kernel
        with watch_compiles("cpu", "float32"):
            cached_kernel.add_one(np.ones(2, np.float32))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.getcwd()]),
               NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert runs[0].stderr.startswith("compiling cpu kernels for float32, first run only")  # cold
    assert runs[1].stderr == ""  # loaded from the cache: no compilation, no line


def test_progress_rate_leaves_out_compile_time(monkeypatch):
    clock = {"now": 100.0, "compiled": 0.0}
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(progress, "compile_seconds", lambda: clock["compiled"])
    bar = progress.ProgressBar(10, "epoch 1/1", stream=io.StringIO(), enabled=False)
    clock["now"] += 30.0  # the first batch: 30 s, all compiling
    bar.update(8, 1.0, 0.5)
    clock["now"] += 21.0  # the second batch: 1 s of work and 20 s compiling a kernel met only now
    clock["compiled"] += 20.0
    bar.update(8, 1.0, 0.5)
    line = bar.describe(1.0, 0.5)
    assert " 8 img/s " in line and "0:08 left" in line  # 8 images in 1 s; 8 batches of 1 s left


def test_module_has_no_numba_import_at_load():
    # importing refvit.train (and the progress bar) must not import Numba: the numpy backend runs without it
    assert "numba" not in compile_notice.__dict__
