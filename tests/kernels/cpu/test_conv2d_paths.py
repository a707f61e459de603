"""Each algorithm of the cpu conv2d, called directly, against the NumPy reference of refvit/ops/conv2d.py:
the blocked patch products of conv2d_gemm (groups == 1), the non-overlapping windows of conv2d_merge and
the direct loops of conv2d_direct (any groups)."""
import numpy as np
import pytest

from refvit.kernels.cpu import _threads, conv2d_direct, conv2d_gemm, conv2d_merge, depthwise_conv2d
from refvit.kernels.cpu.depthwise_conv2d import channel_sums
from refvit.kernels.cpu._threads import run_as_kernel_entry
from refvit.ops import conv2d as reference
from refvit.ops._conv_geometry import Window
from tests.conftest import tolerance

WINDOWS = {
    "3x3 padded": Window((3, 3), (1, 1), (1, 1), (1, 1)),
    "7x7 stride 2 stem": Window((7, 7), (2, 2), (3, 3), (1, 1)),
    "3x3 stride 2": Window((3, 3), (2, 2), (1, 1), (1, 1)),
    "2x2 stride 2 unpadded": Window((2, 2), (2, 2), (0, 0), (1, 1)),
    "pointwise": Window((1, 1), (1, 1), (0, 0), (1, 1)),
    "1x1 stride 2": Window((1, 1), (2, 2), (0, 0), (1, 1)),
    "dilated, uneven": Window((3, 2), (2, 1), (2, 1), (2, 3)),
    "wide padding": Window((3, 3), (3, 2), (4, 3), (1, 2)),
    "stride 1, dilated": Window((3, 3), (1, 1), (2, 1), (2, 1)),
    "stride 1, padding beyond the kernel": Window((2, 3), (1, 1), (2, 1), (1, 1)),
}


MERGE_WINDOWS = {
    "2x2 stride 2": Window((2, 2), (2, 2), (0, 0), (1, 1)),
    "3x2 stride (3, 2)": Window((3, 2), (3, 2), (0, 0), (1, 1)),
    "4x4 stride 4": Window((4, 4), (4, 4), (0, 0), (1, 1)),
}


def _case(rng, dtype, window, in_channels, out_channels, groups, bias=True, size=(9, 10)):
    x = rng.standard_normal((3, *size, in_channels)).astype(dtype)
    weight = rng.standard_normal((out_channels, in_channels // groups, *window.kernel)).astype(dtype)
    b = rng.standard_normal(out_channels).astype(dtype) if bias else None
    out_h, out_w = window.output_size(*size)
    dout = rng.standard_normal((3, out_h, out_w, out_channels)).astype(dtype)
    return x, weight, b, dout


def _check(path, x, weight, bias, dout, window, groups):
    out = run_as_kernel_entry(path.forward, (x, weight, bias, window))
    grads = run_as_kernel_entry(path.backward, (dout, x, weight, bias is not None, window, channel_sums))
    want_out = reference._forward_numpy(x, weight, bias, window, groups)
    want = reference._backward_numpy(dout, x, weight, bias is not None, window, groups)
    tol = tolerance(x.dtype)
    assert out.dtype == x.dtype and all(g.dtype == x.dtype for g in grads if g is not None)
    np.testing.assert_allclose(out, want_out, **tol)
    for got, expected in zip(grads, want):
        if expected is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, expected, **tol)


@pytest.mark.parametrize("name", list(WINDOWS))
@pytest.mark.parametrize("channels", [(3, 5), (8, 4)], ids=["stem-like", "wider"])
def test_gemm_path_matches_numpy(dtype, rng, name, channels):
    window = WINDOWS[name]
    x, weight, bias, dout = _case(rng, dtype, window, *channels, groups=1, bias=name != "pointwise")
    _check(conv2d_gemm, x, weight, bias, dout, window, 1)


@pytest.mark.parametrize("name", list(MERGE_WINDOWS))
@pytest.mark.parametrize("size", [(9, 10), (8, 12)], ids=["uncovered edges", "covered"])
@pytest.mark.parametrize("channels", [(3, 5), (8, 4)], ids=["stem-like", "wider"])
def test_merge_path_matches_numpy(dtype, rng, name, size, channels):
    """Windows that do not overlap; with (9, 10) the last rows or columns of x take no tap and get dx 0."""
    window = MERGE_WINDOWS[name]
    x, weight, bias, dout = _case(rng, dtype, window, *channels, groups=1, size=size)
    _check(conv2d_merge, x, weight, bias, dout, window, 1)


def test_merge_path_takes_only_non_overlapping_windows():
    assert all(conv2d_merge.takes(w) for w in MERGE_WINDOWS.values())
    assert conv2d_merge.takes(WINDOWS["2x2 stride 2 unpadded"])
    taken = [name for name, w in WINDOWS.items() if conv2d_merge.takes(w)]
    assert taken == ["2x2 stride 2 unpadded"]
    assert not conv2d_merge.takes(Window((2, 2), (2, 2), (1, 0), (1, 1)))
    assert not conv2d_merge.takes(Window((2, 2), (2, 2), (0, 0), (2, 1)))


@pytest.mark.parametrize("name", ["2x2 stride 2", "3x2 stride (3, 2)"])
def test_merge_blocks_do_not_change_the_result(monkeypatch, rng, name):
    """Many small blocks on several threads, blocks that end inside a map row: the result of one block."""
    window = MERGE_WINDOWS[name]
    x, weight, bias, dout = _case(rng, np.float64, window, 4, 6, groups=1)
    one_block = run_as_kernel_entry(conv2d_merge.backward, (dout, x, weight, True, window, channel_sums))
    monkeypatch.setattr(conv2d_gemm, "MIN_BLOCK_ROWS", 3)
    monkeypatch.setattr(conv2d_gemm, "MAX_BLOCKS", 1000)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    many = run_as_kernel_entry(conv2d_merge.backward, (dout, x, weight, True, window, channel_sums))
    for got, want in zip(many, one_block):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(WINDOWS))
@pytest.mark.parametrize("channels, groups", [((8, 12), 4), ((6, 4), 2), ((3, 5), 1)])
def test_direct_path_matches_numpy(dtype, rng, name, channels, groups):
    window = WINDOWS[name]
    x, weight, bias, dout = _case(rng, dtype, window, *channels, groups=groups, bias=groups != 2)
    _check(conv2d_direct, x, weight, bias, dout, window, groups)


@pytest.mark.parametrize("name", ["3x3 stride 2", "pointwise", "dilated, uneven"])
def test_gemm_blocks_do_not_change_the_result(monkeypatch, rng, name):
    """Many small blocks on several threads, a last block cut short: the result of one block."""
    window = WINDOWS[name]
    x, weight, bias, dout = _case(rng, np.float64, window, 4, 6, groups=1)
    one_block = [run_as_kernel_entry(conv2d_gemm.forward, (x, weight, bias, window))]
    one_block += run_as_kernel_entry(conv2d_gemm.backward, (dout, x, weight, True, window, channel_sums))
    monkeypatch.setattr(conv2d_gemm, "MIN_BLOCK_ROWS", 7)
    monkeypatch.setattr(conv2d_gemm, "MAX_BLOCKS", 1000)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    assert conv2d_gemm.block_rows(3 * 9 * 10) == 7
    many = [run_as_kernel_entry(conv2d_gemm.forward, (x, weight, bias, window))]
    many += run_as_kernel_entry(conv2d_gemm.backward, (dout, x, weight, True, window, channel_sums))
    for got, want in zip(many, one_block):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_direct_path_on_many_threads_matches_numpy(monkeypatch, rng):
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    window = WINDOWS["3x3 stride 2"]
    x, weight, bias, dout = _case(rng, np.float64, window, 8, 16, groups=4)
    _check(conv2d_direct, x, weight, bias, dout, window, 4)


def test_block_rows_keeps_blocks_large_and_few():
    assert conv2d_gemm.block_rows(10) == conv2d_gemm.MIN_BLOCK_ROWS
    rows = 100 * conv2d_gemm.MIN_BLOCK_ROWS * conv2d_gemm.MAX_BLOCKS
    assert -(-rows // conv2d_gemm.block_rows(rows)) == conv2d_gemm.MAX_BLOCKS


@pytest.mark.parametrize("rows, per_image", [(64 * 256, 256), (2 * 784, 784), (64 * 16, 16), (3 * 90, 90),
                                              (100 * 300, 300)])
def test_folding_blocks_are_whole_images_and_few(rows, per_image):
    size = conv2d_gemm.image_block_rows(rows, per_image)
    assert size % per_image == 0 and size >= conv2d_gemm.split_block_rows(rows)
    assert -(-rows // size) <= conv2d_gemm.MAX_BLOCKS


@pytest.mark.parametrize("name", ["3x3 padded", "3x3 stride 2", "dilated, uneven"])
def test_direct_path_equals_the_depthwise_kernels_at_one_channel_per_group(rng, name):
    window = WINDOWS[name]
    x, weight, bias, dout = _case(rng, np.float64, window, 6, 6, groups=6)
    want = [run_as_kernel_entry(depthwise_conv2d.forward, (x, weight, bias, window))]
    want += run_as_kernel_entry(depthwise_conv2d.backward, (dout, x, weight, True, window))
    got = [run_as_kernel_entry(conv2d_direct.forward, (x, weight, bias, window))]
    got += run_as_kernel_entry(conv2d_direct.backward, (dout, x, weight, True, window, channel_sums))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_stride_one_dx_runs_as_a_forward_when_the_padding_allows():
    assert conv2d_gemm.transposed_window(WINDOWS["3x3 padded"]) == Window((3, 3), (1, 1), (1, 1), (1, 1))
    assert conv2d_gemm.transposed_window(WINDOWS["stride 1, dilated"]) == Window((3, 3), (1, 1), (2, 1), (2, 1))
    assert conv2d_gemm.transposed_window(WINDOWS["stride 1, padding beyond the kernel"]) is None
    assert conv2d_gemm.transposed_window(WINDOWS["3x3 stride 2"]) is None
