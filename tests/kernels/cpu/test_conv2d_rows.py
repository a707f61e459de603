"""The kernel-row products of refvit/kernels/cpu/conv2d_rows.py against the NumPy reference of
refvit/ops/conv2d.py: the windows it takes (any stride, no dilation, padding at most k - 1), odd map sizes,
float32 and float64, with and without bias, blocks of one output row or several; the rule that picks it
and the one that takes dweight from the wide rows on the patch path;
one thread and two give the same bits."""
import numba
import numpy as np
import pytest

from refvit.kernels.cpu import conv2d, conv2d_gemm, conv2d_rows
from refvit.kernels.cpu._threads import run_as_kernel_entry
from refvit.kernels.cpu.depthwise_conv2d import channel_sums
from refvit.ops import conv2d as reference
from refvit.ops._conv_geometry import Window
from tests.conftest import tolerance

WINDOWS = {
    "3x3 padded": Window((3, 3), (1, 1), (1, 1), (1, 1)),
    "3x3 unpadded": Window((3, 3), (1, 1), (0, 0), (1, 1)),
    "2x3 uneven padding": Window((2, 3), (1, 1), (1, 2), (1, 1)),
    "1x3": Window((1, 3), (1, 1), (0, 1), (1, 1)),
    "5x5 larger than the map": Window((5, 5), (1, 1), (4, 2), (1, 1)),
    "3x3 stride 2": Window((3, 3), (2, 2), (1, 1), (1, 1)),
    "7x7 stride 2 (a stem)": Window((7, 7), (2, 2), (3, 3), (1, 1)),
    "3x5 strides 3 and 2": Window((3, 5), (3, 2), (2, 1), (1, 1)),
}


def _case(rng, dtype, window, in_channels, out_channels, size):
    x = rng.standard_normal((3, *size, in_channels)).astype(dtype)
    weight = rng.standard_normal((out_channels, in_channels, *window.kernel)).astype(dtype)
    out_h, out_w = window.output_size(*size)
    dout = rng.standard_normal((3, out_h, out_w, out_channels)).astype(dtype)
    return x, weight, rng.standard_normal(out_channels).astype(dtype), dout


@pytest.mark.parametrize("name", list(WINDOWS))
@pytest.mark.parametrize("size", [(4, 3), (9, 10)])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("block_pixels", [1, 256], ids=["row blocks", "image blocks"])
def test_rows_path_matches_numpy(monkeypatch, dtype, rng, name, size, with_bias, block_pixels):
    monkeypatch.setattr(conv2d_rows, "BLOCK_PIXELS", block_pixels)
    window = WINDOWS[name]
    x, weight, bias, dout = _case(rng, dtype, window, 3, 5, size)
    bias = bias if with_bias else None
    assert conv2d_rows.takes(3, window)
    out = run_as_kernel_entry(conv2d_rows.forward, (x, weight, bias, window))
    grads = run_as_kernel_entry(conv2d_rows.backward, (dout, x, weight, with_bias, window, channel_sums))
    tol = tolerance(dtype)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads if g is not None)
    np.testing.assert_allclose(out, reference._forward_numpy(x, weight, bias, window, 1), **tol)
    want = reference._backward_numpy(dout, x, weight, with_bias, window, 1)
    for got, expected in zip(grads, want):
        if expected is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, expected, **tol)


def test_wide_output_channels_take_the_patch_products_for_dx(rng):
    """dx runs on C_out channels: beyond the wide-row limit it goes through conv2d_gemm."""
    window = WINDOWS["3x3 padded"]
    x, weight, bias, dout = _case(rng, np.float64, window, 4, 20, (5, 6))
    assert conv2d_rows.takes(4, window) and not conv2d_rows.takes(20, window)
    grads = run_as_kernel_entry(conv2d_rows.backward, (dout, x, weight, True, window, channel_sums))
    for got, expected in zip(grads, reference._backward_numpy(dout, x, weight, True, window, 1)):
        np.testing.assert_allclose(got, expected, **tolerance(np.float64))


def test_the_rule_picks_the_rows_path_for_few_input_channels():
    three = WINDOWS["3x3 padded"]
    assert conv2d.choose(16, 16, 1, three) is conv2d_rows  # dualvit_nano's 3x3
    assert conv2d.choose(32, 32, 1, three) is conv2d_gemm  # coatnet_nano's 3x3: a wide row of 96
    assert conv2d.choose(16, 32, 1, Window((3, 3), (2, 2), (1, 1), (1, 1))) is conv2d_rows  # dualvit_nano's s2
    assert conv2d.choose(3, 16, 1, Window((7, 7), (2, 2), (3, 3), (1, 1))) is conv2d_rows  # dualvit_nano's stem
    assert conv2d.choose(32, 64, 1, Window((3, 3), (2, 2), (1, 1), (1, 1))) is conv2d_gemm
    assert conv2d.choose(16, 16, 1, Window((3, 3), (1, 1), (2, 2), (2, 2))) is conv2d_gemm
    assert not conv2d_rows.takes(3, Window((3, 3), (1, 1), (3, 1), (1, 1)))  # padding beyond k - 1
    assert conv2d.choose(8, 8, 1, Window((1, 1), (1, 1), (0, 0), (1, 1))) is conv2d_gemm  # x itself is the patch matrix


@pytest.mark.parametrize("name, in_channels", [("3x3 padded", 16), ("7x7 stride 2 (a stem)", 3)])
def test_one_and_two_threads_give_the_same_bits(rng, name, in_channels):
    window = WINDOWS[name]
    x, weight, bias, dout = _case(rng, np.float32, window, in_channels, 16, (16, 16))
    results = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(threads)
        try:
            results.append([conv2d_rows.forward(x, weight, bias, window),
                            *conv2d_rows.backward(dout, x, weight, True, window, channel_sums)])
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


def test_the_entry_takes_dweight_from_the_wide_rows_up_to_96_numbers(rng):
    window = Window((3, 3), (1, 1), (1, 1), (1, 1))
    assert conv2d_rows.takes_weight(32, window) and not conv2d_rows.takes_weight(33, window)
    assert not conv2d_rows.takes_weight(8, Window((3, 3), (2, 2), (1, 1), (1, 1)))
    assert conv2d.choose(32, 32, 1, window) is conv2d_gemm  # coatnet_nano's 3x3: forward and dx as patches
    x = rng.standard_normal((2, 6, 5, 32)).astype(np.float32)
    weight = rng.standard_normal((7, 32, 3, 3)).astype(np.float32)
    dout = rng.standard_normal((2, 6, 5, 7)).astype(np.float32)
    dx, dweight, dbias = run_as_kernel_entry(conv2d.backward, (dout, x, weight, True, window))
    patches = run_as_kernel_entry(conv2d_gemm.backward, (dout, x, weight, True, window, channel_sums))
    np.testing.assert_array_equal(dx, patches[0])
    np.testing.assert_array_equal(dbias, patches[2])
    np.testing.assert_allclose(dweight, patches[1], rtol=1e-5, atol=1e-4)
    only = run_as_kernel_entry(conv2d.backward, (dout, x, weight, False, window, (False, True)))
    assert only[0] is None
    np.testing.assert_array_equal(only[1], dweight)
