"""The split neighbourhood-attention ops on the GPU: ``na2d_qk`` and ``na2d_av`` (and, as maps of
height 1, ``na1d_qk`` and ``na1d_av``).

Layout and loops as in :mod:`refvit.kernels.cpu.na_split`: ``q, k, v, out (B*heads, H, W, d)``,
logits and weights ``(B*heads, H, W, kh*kw)``; each axis' windows come as an ``AxisBounds`` of
device arrays (first key, key count, bias index of the first key; keys ``steps`` = dilation apart),
and the gathers over keys read the per-axis ``InverseWindows``.

* ``_window_dots``: one thread per query writes its row of ``scale * a . b[key] (+ rpb)``, ``fill``
  on empty slots (``na2d_qk`` forward; ``na2d_av``'s ``dattn``).
* ``_window_sums``: one thread per query writes ``scale * sum_slot weights * b[key]``
  (``na2d_av`` forward; ``na2d_qk``'s ``dq``).
* ``_gather_to_keys``: one thread per key sums over the (query, slot) pairs holding it
  (``na2d_qk``'s ``dk``; ``na2d_av``'s ``dv``).
* ``_bias_gradient`` (the bias-gradient kernel of :mod:`refvit.kernels.cuda.na2d`): one thread per bias
  entry ``(head, r, c)`` sums the ``dlogits`` of the slots whose bias index it is.

Every output element has one writer: no atomics, no races.
"""
import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless
from refvit.kernels.cuda.na2d import _launch_backward_bias as _bias_gradient
from refvit.ops._neighborhood import axis_bounds, axis_windows, inverse_windows


@cuda.jit(device=True)
def _position(index, a):
    """Flat thread index -> ``(map, row, column)`` of an element of ``a (maps, H, W, ...)``."""
    height, width = a.shape[1], a.shape[2]
    return index // (height * width), (index // width) % height, index % width


@cuda.jit
def _window_dots_kernel(a, b, rpb, heads, scale, rows, cols, steps, kernel_w, fill, result):
    index = cuda.grid(1)
    if index >= a.shape[0] * a.shape[1] * a.shape[2]:
        return
    m, x, y = _position(index, a)
    for slot in range(result.shape[3]):
        result[m, x, y, slot] = fill
    for u in range(rows.key_count[x]):
        key_row = rows.first_key[x] + steps[0] * u
        for w in range(cols.key_count[y]):
            key_col = cols.first_key[y] + steps[1] * w
            total = 0.0
            for c in range(a.shape[3]):
                total += a[m, x, y, c] * b[m, key_row, key_col, c]
            total *= scale
            if rpb.shape[1] > 0:
                total += rpb[m % heads, rows.first_bias[x] + u, cols.first_bias[y] + w]
            result[m, x, y, u * kernel_w + w] = total


def _window_dots(a, b, rpb, heads, scale, rows, cols, steps, kernel_w, fill, result):
    _window_dots_kernel[grid_1d(a.size // a.shape[3])](a, b, rpb, heads, scale, rows, cols, steps, kernel_w, fill,
                                                       result)


@cuda.jit
def _window_sums_kernel(weights, b, scale, rows, cols, steps, kernel_w, result):
    index = cuda.grid(1)
    if index >= result.shape[0] * result.shape[1] * result.shape[2]:
        return
    m, x, y = _position(index, result)
    for c in range(result.shape[3]):
        total = 0.0
        for u in range(rows.key_count[x]):
            key_row = rows.first_key[x] + steps[0] * u
            for w in range(cols.key_count[y]):
                total += weights[m, x, y, u * kernel_w + w] * b[m, key_row, cols.first_key[y] + steps[1] * w, c]
        result[m, x, y, c] = scale * total


def _window_sums(weights, b, scale, rows, cols, steps, kernel_w, result):
    _window_sums_kernel[grid_1d(result.size // result.shape[3])](weights, b, scale, rows, cols, steps, kernel_w,
                                                                 result)


@cuda.jit
def _gather_to_keys_kernel(weights, a, scale, row_inverse, col_inverse, kernel_w, result):
    index = cuda.grid(1)
    if index >= result.shape[0] * result.shape[1] * result.shape[2]:
        return
    m, key_row, key_col = _position(index, result)
    for c in range(result.shape[3]):
        result[m, key_row, key_col, c] = 0.0
    for i in range(row_inverse.count[key_row]):
        x = row_inverse.queries[key_row, i]
        first_slot = row_inverse.slots[key_row, i] * kernel_w
        for j in range(col_inverse.count[key_col]):
            y = col_inverse.queries[key_col, j]
            weight = weights[m, x, y, first_slot + col_inverse.slots[key_col, j]]
            for c in range(result.shape[3]):
                result[m, key_row, key_col, c] += scale * weight * a[m, x, y, c]


def _gather_to_keys(weights, a, scale, row_inverse, col_inverse, kernel_w, result):
    _gather_to_keys_kernel[grid_1d(result.size // result.shape[3])](weights, a, scale, row_inverse, col_inverse,
                                                                    kernel_w, result)


def _axes(height, width, options):
    return [(n, options.kernel_size[a], options.dilation[a], options.stride[a], options.is_causal[a])
            for a, n in enumerate((height, width))]


def _bounds(height, width, options):
    """The two axes' ``AxisBounds``, on the device."""
    return [type(b)(*to_device(*b)) for b in (axis_bounds(*axis) for axis in _axes(height, width, options))]


def _inverse(height, width, options):
    """The two axes' ``InverseWindows``, on the device."""
    return [type(t)(*to_device(*t)) for t in (inverse_windows(axis_windows(*axis))
                                              for axis in _axes(height, width, options))]


def _flat(a):
    return a.reshape((a.shape[0] * a.shape[1],) + tuple(a.shape[2:]))


def qk_forward(q, k, rpb, options):
    """``q, k (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> logits ``(B, heads, H, W, kh*kw)``."""
    on_device = any_device(q, k, rpb)
    batch, heads, height, width, _ = q.shape
    dtype = np.dtype(q.dtype)
    kernel_h, kernel_w = options.kernel_size
    q, k, bias = to_device(q, k, np.zeros((heads, 0, 0), dtype) if rpb is None else rpb)
    logits = empty((batch * heads, height, width, kernel_h * kernel_w), dtype)
    _window_dots(_flat(q), _flat(k), bias, heads, dtype.type(options.scale), *_bounds(height, width, options),
                 options.dilation, kernel_w, dtype.type(-np.inf), logits)
    return to_host_unless(on_device, logits.reshape((batch, heads, height, width, kernel_h * kernel_w)))


def qk_backward(dout, q, k, rpb, options):
    """-> ``(dq, dk, drpb)`` with ``drpb`` None when ``rpb`` is None."""
    on_device = any_device(dout, q, k, rpb)
    batch, heads, height, width, head_dim = q.shape
    dtype = np.dtype(q.dtype)
    scale = dtype.type(options.scale)
    kernel_w = options.kernel_size[1]
    dlogits, q, k = (_flat(a) for a in to_device(dout, q, k))
    rows, cols = _bounds(height, width, options)
    dq, dk = empty(q.shape, dtype), empty(k.shape, dtype)
    _window_sums(dlogits, k, scale, rows, cols, options.dilation, kernel_w, dq)
    _gather_to_keys(dlogits, q, scale, *_inverse(height, width, options), kernel_w, dk)
    drpb = None
    if rpb is not None:
        drpb = empty(rpb.shape, dtype)
        _bias_gradient(dlogits, heads, rows, cols, kernel_w, drpb)
    shape = (batch, heads, height, width, head_dim)
    return to_host_unless(on_device, dq.reshape(shape), dk.reshape(shape), drpb)


def av_forward(attn, v, options):
    """``attn (B, heads, H, W, kh*kw)``, ``v (B, heads, H, W, d)`` -> ``out (B, heads, H, W, d)``."""
    on_device = any_device(attn, v)
    height, width = v.shape[2:4]
    dtype = np.dtype(v.dtype)
    attn, v = to_device(attn, v)
    out = empty((v.shape[0] * v.shape[1],) + tuple(v.shape[2:]), dtype)
    _window_sums(_flat(attn), _flat(v), dtype.type(1.0), *_bounds(height, width, options), options.dilation,
                 options.kernel_size[1], out)
    return to_host_unless(on_device, out.reshape(v.shape))


def av_backward(dout, attn, v, options):
    """-> ``(dattn, dv)``."""
    on_device = any_device(dout, attn, v)
    heads, height, width = v.shape[1:4]
    dtype = np.dtype(v.dtype)
    one = dtype.type(1.0)
    kernel_w = options.kernel_size[1]
    dout, weights, values, no_bias = to_device(dout, attn, v, np.zeros((heads, 0, 0), dtype))
    dout, weights, values = _flat(dout), _flat(weights), _flat(values)
    dattn, dv = empty(weights.shape, dtype), empty(values.shape, dtype)
    _window_dots(dout, values, no_bias, heads, one, *_bounds(height, width, options), options.dilation, kernel_w,
                 dtype.type(0.0), dattn)
    _gather_to_keys(weights, dout, one, *_inverse(height, width, options), kernel_w, dv)
    return to_host_unless(on_device, dattn.reshape(attn.shape), dv.reshape(v.shape))
