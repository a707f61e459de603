"""The blocks of refvit/kernels/cpu/conv2d_gemm.py: set by the row count alone, two blocks for a small patch
matrix (whole images for a backward that folds), and the bias added per block equal to the product plus the
bias."""
import numpy as np
import pytest

from refvit.kernels.cpu import _threads, conv2d_gemm
from refvit.ops._conv_geometry import Window


def test_blocks_depend_on_the_rows_alone():
    assert conv2d_gemm.split_block_rows(63) == conv2d_gemm.block_rows(63)  # too few rows to split
    assert conv2d_gemm.split_block_rows(64) == 32
    assert conv2d_gemm.split_block_rows(256) == 128
    assert conv2d_gemm.split_block_rows(98) == 49
    for rows in (512, 1024, 16384, 25088):  # large matrices keep the backward's blocks
        assert conv2d_gemm.split_block_rows(rows) == conv2d_gemm.block_rows(rows)
    for rows in range(1, 3000, 7):
        size = conv2d_gemm.split_block_rows(rows)
        assert 1 <= size <= conv2d_gemm.block_rows(rows)
        if rows >= 2 * conv2d_gemm.MIN_HALF_ROWS:
            assert -(-rows // size) >= 2
    assert conv2d_gemm.image_block_rows(256, 4) == 128  # 64 images of 2x2 outputs: 32 per block
    assert conv2d_gemm.image_block_rows(64, 1) == 32
    assert conv2d_gemm.image_block_rows(16384, 256) == 512


@pytest.mark.parametrize("batch, stride", [(16, 2), (4, 1), (1, 2)])  # 256, 256 and 16 rows
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_is_the_patch_product_plus_the_bias(monkeypatch, rng, batch, stride, with_bias):
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    window = Window((3, 3), (stride, stride), (1, 1), (1, 1))
    x = rng.standard_normal((batch, 8, 8, 5)).astype(np.float32)
    weight = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32) if with_bias else None
    out = _threads.run_as_kernel_entry(conv2d_gemm.forward, (x, weight, bias, window))
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    out_h = out.shape[1]
    want = np.zeros(out.shape)
    for i in range(3):
        for j in range(3):
            taps = padded[:, i:i + stride * out_h:stride, j:j + stride * out_h:stride]
            want += taps @ weight[:, :, i, j].T.astype(np.float64)
    if with_bias:
        want += bias
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    # the bias added in the block loop gives the bits of the product followed by the addition
    if with_bias:
        plain = _threads.run_as_kernel_entry(conv2d_gemm.forward, (x, weight, None, window))
        np.testing.assert_array_equal(out, plain + bias)
