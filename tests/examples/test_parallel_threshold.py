"""examples/parallel_threshold.py: the recorded small calls, their table, one process's measurement with a
threshold of its own, and the rounds of the whole-step comparison (their processes stubbed)."""
import subprocess

import numpy as np

from refvit.kernels.cpu import _threads
from tests.examples.test_examples import load_example


def test_small_calls_are_the_kernel_calls_below_the_size_and_rerun_alike():
    script = load_example("parallel_threshold")
    calls = script.small_calls("dinat_nano", below=4096, batch=2)
    assert calls, "a batch of 2 has kernel calls below 4096 elements"
    assert all(size < 4096 and size == _threads.largest_size(args) for _, args, size in calls)
    names = {fn.__module__.rsplit(".", 1)[-1] for fn, _, _ in calls}
    assert {"linear", "layer_norm", "cross_entropy"} <= names
    fn, args, _ = next((c for c in calls if c[0].__module__.endswith(".linear") and c[0].__name__ == "forward"))
    one, every = script.time_call(fn, args, repeat=3)
    assert one > 0 and every > 0
    x, weight, bias = args  # the recorded call still computes the linear map
    np.testing.assert_allclose(fn(*args), x @ weight.T + bias, rtol=1e-5, atol=1e-5)


def test_scan_table_sums_and_orders_by_change(monkeypatch, capsys):
    script = load_example("parallel_threshold")
    table = {("linear.forward", 8192): [3, 30.0, 20.0], ("relu.forward", 640): [1, 2.0, 3.0],
             ("gelu.backward", 16384): [2, 40.0, 25.0]}
    script.print_scan("smt_nano", 32768, table)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("smt_nano: 6 kernel calls of one training step below 32768 elements")
    assert "72 us on one thread, 48 us on" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["gelu.backward", "linear.forward", "relu.forward"]
    assert lines[2].split()[1:] == ["16384", "2", "40.0", "25.0", "-15.0"]


def test_one_measurement_uses_its_own_threshold(monkeypatch, capsys):
    script = load_example("parallel_threshold")
    seen = []
    spin_count = script._spin_count()
    monkeypatch.setattr(script, "_spin_count", lambda: spin_count)
    monkeypatch.setattr(spin_count, "measure", lambda *a: seen.append(_threads.PARALLEL_MIN_SIZE) or (1, 2, 3, 4))
    before = _threads.PARALLEL_MIN_SIZE
    try:
        script.main(["--measure", "123", "--model", "dinat_nano"])
    finally:
        _threads.PARALLEL_MIN_SIZE = before
    assert seen == [123] and capsys.readouterr().out.split() == ["1.00", "2.00", "3.00", "4.00"]


def test_thresholds_take_turns_and_the_table_gives_median_and_range(monkeypatch, capsys):
    script = load_example("parallel_threshold")
    spin_count = script._spin_count()
    monkeypatch.setattr(script, "_spin_count", lambda: spin_count)
    seen = []

    def fake_run(command, env, **kwargs):
        seen.append(command[command.index("--measure") + 1])
        step = float(len(seen))
        return subprocess.CompletedProcess(command, 0, stdout=f"{step} {2 * step} {step / 2} {step}\n")

    monkeypatch.setattr(spin_count.subprocess, "run", fake_run)
    script.main(["--model", "smt_nano", "--sizes", "32768,4096", "--rounds", "2"])
    assert seen == ["32768", "4096"] * 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("smt_nano, batch 64") and "2 rounds" in lines[0]
    assert lines[2].split()[:3] == ["32768", "2.0", "(1.0-3.0)"]
    assert lines[3].split()[:3] == ["4096", "3.0", "(2.0-4.0)"]
