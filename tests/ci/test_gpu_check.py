"""``.ci/gpu_check`` without a GPU: its syntax, the summary, step choice, limits, failures and packing.

The GPU steps' commands are replaced by a stand-in Python (``GPU_CHECK_PYTHON``): a script that
fails, sleeps past its limit or hands over to the real interpreter, so each test takes seconds.
"""
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "gpu_check"
STEPS = ["install", "env", "smoke", "pytest", "racecheck", "memcheck", "train_cuda", "train_cpu", "bench_ops",
         "bench_compare"]
# Python for the steps: pytest sleeps, the smoke driver fails (SMOKE_RC=0: passes), refvit's commands
# print their arguments; anything else is the real interpreter.
STAND_IN = f"""#!/usr/bin/env bash
case "$1 $2" in
    "-m pytest") sleep 30 ;;
    "-m refvit.testing.cuda_smoke") echo "cuda_smoke ran"; exit ${{SMOKE_RC:-5}} ;;
    "-m refvit") echo "refvit $*" ;;
    *) exec {sys.executable} "$@" ;;
esac
"""
# A compute-sanitizer that prints its options and runs the program after them.
SANITIZER = """#!/usr/bin/env bash
echo "sanitizer $1 $2 $3 $4"
shift 4
exec "$@"
"""


def run_check(out, steps, **settings):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GPU_CHECK_", "NUMBA_"))}
    env.update(GPU_CHECK_STEPS=steps, GPU_CHECK_PYTHON=settings.pop("python", sys.executable), **settings)
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120)


def summary_rows(out):
    """``{step: (status, wall, limit, log)}`` from summary.txt's table."""
    lines = (out / "summary.txt").read_text().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("step ")))
    rows = {}
    for line in lines[header + 1:]:
        step, rest = line[:14].strip(), line[14:]
        status, numbers = rest[:21].strip(), rest[21:].split()
        rows[step] = (status, *numbers)
    return rows


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def stand_in(tmp_path):
    return executable(tmp_path / "python", STAND_IN)


def test_the_script_is_executable_bash_without_syntax_errors():
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_env_runs_and_the_summary_lists_every_step(tmp_path):
    out = tmp_path / "out"
    result = run_check(out, "env")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(out)
    assert list(rows) == STEPS
    assert rows["env"][0] == "pass" and rows["env"][2] == "60" and rows["env"][3] == "env.log"
    assert float(rows["env"][1]) > 0
    assert all(rows[step][0] == "not chosen" for step in STEPS if step != "env")
    log = (out / "env.log").read_text()
    assert "numba " in log and "refvit.cuda_available():" in log and "nvidia-smi" in log
    assert "steps: env; budget 570 s" in (out / "summary.txt").read_text()


def test_a_failing_step_and_a_step_past_its_limit_do_not_stop_the_run(tmp_path, stand_in):
    out = tmp_path / "out"
    result = run_check(out, "smoke,pytest,train_cpu", python=stand_in, GPU_CHECK_LIMITS="pytest=1",
                       GPU_CHECK_BUDGET_S="200")
    assert result.returncode == 1
    rows = summary_rows(out)
    assert rows["smoke"][0] == "FAIL rc 5" and "cuda_smoke ran" in (out / "smoke.log").read_text()
    assert rows["pytest"][0] == "TIMEOUT after 1 s" and rows["pytest"][2] == "1"
    assert 1.0 <= float(rows["pytest"][1]) < 10
    assert rows["train_cpu"][0] == "pass" and rows["train_cpu"][2] == "90"
    assert ("refvit -m refvit train --model dinat_nano --dataset digits --epochs 2 --backend cpu"
            in (out / "train_cpu.log").read_text())


def test_the_sanitizer_steps_run_the_smoke_driver_or_say_it_is_absent(tmp_path, stand_in):
    out = tmp_path / "out"
    sanitizer = executable(tmp_path / "compute-sanitizer", SANITIZER)
    result = run_check(out, "racecheck,memcheck", python=stand_in, GPU_CHECK_SANITIZER=sanitizer, SMOKE_RC="0")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(out)
    assert rows["racecheck"][0] == rows["memcheck"][0] == "pass"
    log = (out / "racecheck.log").read_text()
    assert "sanitizer --tool racecheck --error-exitcode 3" in log and "cuda_smoke ran" in log

    result = run_check(out, "racecheck,memcheck", python=stand_in, GPU_CHECK_SANITIZER=str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    assert summary_rows(out)["memcheck"][0] == "absent"
    assert "compute-sanitizer: absent" in (out / "memcheck.log").read_text()


def test_a_spent_budget_starts_nothing_more(tmp_path, stand_in):
    out = tmp_path / "out"
    result = run_check(out, "pytest,smoke", python=stand_in, GPU_CHECK_BUDGET_S="5")
    assert result.returncode == 1
    rows = summary_rows(out)
    assert rows["smoke"][0] == rows["pytest"][0] == "no time left"
    assert not (out / "smoke.log").exists()


def test_packing_leaves_the_summary_and_one_archive_of_the_logs(tmp_path, stand_in):
    out = tmp_path / "out"
    result = run_check(out, "smoke", python=stand_in, GPU_CHECK_PACK="1")
    assert result.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.tar.gz", "summary.txt"]
    with tarfile.open(out / "gpu-check.tar.gz") as archive:
        assert {"./smoke.log", "./summary.txt"} <= set(archive.getnames())
        assert b"cuda_smoke ran" in archive.extractfile("./smoke.log").read()


@pytest.mark.parametrize("settings", [dict(GPU_CHECK_STEPS="env,gpu"), dict(GPU_CHECK_LIMITS="pytest=soon")])
def test_unknown_steps_and_malformed_limits_are_refused(tmp_path, settings):
    steps = settings.pop("GPU_CHECK_STEPS", "env")
    result = run_check(tmp_path / "out", steps, **settings)
    assert result.returncode == 2 and "gpu_check:" in result.stderr
    assert not (tmp_path / "out" / "summary.txt").exists()
