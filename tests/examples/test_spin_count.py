"""examples/spin_count.py: one process's measurement, and the table the rounds make (its runs stubbed)."""
import subprocess

from tests.examples.test_examples import load_example


def test_one_measurement_prints_four_positive_times(capsys):
    script = load_example("spin_count")
    script.main(["--measure", "--model", "dinat_nano", "--steps", "1", "--batch", "2"])
    values = [float(v) for v in capsys.readouterr().out.split()]
    assert len(values) == 4 and all(v > 0 for v in values)


def test_table_gives_median_and_range_per_count(monkeypatch, capsys):
    script = load_example("spin_count")
    seen = []

    def fake_run(command, env, **kwargs):
        seen.append(env["GOMP_SPINCOUNT"])
        step = float(len(seen))
        return subprocess.CompletedProcess(command, 0, stdout=f"{step} {2 * step} {step / 2} {step}\n")
    monkeypatch.setattr(script.subprocess, "run", fake_run)
    script.main(["--counts", "10,20", "--rounds", "3"])
    assert seen == ["10", "20"] * 3  # the counts take turns
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("dinat_nano, batch 64") and "3 rounds" in lines[0]
    ten, twenty = lines[2].split(), lines[3].split()
    assert ten[:3] == ["10", "3.0", "(1.0-5.0)"] and ten[3] == "6.0" and ten[4:] == ["1.5", "(0.5-2.5)"]
    assert twenty[:3] == ["20", "4.0", "(2.0-6.0)"]
