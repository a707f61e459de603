"""examples/linear_shapes.py: one line per shape and their sum, for refvit and for PyTorch (wall time, one round)."""
import pytest

from tests.examples.test_examples import load_example


@pytest.mark.parametrize("extra, side", [([], "refvit cpu"), (["--torch"], "PyTorch")])
def test_prints_each_shape_and_the_sum(capsys, extra, side):
    script = load_example("linear_shapes")
    script.main(["--repeat", "1"] + extra)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(side)
    assert len(lines) == len(script.SHAPES) + 2
    rows = [line.rsplit(None, 3) for line in lines[1:]]
    forward, backward = (sum(float(row[i]) for row in rows[:-1]) for i in (1, 3))
    assert all(float(row[1]) > 0 for row in rows[:-1])
    if side == "refvit cpu":  # PyTorch's backward is a difference of two timings: noise can make it negative
        assert all(float(row[3]) > 0 for row in rows[:-1])
    assert rows[-1][0] == "all shapes"
    assert float(rows[-1][1]) == pytest.approx(forward, abs=0.01) and float(rows[-1][3]) == pytest.approx(backward, abs=0.01)


@pytest.mark.parametrize("extra, side", [(["--gelu", "fused"], "refvit cpu linear + gelu fused"),
                                         (["--gelu", "separate"], "refvit cpu linear + gelu separate"),
                                         (["--gelu", "fused", "--torch"], "PyTorch")])
def test_gelu_prints_the_fc1_shapes_and_the_dinat_nano_step(capsys, extra, side):
    script = load_example("linear_shapes")
    script.main(["--repeat", "1"] + extra)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(side)
    assert len(lines) == len(script.GELU_SHAPES) + 2
    assert [line.split(" -> ")[0] for line in lines[1:-1]] == [f"({r}, {i})" for r, i, _, _ in script.GELU_SHAPES]
    total, step = lines[-1].split("   dinat_nano step: ")
    forward, backward = (float(v) for v in step.split(" | "))
    assert total.startswith("all shapes") and forward > 0 and backward != 0


def test_official_prints_the_last_stage_shapes(capsys):
    script = load_example("linear_shapes")
    script.main(["--repeat", "1", "--official"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" -> ")[0] for line in lines[1:-1]] == [f"({r}, {i})" for r, i, _ in script.OFFICIAL_SHAPES]
    assert lines[-1].startswith("all shapes")
