"""examples/conv2d_shapes.py runs: one small shape per side (refvit's entry, a forced path, PyTorch), one call each.

``--cpu-time`` sets the thread variables (``NUMBA_NUM_THREADS=1`` and BLAS's) before Numba starts its
threads, which a process can do only once: those runs are processes of their own."""
import os
import subprocess
import sys

import pytest

from tests.examples.test_examples import EXAMPLES, load_example

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.mark.parametrize("extra, side", [([], "refvit cpu (entry)"), (["--path", "merge"], "refvit cpu (merge)"),
                                         (["--path", "gemm"], "refvit cpu (gemm)"), (["--torch"], "PyTorch")])
def test_script_prints_one_line_per_shape(extra, side):
    env = {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}
    command = [sys.executable, os.path.join(EXAMPLES, "conv2d_shapes.py"), "--cpu-time", "--repeat", "2",
               "--batch", "1", "--filter", "smt_nano merge"] + extra
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(side) and "one thread, CPU time" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("smt_nano merge 2x2 s2")
    forward_min, forward_median, _, both_min, both_median = lines[1].split()[-5:]
    assert 0 < float(forward_min) <= float(forward_median)
    assert 0 < float(both_min) <= float(both_median)


def test_every_shape_runs_through_the_entry(capsys):
    script = load_example("conv2d_shapes")
    script.main(["--repeat", "1", "--batch", "1", "--filter", "s2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + sum(" s2" in label for label, *_ in script.SHAPES)


def test_multiscale_shapes_run_through_the_op(capsys):
    script = load_example("conv2d_shapes")
    script.main(["--repeat", "1", "--batch", "1", "--filter", "multiscale"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(script.MULTISCALE_SHAPES)
    assert all(line.split()[0] in ("smt_nano", "smt_tiny") and "heads 4" in line for line in lines[1:])
