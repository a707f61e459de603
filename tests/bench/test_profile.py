"""``refvit bench --profile``: one training step timed op by op.

A nano model runs for real at a tiny batch over two timed steps, so the tests check the accounting
(the rows add up to the steps, nested calls are counted once, the dispatch is restored), not the speed.
"""
import json
import math

import numpy as np
import pytest

from refvit.bench import profile, runner
from refvit.errors import UserError
from refvit.ops import _dispatch

MODEL = "nat_nano"


@pytest.fixture(scope="module")
def result():
    return profile.profile_step(MODEL, batch=4, steps=2, warmup=1)


def by_key(result):
    return {(row["op"], row["step"]): row for row in result.rows()}


def test_the_rows_add_up_to_the_step(result):
    rows = result.rows()
    mean_step_ms = sum(result.step_seconds) / len(result.step_seconds) * 1e3
    assert math.isclose(sum(row["ms_per_step"] for row in rows), mean_step_ms, rel_tol=1e-9)
    assert math.isclose(sum(row["share"] for row in rows), 1.0, rel_tol=1e-9)
    assert all(row["ms_per_step"] > 0 for row in rows)


def test_known_ops_appear_in_both_steps_with_matching_calls(result):
    rows = by_key(result)
    for op in ("linear", "layer_norm", "linear_gelu", "na2d", "add", "cross_entropy"):  # the MLPs: linear_gelu
        forward, backward = rows[(op, "forward")], rows[(op, "backward")]
        assert forward["calls_per_step"] == backward["calls_per_step"] >= 1, op
    assert rows[("cross_entropy", "forward")]["calls_per_step"] == 1
    for phase in ("forward", "backward"):
        assert rows[(profile.OUTSIDE, phase)]["calls_per_step"] == 0
    assert rows[(profile.OPTIMIZER, "step")]["ms_per_step"] > 0


def test_the_dispatch_is_restored(result):
    assert _dispatch.run.__module__ == "refvit.ops._dispatch"


def test_a_call_inside_another_counts_towards_the_outer_one_only():
    inner = lambda x: _dispatch.run("relu", "numpy", "forward", lambda y: y + 1, (x,))  # noqa: E731
    with profile._OpClock() as clock:
        out = _dispatch.run("gelu", "numpy", "forward", inner, (np.zeros(3),))
        seconds, calls = clock.take()
    np.testing.assert_array_equal(out, np.ones(3))
    assert dict(calls) == {("gelu", "forward"): 1}
    assert set(seconds) == {("gelu", "forward")}
    assert _dispatch.run.__module__ == "refvit.ops._dispatch"


def test_the_table_and_the_json_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "profile.json"
    assert runner.main(["--profile", MODEL, "--batch", "2", "--steps", "1", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{MODEL}: training step, batch 2 of 32x32, float32, backend cpu")
    assert profile.OUTSIDE in text and profile.OPTIMIZER in text and "linear" in text
    saved = json.loads(path.read_text())
    assert saved["model"] == MODEL and len(saved["step_ms"]) == 1
    assert {row["op"] for row in saved["rows"]} >= {"linear", profile.OUTSIDE, profile.OPTIMIZER}


def test_an_unknown_model_is_refused():
    with pytest.raises(UserError, match="'--profile' must name a model"):
        profile.profile_step("no_such_model", steps=1)
