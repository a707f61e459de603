"""``examples/readme_figures.py``: the README rewriter and the merging of several bench runs."""
import pytest

from tests.examples.test_examples import load_example

figures = load_example("readme_figures")

TEXT = ("intro\n<!-- bench:begin -->\nold table\n| a |\n<!-- bench:end -->\n"
        "after\n<!-- results:begin -->\nkept\n<!-- results:end -->\n")


def test_only_the_text_between_the_markers_is_replaced(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(TEXT)
    figures.rewrite(str(path), "bench", "| new |\n|---|\n| 1 |\n")
    assert path.read_text() == TEXT.replace("old table\n| a |\n", "| new |\n|---|\n| 1 |\n")
    figures.rewrite(str(path), "bench", "second")
    assert path.read_text() == TEXT.replace("old table\n| a |\n", "second\n")


@pytest.mark.parametrize("text", ["no markers", "<!-- bench:end -->\n<!-- bench:begin -->",
                                  "<!-- bench:begin -->\n<!-- bench:begin -->\n<!-- bench:end -->"])
def test_missing_misplaced_or_repeated_markers_are_refused(text):
    with pytest.raises(ValueError, match="bench:begin"):
        figures.replace_between(text, "bench", "x")


def test_several_runs_merge_into_lists_per_figure():
    def run(ms, torch_s):
        return {"rows": [dict(case="c", backend="cpu", forward_backward_ms=ms)],
                "compare": [dict(case="m", model="m", mode="train", batch=1, size=8, refvit_s=[1.0],
                                 torch_s=[torch_s])]}

    rows, compared = figures.merge_runs([run(2.0, 3.0), run(4.0, 5.0)])
    assert rows == [dict(case="c", backend="cpu", forward_backward_ms=[2.0, 4.0])]
    assert compared == [dict(case="m", model="m", mode="train", batch=1, size=8, refvit_s=[1.0, 1.0],
                             torch_s=[3.0, 5.0])]


def test_official_table_times_several_steps_per_round(monkeypatch):
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        return type("Done", (), {"stdout": "| table |\n"})()

    monkeypatch.setattr(figures.subprocess, "run", run)
    body = figures.official_markdown(3, 5)
    (command,) = calls
    assert command[command.index("--rounds") + 1] == "3" and command[command.index("--repeat") + 1] == "5"
    assert body.startswith("| table |") and "--rounds 3 --repeat 5" in body


def test_official_rounds_and_steps_default_to_three_and_five(monkeypatch):
    seen = {}
    monkeypatch.setattr(figures, "official_markdown", lambda rounds, repeat: seen.update(rounds=rounds, repeat=repeat)
                        or "table")
    monkeypatch.setattr(figures, "rewrite", lambda path, name, body: seen.update(name=name, body=body))
    assert figures.main(["--only", "official"]) == 0
    assert seen == dict(rounds=3, repeat=5, name="official", body="table")
