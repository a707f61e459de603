"""The loops of refvit/kernels/cpu/depthwise_conv2d.py add the taps of every element in
``(i, j)`` order, whether a tap's pixels form one contiguous run (``stride_w == 1``) or a run per
pixel, and whether a 3x3 window lies inside the map (one expression per channel) or not; so forward and dx
equal, bit for bit, a NumPy loop that adds tap after tap."""
import numpy as np
import pytest

from refvit.kernels.cpu import depthwise_conv2d
from refvit.ops._conv_geometry import Window

WINDOWS = [
    Window((3, 3), (1, 1), (1, 1), (1, 1)),   # the contiguous runs
    Window((7, 7), (1, 1), (3, 3), (1, 1)),
    Window((3, 2), (2, 1), (1, 0), (1, 2)),   # stride along H only: still one run per tap
    Window((2, 3), (1, 2), (0, 2), (2, 1)),   # stride along W: a run per pixel
    Window((3, 3), (2, 3), (2, 1), (2, 2)),
    Window((3, 3), (2, 2), (1, 1), (1, 1)),   # 3x3 stride 2 (coatnet's): inside pixels and the edge
    Window((3, 3), (1, 2), (0, 1), (1, 1)),   # 3x3 without padding along H
]


def _taps(window, height, width):
    """Per tap ``(i, j)``: the output and input index arrays of the pixels it joins."""
    out_h, out_w = window.output_size(height, width)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = window.kernel, window.stride, window.padding, window.dilation
    for i in range(kh):
        for j in range(kw):
            u, v = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
            h, w = u * sh - ph + i * dh, v * sw - pw + j * dw
            inside = (h >= 0) & (h < height) & (w >= 0) & (w < width)
            yield i, j, (u[inside], v[inside]), (h[inside], w[inside])


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_dx_add_the_taps_in_order(window, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 9, 11, 5)).astype(dtype)
    weight = rng.standard_normal((5, 1, *window.kernel)).astype(dtype)
    out_h, out_w = window.output_size(9, 11)
    dout = rng.standard_normal((2, out_h, out_w, 5)).astype(dtype)
    want_out = np.zeros_like(dout)
    want_dx = np.zeros_like(x)
    for i, j, (u, v), (h, w) in _taps(window, 9, 11):
        want_out[:, u, v] += x[:, h, w] * weight[:, 0, i, j]
        want_dx[:, h, w] += dout[:, u, v] * weight[:, 0, i, j]
    out = depthwise_conv2d.forward(x, weight, None, window)
    dx, dweight, _ = depthwise_conv2d.backward(dout, x, weight, False, window)
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(dx, want_dx)
    want_dweight = np.zeros(weight.shape)
    for i, j, (u, v), (h, w) in _taps(window, 9, 11):
        want_dweight[:, 0, i, j] = np.einsum("bnc,bnc->c", dout[:, u, v].astype(np.float64), x[:, h, w])
    np.testing.assert_allclose(dweight, want_dweight, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("window", WINDOWS)
def test_forward_starts_each_pixel_at_the_bias(window):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 9, 11, 5)).astype(np.float32)
    weight = rng.standard_normal((5, 1, *window.kernel)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    out_h, out_w = window.output_size(9, 11)
    want = np.broadcast_to(bias, (2, out_h, out_w, 5)).copy()
    for i, j, (u, v), (h, w) in _taps(window, 9, 11):
        want[:, u, v] += x[:, h, w] * weight[:, 0, i, j]
    np.testing.assert_array_equal(depthwise_conv2d.forward(x, weight, bias, window), want)
    # a strided view of x gives the same
    wide = np.zeros((2, 9, 22, 5), np.float32)
    wide[:, :, ::2] = x
    np.testing.assert_array_equal(depthwise_conv2d.forward(wide[:, :, ::2], weight, bias, window), want)
