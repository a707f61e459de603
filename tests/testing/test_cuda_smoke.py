"""``refvit.testing.cuda_smoke``, the driver that runs every op's cuda kernels once (for compute-sanitizer).

On the simulator (CI's ``cuda`` run) a few ops' cases run for real, the extra cases included; the whole
driver runs on a GPU in ``.ci/gpu_check``.
"""
import json

import pytest

from refvit import ops
from refvit.testing import cuda_smoke


def test_every_op_with_cuda_kernels_has_a_case_and_the_extras_name_real_ops():
    cases = cuda_smoke.smoke_cases()
    assert {case.op for case in cases} == {spec.name for spec in ops.table() if "cuda" in spec.backends}
    assert {case.op for case in cuda_smoke.EXTRA} <= set(ops.list_ops())
    assert len({case.name for case in cases}) == len(cases)
    only = cuda_smoke.smoke_cases(["na2d", "linear"])
    assert {case.op for case in only} == {"na2d", "linear"} and len(only) == 4
    with pytest.raises(SystemExit, match="no case for nope"):
        cuda_smoke.smoke_cases(["nope"])


def test_without_a_gpu_or_the_simulator_it_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr("refvit.backend.cuda_available", lambda: False)
    assert cuda_smoke.main(["--only", "relu"]) == 2
    assert "cannot run here" in capsys.readouterr().err


@pytest.mark.cuda
def test_the_chosen_ops_pass_against_numpy_and_the_json_lists_them(tmp_path, capsys):
    path = tmp_path / "smoke.json"
    assert cuda_smoke.main(["--only", "attention,na2d,layer_norm,softmax", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "7 passed, 0 failed" in out and "FAIL" not in out
    report = json.loads(path.read_text())
    assert report["dtype"] == "float32" and len(report["results"]) == 7
    assert all(r["ok"] and r["seconds"] > 0 for r in report["results"])
    assert "attention (1,2,Nq|Nk,8) with bias" in {r["case"] for r in report["results"]}


@pytest.mark.cuda
def test_a_mismatch_is_reported_and_the_run_goes_on(monkeypatch, capsys):
    calls = []

    def mismatch(op, *args, **kwargs):
        calls.append(op.OP)
        if op.OP == "relu":
            raise AssertionError("relu output 0 (cuda vs numpy): 3 of 8 elements differ\nsecond line")

    monkeypatch.setattr("refvit.testing.check_backends", mismatch)
    assert cuda_smoke.main(["--only", "relu,tanh"]) == 1
    out = capsys.readouterr().out
    assert calls == ["relu", "tanh"]
    assert "FAIL" in out and "AssertionError: relu output 0 (cuda vs numpy): 3 of 8 elements differ" in out
    assert "second line" not in out and "1 passed, 1 failed" in out
