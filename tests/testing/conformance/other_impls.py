"""Stripe attention, the relative-position table gather and convolutions written the way a user
would, each with one optional planted mistake (``bug=``) for the conformance tests."""
from __future__ import annotations

import numpy as np


def stripe_attention_torch(q, k, v, stripe_size, lepe_weight=None, lepe_bias=None, scale=None, bug=None):
    """CSWin stripe attention in torch (autograd); ``bug="lepe-across-windows"`` runs LePE over the whole
    map, so a window's border reads its neighbour instead of a zero."""
    import torch
    import torch.nn.functional as F

    batch, heads, height, width, d = q.shape
    sh, sw = stripe_size

    def windows(x):  # (B, heads, H, W, d) -> (B, heads, nh, nw, sh*sw, d)
        x = x.reshape(batch, heads, height // sh, sh, width // sw, sw, d).permute(0, 1, 2, 4, 3, 5, 6)
        return x.reshape(batch, heads, height // sh, width // sw, sh * sw, d)

    def unwindow(x):
        x = x.reshape(batch, heads, height // sh, width // sw, sh, sw, d).permute(0, 1, 2, 4, 3, 5, 6)
        return x.reshape(batch, heads, height, width, d)

    scale = d ** -0.5 if scale is None else scale
    probs = torch.softmax(scale * windows(q) @ windows(k).transpose(-1, -2), dim=-1)
    out = unwindow(probs @ windows(v))
    if lepe_weight is None:
        return out
    channels = heads * d
    if bug == "lepe-across-windows":
        images = v.permute(0, 1, 4, 2, 3).reshape(batch, channels, height, width)
        lepe = F.conv2d(images, lepe_weight, lepe_bias, padding=1, groups=channels)
        return out + lepe.reshape(batch, heads, d, height, width).permute(0, 1, 3, 4, 2)
    tiles = windows(v).reshape(batch, heads, -1, sh, sw, d).permute(0, 2, 1, 5, 3, 4)
    tiles = tiles.reshape(-1, channels, sh, sw)
    lepe = F.conv2d(tiles, lepe_weight, lepe_bias, padding=1, groups=channels)
    lepe = lepe.reshape(batch, -1, heads, d, sh * sw).permute(0, 2, 1, 4, 3)
    return out + unwindow(lepe.reshape(batch, heads, height // sh, width // sw, sh * sw, d))


def _table_index(window, bug=None):
    wh, ww = window
    rows, cols = np.divmod(np.arange(wh * ww), ww)
    dh, dw = rows[:, None] - rows[None, :], cols[:, None] - cols[None, :]
    if bug == "transposed-table":  # the width offset taken as the slow axis of the table
        return (dw + ww - 1) * (2 * wh - 1) + (dh + wh - 1)
    return (dh + wh - 1) * (2 * ww - 1) + (dw + ww - 1)


def relative_position_bias_numpy(table, window, bug=None):
    """``table (T, heads)`` -> ``(heads, N, N)``."""
    return np.moveaxis(table[_table_index(window, bug)], -1, 0)


def relative_position_bias_numpy_backward(dout, table, window, bug=None):
    dtable = np.zeros_like(table)
    np.add.at(dtable, _table_index(window, bug), np.moveaxis(dout, 0, -1))
    return (dtable,)


def conv2d_nchw_torch(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, bug=None):
    """``torch.nn.functional.conv2d``; ``bug="kernel-half-padding"`` pads ``kernel // 2`` whatever the call
    asked for (right only for an undilated 'same' convolution)."""
    import torch.nn.functional as F

    if bug == "kernel-half-padding":
        padding = (weight.shape[2] // 2, weight.shape[3] // 2)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def multiscale_dwconv_torch(x, weights, biases, heads):
    """SMT's multi-head mixed depthwise convolution on ``x (B, C, H, W)``."""
    import torch
    import torch.nn.functional as F

    chunks = torch.chunk(x, heads, dim=1)
    outs = [F.conv2d(chunk, weights[i], None if biases is None else biases[i], padding=1 + i,
                     groups=chunk.shape[1]) for i, chunk in enumerate(chunks)]
    return torch.cat(outs, dim=1)


def batch_norm_momentum_flipped_torch(x, running_mean, running_var, weight=None, bias=None, training=False,
                                      momentum=0.1, eps=1e-5):
    """``torch.nn.functional.batch_norm`` with the momentum's meaning flipped (weight on the old statistics)."""
    import torch.nn.functional as F

    return F.batch_norm(x, running_mean, running_var, weight, bias, training, 1 - momentum, eps)
