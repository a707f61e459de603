"""``refvit bench``'s whole-model comparison with PyTorch and its Markdown output.

The workers run for real (each side a process of its own) on one nano model at a small batch and a
single timed call, so the test checks the plumbing and that the figures are finite, not the speed.
"""
import io
import math
import re

import pytest

from refvit.bench import compare, markdown, runner
from refvit.bench.compare import CompareCase

ROW = re.compile(r"^\|( [^|]* \|)+$")
SEPARATOR = re.compile(r"^\|(-{3,}:?\|)+$")


def parse_tables(text):
    """Every Markdown table of ``text`` as a list of rows of cells; fails on a malformed table line."""
    tables, current = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        if current is None:
            current = []
            tables.append(current)
        if SEPARATOR.match(line):
            assert len(current) == 1, f"a separator line must follow the header only: {line!r}"
            assert line.count("|") - 1 == len(current[0]), f"separator width differs from the header: {line!r}"
            continue
        assert ROW.match(line), f"not a Markdown table row: {line!r}"
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert not current or len(cells) == len(current[0]), f"row width differs from the header: {line!r}"
        current.append(cells)
    return tables


@pytest.fixture(scope="module")
def compared():
    case = CompareCase("vs torch smt_nano (4,32,32,3)", "smt_nano", 4, 32, ("infer", "train"))
    out = io.StringIO()
    rows = compare.run_compare([case], rounds=2, repeat=1, out=out, torch_device="cpu")
    return rows, out.getvalue()


def test_both_sides_give_finite_times_and_a_ratio(compared):
    rows, text = compared
    assert [row["mode"] for row in rows] == ["infer", "train"]
    assert all(row["torch_device"] == "cpu" for row in rows)
    for row in rows:
        for side in ("refvit", "torch"):
            assert len(row[f"{side}_s"]) == 2
            assert all(math.isfinite(s) and s > 0 for s in row[f"{side}_s"])
            assert all(peak >= base > 0 for peak, base in zip(row[f"{side}_rss_mb"], row[f"{side}_rss_base_mb"]))
        assert math.isfinite(compare.paired_ratio(row, "torch")) and compare.paired_ratio(row, "torch") > 0
    assert text.count("smt_nano") == 2


def test_the_comparison_table_is_markdown_with_one_row_per_pass(compared):
    rows, _ = compared
    (table,) = parse_tables(markdown.compare_table(rows))
    assert table[0][:6] == ["model", "pass", "batch", "refvit cpu ms", "PyTorch ms", "PyTorch / refvit"]
    assert [line[1] for line in table[1:]] == ["inference", "training step"]
    ratio = table[2][5]
    median, low, high = (float(x) for x in re.match(r"([\d.]+) \(([\d.]+)-([\d.]+)\)", ratio).groups())
    assert low <= high and median > 0


def test_official_sizes_run_only_when_the_filter_names_them():
    cases = compare.compare_cases()
    names = lambda chosen: {c.model for c in chosen}  # noqa: E731
    nano = {c.model for c in cases if not c.official}
    assert nano == {"coatnet_nano", "cswin_nano", "dinat_nano", "dualvit_nano", "nat_nano", "smt_nano"}
    assert names(compare.selected(cases, None, runner.select)) == nano
    assert names(compare.selected(cases, "vs torch", runner.select)) == nano
    assert names(compare.selected(cases, "official", runner.select)) == set(compare.OFFICIAL)
    assert names(compare.selected(cases, "vs torch official dinat_mini", runner.select)) == {"dinat_mini"}


def test_bench_markdown_prints_the_machine_line_and_a_markdown_table(capsys):
    assert runner.main(["--filter", "softmax", "--backends", "numpy,cpu", "--repeat", "1", "--markdown"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert markdown.cpu_model() in first and "numpy " in first and "numba " in first and "cores" in first
    (table,) = parse_tables(out)
    assert table[0] == ["case (forward+backward ms)", "numpy", "cpu"]
    assert [row[0] for row in table[1:]] == ["softmax (8,4,196,196)"]
    assert all(float(cell) > 0 for cell in table[1][1:])


def test_cells_show_one_sample_as_it_is_and_several_as_median_and_range():
    assert markdown.cell([2.0]) == "2.0"
    assert markdown.cell([3.0, 1.0, 2.0]) == "2.0 (1.0-3.0)"
    assert markdown.cell([0.5, 0.25], scale=1e3, digits=0) == "375 (250-500)"
    assert markdown.cell([]) == ""


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.00GHz\nflags\t: fpu\n")
    assert markdown.cpu_model(str(path)) == "Example CPU @ 2.00GHz"
    assert "3 runs of 2 rounds" in markdown.machine_line(3, 2)


def test_peak_memory_is_read_from_the_process_status(tmp_path):
    from refvit.bench.model_worker import rss_mb

    path = tmp_path / "status"
    path.write_text("Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    assert rss_mb(str(path)) == 200.0
    assert rss_mb(str(tmp_path / "missing")) > 0


def test_the_ratio_is_the_median_of_the_rounds_ratios():
    # round 2 caught the machine slow on the PyTorch side only: the rounds' ratios are 1.1, 0.5, 1.1, and
    # the ratio of the medians (1.1 / 2.0) would report that one round for the whole row
    row = dict(model="m", mode="train", batch=2, size=8, refvit_s=[1.0, 2.0, 3.0], torch_s=[1.1, 1.0, 3.3],
               refvit_rss_mb=[1.0] * 3, refvit_rss_base_mb=[1.0] * 3, torch_rss_mb=[1.0] * 3,
               torch_rss_base_mb=[1.0] * 3)
    assert compare.paired_ratio(row, "torch") == pytest.approx(1.1)
    (table,) = parse_tables(markdown.compare_table([row]))
    assert table[1][5] == "1.10 (0.50-1.10)"
    assert "x1.10 (0.50-1.10)" in compare.text_line(dict(row, case="vs torch m"))
