"""examples/stripe_shapes.py runs: one line per shape and each model's sum, for refvit and the PyTorch port.

``--cpu-time`` sets the thread variables (``NUMBA_NUM_THREADS=1`` and BLAS's) before Numba starts its
threads, which a process can do only once: those runs are processes of their own."""
import os
import subprocess
import sys

import pytest

from tests.examples.test_examples import EXAMPLES, load_example

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _rows(lines):
    """Shape lines -> (label, forward min, forward median, both min, both median)."""
    rows = []
    for line in lines:
        head, tail = line.split("|")
        f_min, f_med = head.split()[-2:]
        b_min, b_med = tail.split()
        rows.append((line[:26].strip(), float(f_min), float(f_med), float(b_min), float(b_med)))
    return rows


@pytest.mark.parametrize("extra, side", [([], "refvit cpu (entry)"), (["--path", "blas"], "refvit cpu (blas)"),
                                         (["--path", "loops"], "refvit cpu (loops)"), (["--torch"], "PyTorch")])
def test_one_thread_run_prints_its_shape_and_the_sum(extra, side):
    env = {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}
    command = [sys.executable, os.path.join(EXAMPLES, "stripe_shapes.py"), "--cpu-time", "--repeat", "2",
               "--batch", "1", "--filter", "cswin_nano s4"] + extra
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(side) and "one thread, CPU time" in lines[0]
    assert len(lines) == 3 and lines[1].startswith("cswin_nano s4 full")
    (_, f_min, f_med, b_min, b_med), = _rows(lines[1:2])
    assert 0 < f_min <= f_med and 0 < b_min <= b_med
    total = lines[2].split()
    assert total[:3] == ["cswin_nano", "all", "calls"]
    assert float(total[3]) == pytest.approx(f_min, abs=1e-3) and float(total[5]) == pytest.approx(b_min, abs=1e-3)


@pytest.mark.parametrize("extra", [[], ["--torch"]])
def test_every_nano_shape_runs_and_sums_by_its_calls(capsys, extra):
    script = load_example("stripe_shapes")
    script.main(["--repeat", "1", "--batch", "2", "--filter", "cswin_nano"] + extra)
    lines = capsys.readouterr().out.strip().splitlines()
    nano = [(label, calls) for label, _, _, calls in script.SHAPES if label.startswith("cswin_nano")]
    assert len(lines) == 1 + len(nano) + 1
    rows = _rows(lines[1:-1])
    assert [row[0] for row in rows] == [label for label, _ in nano]
    forward = sum(calls * row[1] for (_, calls), row in zip(nano, rows))
    both = sum(calls * row[3] for (_, calls), row in zip(nano, rows))
    total = lines[-1].split()
    assert float(total[3]) == pytest.approx(forward, abs=0.01) and float(total[5]) == pytest.approx(both, abs=0.01)


@pytest.mark.parametrize("path", ["blas", "loops"])
def test_a_forced_path_takes_every_window(monkeypatch, capsys, path):
    from refvit.kernels.cpu import stripe_small

    for name in ("FORWARD_TOKENS", "BACKWARD_TOKENS"):
        monkeypatch.setattr(stripe_small, name, getattr(stripe_small, name))  # restored after the test
    called = []
    for name in ("_forward_blocks", "_backward_blocks"):
        compiled = getattr(stripe_small, name)
        monkeypatch.setattr(stripe_small, name, lambda *args, _f=compiled, _n=name: called.append(_n) or _f(*args))
    script = load_example("stripe_shapes")
    script.main(["--repeat", "1", "--batch", "1", "--filter", "cswin_tiny s4", "--path", path])
    assert capsys.readouterr().out.startswith(f"refvit cpu ({path})")
    assert bool(called) == (path == "loops") and set(called) <= {"_forward_blocks", "_backward_blocks"}
