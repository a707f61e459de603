"""``refvit conform MODULE:FUNCTION --op OP``: exit 0 on a pass, 1 on a mismatch (with the table), 2 on a
mistake in the command."""
from __future__ import annotations

from refvit import cli
from refvit.testing.conformance import CHECKS
from refvit.train.commands.conform import OPS

IMPLS = "tests.testing.conformance.na_impls"


def test_a_correct_implementation_exits_0(capsys):
    argv = ["conform", f"{IMPLS}:na_torch", "--op", "na2d", "--framework", "torch", "--cases", "basic,rpb,causal"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "na2d (layout refvit, torch, forward and backward): 3 cases; PASS" in out


def test_a_numpy_implementation_with_its_backward_in_the_natten_layout_exits_0(capsys):
    argv = ["conform", f"{IMPLS}:na2d_natten_numpy", "--op", "na2d", "--layout", "natten",
            "--backward-fn", f"{IMPLS}:na2d_natten_numpy_backward", "--exclude", "stride"]
    assert cli.main(argv) == 0
    assert "PASS" in capsys.readouterr().out


def test_a_broken_implementation_exits_1_with_the_table_and_writes_reproducers(capsys, tmp_path):
    argv = ["conform", f"{IMPLS}:na2d_causal_one_late_torch", "--op", "na2d", "--framework", "torch",
            "--cases", "basic,causal-one-axis", "--save-reproducers", str(tmp_path)]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 failing case(s)" in out
    table = out.splitlines()
    assert any(line.split()[:4] == ["causal-one-axis", "float64", "FAIL", "out"] for line in table)
    assert any(line.split()[:2] == ["basic", "float64"] and line.split()[2] == "ok" for line in table)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["causal-one-axis.npz", "causal-one-axis.py"]


def test_a_forward_only_check_of_a_broken_numpy_function_exits_1(capsys):
    argv = ["conform", f"{IMPLS}:na2d_border_off_by_one_numpy", "--op", "na2d", "--forward-only",
            "--cases", "border-rectangular-map"]
    assert cli.main(argv) == 1
    assert "forward only" in capsys.readouterr().out


def test_mistakes_in_the_command_exit_2_with_one_line(capsys):
    for target, extra in (("no_such_module_here:fn", []), (f"{IMPLS}:no_such_function", []), ("no-colon", []),
                          (f"{IMPLS}:na_numpy", []),  # numpy without --backward-fn
                          (f"{IMPLS}:na_numpy", ["--layout", "nhwc", "--forward-only"]),
                          (f"{IMPLS}:na_numpy", ["--cases", "nope", "--forward-only"])):
        assert cli.main(["conform", target, "--op", "na2d", *extra]) == 2, (target, extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("refvit conform: error: "), err


def test_the_parser_lists_every_op_of_the_kit():
    assert OPS == tuple(sorted(CHECKS))


def test_head_dim_and_dtype_reach_the_check(capsys):
    argv = ["conform", f"{IMPLS}:na2d_natten_torch", "--op", "na2d", "--layout", "natten", "--framework", "torch",
            "--cases", "basic,causal", "--head-dim", "8", "--dtype", "float32"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert ["basic", "float32", "ok"] in [line.split() for line in out.splitlines()]
    assert cli.main(["conform", f"{IMPLS}:na_torch", "--op", "conv2d", "--head-dim", "8"]) == 2
