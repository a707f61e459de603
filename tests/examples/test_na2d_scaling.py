"""``examples/na2d_scaling.py`` on its smallest setting: one repeat, maps of 5 and 14, kernels 3 and 7,
``B = 1``; the lines it prints (the matmul rate, the header, one row per shape with the paths the
``cpu`` rule took and positive timings)."""
import pytest

from tests.examples.test_examples import load_example

TINY = ["--repeat", "1", "--maps", "5", "14", "--kernels", "3", "7", "--batches", "1"]


@pytest.fixture(scope="module")
def na2d_scaling():
    return load_example("na2d_scaling")


def _rows(lines):
    """The shape rows: ``(B, map, k) -> (paths, [fwd min, fwd med, f+b min, f+b med, ns, %mm fwd, %mm f+b])``."""
    rows = {}
    for line in lines:
        fields = line.replace("/", " / ").split()
        batch, side, kernel, forward, _, backward = fields[:6]
        numbers = [float(f) for f in fields[6:] if f != "/"]
        rows[int(batch), int(side), int(kernel)] = (f"{forward}/{backward}", numbers)
    return rows


@pytest.mark.parametrize("clock", ["wall clock", "CPU time"])
def test_smallest_run_prints_one_row_per_shape(na2d_scaling, capsys, clock):
    na2d_scaling.main(TINY + (["--cpu-time"] if clock == "CPU time" else []))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("matmul rate ") and lines[0].endswith(f"GFLOP/s (float32, 1024^3, {clock})")
    rate = float(lines[0].split()[2])
    assert rate > 0
    assert lines[1].split() == ["B", "map", "k", "paths", "(fwd/bwd)", "fwd", "ms", "min/med", "f+b", "ms",
                                "min/med", "ns/HWk2", "f+b", "%mm", "fwd", "%mm", "f+b"]
    rows = _rows(lines[2:])
    # a 7x7 window on a 5x5 map is skipped; a 14x14 map of 196 tokens stays dense forward, while its
    # backward of 9 slots leaves dense above 100 tokens (general), and a window of 49 slots takes the
    # tiled backward
    assert {shape: paths for shape, (paths, _) in rows.items()} == {
        (1, 5, 3): "dense/dense", (1, 14, 3): "dense/general", (1, 14, 7): "dense/tiled"}
    for (batch, side, kernel), (_, numbers) in rows.items():
        fwd_min, fwd_med, both_min, both_med, ns_per_unit, share_fwd, share_both = numbers
        assert 0 < fwd_min <= fwd_med and 0 < both_min <= both_med  # one repeat: min and median agree
        units = batch * 4 * side * side * kernel * kernel  # 4 heads
        # ns per H W k^2 from the printed milliseconds, each rounded to its printed digits
        assert abs(ns_per_unit - both_min * 1e6 / units) <= 0.005 * 1e6 / units + 0.05 + 1e-9
        # the shares of the matmul rate from the printed times and rate, each rounded to its printed
        # digits; a tiny map can round its share to 0.0, so the bounds, not the sign, are checked
        flops_fwd = 4.0 * units * 32
        for share, flops, ms in ((share_fwd, flops_fwd, fwd_min), (share_both, 3 * flops_fwd, both_min)):
            assert share >= 0
            slowest = 100.0 * flops / ((ms + 0.005) * 1e-3) / ((rate + 0.05) * 1e9)
            assert share >= slowest - 0.05 - 1e-9
            if ms > 0.005:
                fastest = 100.0 * flops / ((ms - 0.005) * 1e-3) / ((rate - 0.05) * 1e9)
                assert share <= fastest + 0.05 + 1e-9


def test_large_maps_are_skipped_for_batches_above_one(na2d_scaling, capsys):
    na2d_scaling.main(["--repeat", "1", "--maps", "56", "--kernels", "3", "--batches", "8"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:3] == ["B", "map", "k"]
