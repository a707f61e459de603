import json
import subprocess
import sys

import numpy as np

from refvit import cli
from refvit.bench import BenchCase, collect_cases
from refvit.check import run as run_check


def test_check_reports_every_op_and_passes(capsys):
    assert run_check(["gelu"], ["numpy", "cpu"])
    out = capsys.readouterr().out
    assert "gelu" in out and "all checks passed" in out


def test_check_unknown_op_is_one_line_error(capsys):
    assert cli.main(["check", "no_such_op"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("refvit check: error: unknown op(s) no_such_op")


def test_check_bad_backend_is_one_line_error(capsys):
    assert cli.main(["check", "--backends", "tpu"]) == 2
    assert "must name numpy, cpu or cuda; got tpu" in capsys.readouterr().err


def test_bench_runs_a_case_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--filter", "gelu", "--backends", "numpy,cpu", "--repeat", "1", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"numpy", "cpu"}
    assert all(r["forward_ms"] > 0 and r["forward_backward_ms"] >= 0 for r in rows)
    assert "matmul" in capsys.readouterr().out


def test_bench_unknown_filter_and_backend(capsys):
    assert cli.main(["bench", "--filter", "zzz"]) == 2
    assert cli.main(["bench", "--backends", "gpu"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0] == "refvit bench: error: no case matches 'zzz'"
    assert errors[1].startswith("refvit bench: error: '--backends' must name")


def test_bench_cases_are_well_formed():
    for case in collect_cases():
        assert isinstance(case, BenchCase) and case.name and callable(case.make)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "refvit", "check", "gelu", "--backends", "numpy"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "check" in capsys.readouterr().out


def test_bench_accepts_an_op_like_object(capsys):
    import types

    from refvit import ops

    wrapper = types.SimpleNamespace(OP="double_gelu", forward=ops.gelu.forward, backward=ops.gelu.backward)
    case = BenchCase("wrapped gelu", wrapper, lambda rng, dt: ((rng.standard_normal((4, 8)).astype(dt),), {}),
                     backends=("numpy", "cpu"))
    from refvit.bench import runner

    rows = []
    for backend in ("numpy", "cpu"):
        forward, both = runner.time_op(case, backend, np.float32, repeat=1)
        rows.append((forward, both))
    assert all(f > 0 and b > 0 for f, b in rows)
    assert runner.op_name(wrapper) == "double_gelu" and runner.op_name("gelu") == "gelu"


def test_bench_times_torch_in_a_child_process():
    from refvit.bench import runner

    (case,) = [c for c in collect_cases() if c.name.startswith("gelu")]
    forward, both = runner.time_torch(case, np.float32, repeat=1)
    assert forward > 0 and both > 0


def test_bench_filter_takes_a_whole_case_name_with_commas_or_comma_separated_parts():
    from refvit.bench.runner import select

    names = ["attention (8,4,196,32)", "gelu (8,56,56,64)", "na2d 7x7 (1,4,56,56,32) rpb", "NATLayer DiNAT-Mini level 1"]
    assert select(names, "attention (8,4,196,32)") == ["attention (8,4,196,32)"]  # not split at its commas
    assert select(names, "na2d,NATLayer") == names[2:]
    assert select(names, "gelu") == ["gelu (8,56,56,64)"]
    assert select(names, None) == names and select(names, "") == names
    assert select(names, "conv2d") == []
