r"""Dense and grouped 2-D convolution on the CPU: im2col, then one matrix product per group.

With ``G`` groups, ``C_g = C_in/G`` and ``O_g = C_out/G``, the patch matrix holds, for group
``g``, output pixel ``n = (b, u, v)`` and column ``k = (i, j, c)``:

.. math::  P_{g,n,k} = \tilde x_{b,\,u s_h - p_h + i d_h,\,v s_w - p_w + j d_w,\,g C_g + c}

(zero where the tap falls in the padding). With the weight as ``M_g (kh*kw*C_g, O_g)``:

.. math::  Y_g = P_g M_g, \qquad \frac{\partial L}{\partial M_g} = P_g^\top \Delta_g, \qquad
           \frac{\partial L}{\partial P_g} = \Delta_g M_g^\top

and ``dx`` folds :math:`\partial L/\partial P` back in gather form: input pixel ``(h, w)`` sums
the entries of every ``(n, k)`` that copied it. The products run in NumPy's ``matmul``
(BLAS); im2col and the fold are ``prange`` loops over the rows they write.

The entries :func:`forward` and :func:`backward` pick the algorithm: a depthwise convolution
(``groups == C_in == C_out``) runs on the direct kernels of :mod:`refvit.kernels.cpu.depthwise_conv2d`.
"""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu import depthwise_conv2d
from refvit.kernels.cpu.depthwise_conv2d import channel_sums
from refvit.kernels.cpu._window import reached_output
from refvit.ops.conv2d import is_depthwise


@njit(cache=True, parallel=True)
def _im2col(x, cols, out_h, out_w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    """``cols (G, B*H_out*W_out, kh*kw*C_g)`` from ``x (B, H, W, G*C_g)``; ``prange`` over output rows.

    The copies run over whole channel runs of one input pixel, with the padding test once per tap
    (a test per element, or an index into the padding, kept the loop from vectorising: 10x slower)."""
    height, width = x.shape[1], x.shape[2]
    groups, group_in = cols.shape[0], x.shape[3] // cols.shape[0]
    for row in prange(x.shape[0] * out_h):
        b, u = row // out_h, row % out_h
        for v in range(out_w):
            n = row * out_w + v
            for g in range(groups):
                target = cols[g, n]
                first = g * group_in
                for i in range(kh):
                    h = u * stride_h - pad_h + i * dil_h
                    for j in range(kw):
                        w = v * stride_w - pad_w + j * dil_w
                        column = (i * kw + j) * group_in
                        if 0 <= h < height and 0 <= w < width:
                            pixel = x[b, h, w]
                            for c in range(group_in):
                                target[column + c] = pixel[first + c]
                        else:
                            for c in range(group_in):
                                target[column + c] = 0.0


@njit(cache=True, parallel=True)
def _fold(dcols, dx, out_h, out_w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    """Gather form of col2im: ``dx[b, h, w, g*C_g + c]`` sums every patch entry copied from it."""
    batch, height, width, in_channels = dx.shape
    groups = dcols.shape[0]
    group_in = in_channels // groups
    for row in prange(batch * height):
        b, h = row // height, row % height
        for i in range(kh):
            u = reached_output(h, pad_h, i * dil_h, stride_h, out_h)
            if u < 0:
                continue
            for w in range(width):
                pixel = dx[b, h, w]
                for j in range(kw):
                    v = reached_output(w, pad_w, j * dil_w, stride_w, out_w)
                    if v < 0:
                        continue
                    n = (b * out_h + u) * out_w + v
                    column = (i * kw + j) * group_in
                    for g in range(groups):
                        source = dcols[g, n]
                        for c in range(group_in):
                            pixel[g * group_in + c] += source[column + c]


def _window_args(window):
    (stride_h, stride_w), (pad_h, pad_w), (dil_h, dil_w) = window.stride, window.padding, window.dilation
    return stride_h, stride_w, pad_h, pad_w, dil_h, dil_w


def _patches(x, groups, window):
    batch, height, width, in_channels = x.shape
    out_h, out_w = window.output_size(height, width)
    kh, kw = window.kernel
    cols = np.empty((groups, batch * out_h * out_w, kh * kw * (in_channels // groups)), dtype=x.dtype)
    _im2col(x, cols, out_h, out_w, kh, kw, *_window_args(window))
    return cols, (out_h, out_w)


def _weight_matrix(weight, groups):
    """``(C_out, C_g, kh, kw)`` -> ``(G, kh*kw*C_g, O_g)``, rows ordered ``(i, j, c)``."""
    out_channels, group_in, kh, kw = weight.shape
    w = weight.reshape(groups, out_channels // groups, group_in, kh, kw).transpose(0, 3, 4, 2, 1)
    return np.ascontiguousarray(w.reshape(groups, kh * kw * group_in, out_channels // groups))


def forward(x, weight, bias, window):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in/G, kh, kw)``, ``bias (C_out,)`` or None -> ``out``."""
    groups = x.shape[3] // weight.shape[1]
    if is_depthwise(x.shape[3], weight.shape[0], groups):
        return depthwise_conv2d.forward(x, weight, bias, window)
    x = np.ascontiguousarray(x)
    cols, (out_h, out_w) = _patches(x, groups, window)
    out = np.matmul(cols, _weight_matrix(weight, groups))  # (G, N, O_g)
    out = np.ascontiguousarray(out.transpose(1, 0, 2)).reshape(x.shape[0], out_h, out_w, weight.shape[0])
    if bias is not None:
        out += bias
    return out


def backward(dout, x, weight, has_bias, window):
    """-> ``(dx, dweight, dbias)``, ``dbias`` None without a bias."""
    out_channels, group_in, kh, kw = weight.shape
    groups = x.shape[3] // group_in
    if is_depthwise(x.shape[3], out_channels, groups):
        return depthwise_conv2d.backward(dout, x, weight, has_bias, window)
    x = np.ascontiguousarray(x)
    dout = np.ascontiguousarray(dout)
    batch, out_h, out_w, _ = dout.shape
    dout_groups = np.ascontiguousarray(
        dout.reshape(batch * out_h * out_w, groups, out_channels // groups).transpose(1, 0, 2))
    cols, _ = _patches(x, groups, window)
    dmatrix = np.matmul(cols.transpose(0, 2, 1), dout_groups)  # (G, kh*kw*C_g, O_g)
    dweight = dmatrix.reshape(groups, kh, kw, group_in, out_channels // groups).transpose(0, 4, 3, 1, 2)
    dweight = np.ascontiguousarray(dweight).reshape(weight.shape)
    dcols = np.matmul(dout_groups, _weight_matrix(weight, groups).transpose(0, 2, 1))
    dx = np.zeros_like(x)
    _fold(np.ascontiguousarray(dcols), dx, out_h, out_w, kh, kw, *_window_args(window))
    return dx, dweight, channel_sums(dout) if has_bias else None
