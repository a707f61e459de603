"""examples/cold_start.py on the ``numpy`` backend (nothing to compile), one batch: a cold and a warm row."""
from tests.examples.test_examples import load_example


def test_cold_start_times_a_cold_and_a_warm_run(capsys):
    cold_start = load_example("cold_start")
    assert cold_start.main(["--models", "dinat_nano", "--runs", "1", "--limit-batches", "1", "--backend", "numpy",
                            "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "cores" in lines[0] and "examples/cold_start.py --models dinat_nano --runs 1" in lines[0]
    rows = [line for line in lines if line.startswith("| `dinat_nano`")]
    assert [row.split(",")[1].split("(")[0].strip() for row in rows] == ["cold cache", "warm cache"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        first_line, end = (float(cell.rstrip(" s")) for cell in cells[2:4])
        assert 0 < first_line <= end


def test_span_gives_the_range_or_none():
    cold_start = load_example("cold_start")
    assert cold_start.span([None, None]) == "none"
    assert cold_start.span([2.04]) == "2.0 s"
    assert cold_start.span([3.0, None, 1.25]) == "1.2-3.0 s"
