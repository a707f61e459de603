"""The conformance kit on neighbourhood attention: correct implementations pass, each planted
mistake of the window rule fails exactly the cases that exercise it."""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from refvit.testing.conformance import ConformanceError, check_na1d, check_na2d
from refvit.testing.conformance.na import NA2D_CASES
from tests.testing.conformance import na_impls

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def broken(bug):
    return (functools.partial(na_impls.na_numpy, bug=bug), functools.partial(na_impls.na_numpy_backward, bug=bug))


def failing(report):
    return {failure.name for failure in report.failures}


def with_feature(feature):
    return {case.name for case in NA2D_CASES if feature in case.features}


def test_correct_numpy_implementation_passes_forward_and_backward_with_random_cases():
    fn, backward_fn = broken(None)
    report = check_na2d(fn, backward_fn=backward_fn, cases="standard+random", random=10)
    assert report.passed, str(report)
    assert len(report.results) == len(NA2D_CASES) and report.random_examples == 10
    assert check_na1d(fn, backward_fn=backward_fn, cases="standard+random", random=10).passed


def test_correct_heads_last_natten_layout_implementation_passes():
    report = check_na2d(na_impls.na2d_natten_numpy, layout="natten", backward_fn=na_impls.na2d_natten_numpy_backward)
    assert report.passed, str(report)


def test_correct_torch_autograd_implementation_passes():
    report = check_na2d(na_impls.na_torch, framework="torch", cases="standard+random", random=5)
    assert report.passed, str(report)


def test_a_natten_style_torch_function_without_rpb_passes_with_rpb_excluded():
    report = check_na2d(na_impls.na2d_natten_torch, layout="natten", framework="torch", exclude=("rpb",))
    assert report.passed, str(report)
    assert not any("rpb" in case.features for case in report.results.values())
    without_exclude = check_na2d(na_impls.na2d_natten_torch, layout="natten", framework="torch", cases=["rpb"])
    assert without_exclude.failure("rpb").error.startswith("TypeError: ")  # it has no rpb argument


def test_window_start_off_by_one_at_the_border_fails_the_border_cases_only():
    fn, backward_fn = broken("border-off-by-one")
    report = check_na2d(fn, backward_fn=backward_fn)
    assert {"basic", "border-rectangular-map", "rectangular-kernel"} <= failing(report)
    assert {"kernel-equals-map", "causal", "tiny-map"}.isdisjoint(failing(report))  # no room to shift the window
    assert report.failure("border-rectangular-map").what[0] == "out"


def test_rpb_index_without_the_dilation_division_fails_only_rpb_with_dilation():
    fn, backward_fn = broken("rpb-without-dilation")
    report = check_na2d(fn, backward_fn=backward_fn)
    assert failing(report) == with_feature("rpb") & with_feature("dilation") == {"rpb-dilation", "float32-rpb"}
    assert "grad rpb" in report.failure("rpb-dilation").what


def test_dilation_groups_assumed_equal_length_fails_where_the_length_is_not_a_multiple():
    fn, backward_fn = broken("equal-dilation-groups")
    report = check_na2d(fn, backward_fn=backward_fn)
    assert "dilation-uneven-groups" in failing(report)
    assert "dilation-kernel-fills-map" not in failing(report)  # 6 = 3 groups of 2: equal lengths are right
    assert failing(report) <= with_feature("dilation")


def test_causal_mask_one_step_late_fails_every_causal_case_and_shrinks_to_a_tiny_map():
    fn, backward_fn = broken("causal-one-late")
    report = check_na2d(fn, backward_fn=backward_fn, cases="standard+random", random=20)
    assert failing(report) == with_feature("causal") | {"random-shrunk"}
    shrunk = report.failure("random-shrunk").case
    assert any(shrunk.params["is_causal"]) and np.prod(shrunk.params["shape"]) <= 4
    assert report.failure("causal-one-axis").what == ["out", "grad q", "grad k", "grad v"]


def test_causal_mask_one_step_late_in_torch_is_caught_through_autograd():
    report = check_na2d(na_impls.na2d_causal_one_late_torch, framework="torch")
    assert failing(report) == with_feature("causal")


def test_stride_leader_at_the_block_start_fails_the_strided_cases():
    fn, backward_fn = broken("stride-leader-at-block-start")
    assert failing(check_na2d(fn, backward_fn=backward_fn)) == with_feature("stride")


def test_na1d_catches_the_unequal_dilation_groups_too():
    fn, backward_fn = broken("equal-dilation-groups")
    assert "dilation-uneven-groups" in failing(check_na1d(fn, backward_fn=backward_fn))


def test_exclude_drops_the_cases_using_a_feature():
    fn, backward_fn = broken("rpb-without-dilation")
    report = check_na2d(fn, backward_fn=backward_fn, exclude=("rpb", "stride"))
    assert report.passed and not any(name.startswith(("rpb", "stride")) for name in report.results)


def test_exclude_kernel_1_drops_every_case_with_a_kernel_of_one_on_some_axis():
    """NATTEN refuses kernels below 2: ``exclude=("kernel-1",)`` leaves out exactly those cases."""
    fn, backward_fn = broken("rpb-without-dilation")
    report = check_na2d(fn, backward_fn=backward_fn, exclude=("rpb", "kernel-1"))
    assert report.passed and {"kernel-1", "tiny-map"}.isdisjoint(report.results) and "basic" in report.results


def test_strict_raises_an_assertion_error_holding_the_report():
    fn, backward_fn = broken("causal-one-late")
    with pytest.raises(ConformanceError) as caught:
        check_na2d(fn, backward_fn=backward_fn, cases=["basic", "causal"], strict=True)
    assert isinstance(caught.value, AssertionError) and failing(caught.value.report) == {"causal"}
    assert "FAIL out" in str(caught.value)


def test_an_exception_in_the_users_function_is_a_failing_case():
    def raises(q, k, v, kernel_size, **options):
        raise NotImplementedError("no rpb here") if "rpb" in options else ValueError("boom")

    report = check_na2d(raises, backward=False, cases=["basic", "rpb"])
    assert report.failure("rpb").error == "NotImplementedError: no rpb here"
    assert report.failure("basic").what == ["error"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="layout"):
        check_na2d(na_impls.na_numpy, layout="nhwc", backward=False)
    with pytest.raises(ValueError, match="backward_fn"):
        check_na2d(na_impls.na_numpy)
    with pytest.raises(ValueError, match="no case named"):
        check_na2d(na_impls.na_numpy, backward=False, cases=["no-such-case"])


def test_the_reproducer_runs_with_numpy_only_and_shows_the_error(tmp_path):
    report = check_na2d(na_impls.na2d_border_off_by_one_numpy, backward=False, cases=["border-rectangular-map"])
    failure = report.failure("border-rectangular-map")
    script = failure.save(tmp_path)
    assert "refvit" not in failure.reproducer and (tmp_path / "border-rectangular-map.npz").exists()
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    errors = {match.group(1): float(match.group(2))
              for match in re.finditer(r"^(.*) largest error (\S+) at", done.stdout, re.MULTILINE)}
    assert errors == {"out": pytest.approx(failure.mismatches[0].max_error)}
    assert str(failure.mismatches[0].index).replace(" ", "") in done.stdout.replace(" ", "")


def test_a_torch_reproducer_differentiates_with_autograd():
    report = check_na2d(na_impls.na2d_causal_one_late_torch, framework="torch", cases=["causal"])
    text = report.failure("causal").reproducer
    assert "from tests.testing.conformance.na_impls import na2d_causal_one_late_torch as fn" in text
    assert 'out.backward(torch.tensor(data["dout"]))' in text and 'report("grad v"' in text


def test_dtype_runs_every_case_in_float32_with_float32_tolerances():
    fn, backward_fn = broken(None)
    report = check_na2d(fn, backward_fn=backward_fn, dtype="float32", cases="standard+random", random=3)
    assert report.passed, str(report)
    assert {case.dtype for case in report.results.values()} == {"float32"}
    with pytest.raises(ValueError, match="dtype"):
        check_na2d(fn, backward_fn=backward_fn, dtype="float16")


def test_head_dim_sets_the_size_of_every_head():
    fn, backward_fn = broken(None)
    report = check_na2d(fn, backward_fn=backward_fn, head_dim=8, cases=["basic", "rpb"])
    assert report.passed, str(report)
    assert report.failures == [] and report.results["basic"].params["head_dim"] == 8
    report = check_na2d(na_impls.na2d_border_off_by_one_numpy, backward=False, head_dim=8, cases=["basic"])
    assert report.failure("basic").arrays["q"].shape == (1, 2, 5, 5, 8)
