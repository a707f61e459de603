"""conv2d's ``backward(dout, cache, needs=...)``: every pattern of flags on every path gives the full
backward's gradients, to the bit, and ``None`` for the ones not needed; bad ``needs`` are refused."""
import itertools

import numpy as np
import pytest

from refvit import ops
from refvit.kernels.cpu import conv2d as cpu_conv2d
from refvit.ops._conv_geometry import Window

PATTERNS = list(itertools.product([False, True], repeat=3))

# (x shape, weight shape, options, the cpu path that runs it)
CASES = {
    "stem_7x7_stride_2": ((2, 13, 12, 3), (8, 3, 7, 7), dict(stride=2, padding=3), "conv2d_rows"),
    "rows_3x3": ((2, 7, 6, 4), (5, 4, 3, 3), dict(padding=1), "conv2d_rows"),
    "transposed_3x3": ((2, 6, 5, 20), (6, 20, 3, 3), dict(padding=1), "conv2d_gemm"),
    "stride_2_3x3": ((2, 7, 7, 20), (5, 20, 3, 3), dict(stride=2, padding=1), "conv2d_gemm"),
    "pointwise": ((2, 5, 4, 6), (7, 6, 1, 1), dict(), "conv2d_gemm"),
    "merge_2x2": ((2, 7, 6, 4), (6, 4, 2, 2), dict(stride=2), "conv2d_merge"),
    "grouped": ((2, 6, 5, 8), (8, 4, 3, 3), dict(padding=1, groups=2), "conv2d_direct"),
    "depthwise": ((2, 6, 5, 4), (4, 1, 3, 3), dict(stride=(1, 2), padding=1, groups=4), "depthwise_conv2d"),
}


def case_inputs(name, rng, dtype=np.float32):
    x_shape, w_shape, options, _ = CASES[name]
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(w_shape).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, weight, bias, options


def check_patterns(backward, full):
    """Each pattern gives ``full``'s gradient where its flag is True and ``None`` where it is False."""
    for needs in PATTERNS:
        grads = backward(needs)
        assert len(grads) == 3
        for flag, got, want in zip(needs, grads, full):
            if flag:
                assert got is not None, needs
                assert got.dtype == want.dtype and got.shape == want.shape, needs
                np.testing.assert_array_equal(got, want, err_msg=str(needs))
            else:
                assert got is None, needs


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_pattern_equals_the_full_backward(rng, backend, name):
    x, weight, bias, options = case_inputs(name, rng)
    out, cache = ops.conv2d.forward(x, weight, bias, **options, backend=backend)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    full = ops.conv2d.backward(dout, cache)
    assert all(g is not None for g in full)
    np.testing.assert_array_equal(ops.conv2d.backward(dout, cache, needs=None)[0], full[0])
    check_patterns(lambda needs: ops.conv2d.backward(dout, cache, needs=needs), full)


@pytest.mark.parametrize("name", sorted(CASES))
def test_cases_take_the_path_they_name(name):
    x_shape, w_shape, options, path = CASES[name]
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    window = Window(w_shape[2:], pair(options.get("stride", 1)), pair(options.get("padding", 0)), (1, 1))
    groups = options.get("groups", 1)
    assert cpu_conv2d.choose(x_shape[3], w_shape[0], groups, window).__name__.rsplit(".", 1)[1] == path


def test_without_bias_dbias_stays_none(rng):
    x, weight, _, options = case_inputs("stem_7x7_stride_2", rng)
    out, cache = ops.conv2d.forward(x, weight, None, **options, backend="cpu")
    for needs in PATTERNS:
        assert ops.conv2d.backward(np.ones_like(out), cache, needs=needs)[2] is None


# Tiny grids for the CUDA simulator: the dense/grouped entry (grouped, stride 2) and the depthwise one.
CUDA_CASES = {
    "grouped": ((1, 5, 4, 4), (2, 2, 2, 2), dict(stride=2, padding=1, groups=2)),
    "depthwise": ((1, 4, 4, 3), (3, 1, 3, 3), dict(padding=1, groups=3)),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(CUDA_CASES))
def test_cuda_each_pattern_equals_the_full_backward(rng, name):
    from numba import cuda

    x_shape, w_shape, options = CUDA_CASES[name]
    x = rng.standard_normal(x_shape).astype(np.float32)
    weight = rng.standard_normal(w_shape).astype(np.float32)
    bias = rng.standard_normal(w_shape[0]).astype(np.float32)
    out, cache = ops.conv2d.forward(x, weight, bias, **options, backend="cuda")
    dout = rng.standard_normal(out.shape).astype(np.float32)
    full = ops.conv2d.backward(dout, cache)
    check_patterns(lambda needs: ops.conv2d.backward(dout, cache, needs=needs), full)
    on_device = ops.conv2d.backward(cuda.to_device(dout), cache, needs=(False, True, False))
    assert on_device[0] is None and on_device[2] is None
    np.testing.assert_array_equal(on_device[1].copy_to_host(), full[1])


@pytest.mark.parametrize("needs, error, match", [
    ((True, True), ValueError,
     r"conv2d: 'needs' must have one bool per input in \('x', 'weight', 'bias'\) \(3\); got 2"),
    ((True,) * 4, ValueError, "conv2d: 'needs' must have one bool per input"),
    ((), ValueError, "conv2d: 'needs' must have one bool per input"),
    ((1, 1, 1), TypeError, "conv2d: 'needs' must hold bools; got int for 'x'"),
    ((True, None, True), TypeError, "conv2d: 'needs' must hold bools; got NoneType for 'weight'"),
    ("xwb", TypeError, "conv2d: 'needs' must be a tuple of bools"),
    (True, TypeError, "conv2d: 'needs' must be a tuple of bools"),
])
def test_bad_needs_are_refused_naming_the_op(rng, needs, error, match):
    x, weight, bias, options = case_inputs("rows_3x3", rng)
    out, cache = ops.conv2d.forward(x, weight, bias, **options, backend="cpu")
    with pytest.raises(error, match=match):
        ops.conv2d.backward(np.ones_like(out), cache, needs=needs)


def test_needs_may_be_a_list_or_numpy_bools(rng):
    x, weight, bias, options = case_inputs("rows_3x3", rng)
    out, cache = ops.conv2d.forward(x, weight, bias, **options, backend="cpu")
    dout = np.ones_like(out)
    want = ops.conv2d.backward(dout, cache, needs=(False, True, False))
    for needs in ([False, True, False], tuple(np.array([False, True, False]))):
        got = ops.conv2d.backward(dout, cache, needs=needs)
        assert got[0] is None and got[2] is None
        np.testing.assert_array_equal(got[1], want[1])
