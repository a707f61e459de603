"""Relative position bias on the GPU.

* forward: one thread per bias entry ``(h, a, b)``, reading its table row.
* backward, gather form (no atomics, deterministic): one thread per table entry ``(t, h)``,
  summing ``dout`` over the query-key pairs whose offset is that of row ``t``.
"""
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless


@cuda.jit
def _gather_kernel(table, window_height, window_width, bias):
    """bias[h, a, b] = table[(dh + Wh - 1) * (2Ww - 1) + (dw + Ww - 1), h]."""
    i = cuda.grid(1)
    if i < bias.size:
        tokens = bias.shape[1]
        h, a, b = i // (tokens * tokens), (i // tokens) % tokens, i % tokens
        dh = a // window_width - b // window_width
        dw = a % window_width - b % window_width
        bias[h, a, b] = table[(dh + window_height - 1) * (2 * window_width - 1) + (dw + window_width - 1), h]


def forward(table, window):
    on_device = any_device(table)
    (table,) = to_device(table)
    tokens = window[0] * window[1]
    bias = empty((table.shape[1], tokens, tokens), table.dtype)
    _gather_kernel[grid_1d(bias.size)](table, window[0], window[1], bias)
    return to_host_unless(on_device, bias)


@cuda.jit
def _offset_class_sum_kernel(dout, window_height, window_width, dtable):
    """dtable[t, h] = sum of dout[h, a, b] over the pairs with coord(a) - coord(b) = offset(t)."""
    i = cuda.grid(1)
    rows, heads = dtable.shape
    if i < rows * heads:
        t = i // heads
        h = i % heads
        row_length = 2 * window_width - 1
        dh = t // row_length - (window_height - 1)
        dw = t % row_length - (window_width - 1)
        acc = 0.0
        for ya in range(max(0, dh), min(window_height, window_height + dh)):
            for xa in range(max(0, dw), min(window_width, window_width + dw)):
                acc += dout[h, ya * window_width + xa, (ya - dh) * window_width + (xa - dw)]
        dtable[t, h] = acc


def backward(dout, window):
    on_device = any_device(dout)
    (dout,) = to_device(dout)
    dtable = empty(((2 * window[0] - 1) * (2 * window[1] - 1), dout.shape[0]), dout.dtype)
    _offset_class_sum_kernel[grid_1d(dtable.size)](dout, window[0], window[1], dtable)
    return to_host_unless(on_device, dtable)
