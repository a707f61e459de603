"""``examples/results_table.py``: the order of the runs and how figures over several runs are printed."""
import json
import os

from tests.examples.test_examples import load_example

table = load_example("results_table")


def metrics(accuracy, wall, rate):
    return dict(parameters=1234, test_accuracy=accuracy, epochs=2, wall_seconds=wall, images_per_second=rate)


def test_a_figure_every_run_printed_alike_is_given_once():
    assert table.spread([95.12, 95.14], "{:.1f}", "%") == "95.1%"
    assert table.spread([64.6, 65.1, 65.4], "{:.0f}", " s") == "65 s"


def test_a_figure_that_moved_is_the_median_and_range():
    assert table.spread([70.0, 64.0, 66.0], "{:.0f}", " s") == "66 s (64-70)"
    rows = list(table.cells([("m", [metrics(0.95, 60.0, 400.0), metrics(0.96, 70.0, 300.0),
                                    metrics(0.95, 65.0, 350.0)]), ("f", None)]))
    assert rows == [("m", "1,234", "95.0% (95.0-96.0)", "2", "65 s (60-70)", "350 (300-400)"),
                    ("f", "", "failed", "", "", "")]


def test_several_runs_take_turns_and_each_has_its_folder(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_train(name, out, args):
        calls.append((name, os.path.relpath(out, tmp_path)))
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "metrics.json"), "w") as handle:
            json.dump(metrics(0.9, 10.0 * len(calls), 100.0), handle)
        return 0

    monkeypatch.setattr(table, "train", fake_train)
    assert table.main(["--models", "a_nano,b_nano", "--runs", "2", "--root", str(tmp_path), "--markdown"]) == 0
    assert calls == [("a_nano", os.path.join("a_nano", "run-1")), ("b_nano", os.path.join("b_nano", "run-1")),
                     ("a_nano", os.path.join("a_nano", "run-2")), ("b_nano", os.path.join("b_nano", "run-2"))]
    out = capsys.readouterr().out
    assert "2 runs per model with the same seed" in out and "--runs 2`" in out
    assert "| a_nano | 1,234 | 90.0% | 2 | 20 s (10-30) | 100 |" in out
    assert "| b_nano | 1,234 | 90.0% | 2 | 30 s (20-40) | 100 |" in out


def test_a_failed_run_fails_the_table_and_its_model_is_not_trained_again(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_train(name, out, args):
        calls.append(name)
        return 1

    monkeypatch.setattr(table, "train", fake_train)
    assert table.main(["--models", "a_nano", "--runs", "3", "--root", str(tmp_path)]) == 1
    assert calls == ["a_nano"]
    assert "failed" in capsys.readouterr().out
