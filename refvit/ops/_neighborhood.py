r"""The neighbourhood window rule shared by ``na1d`` and ``na2d``, and their argument checks.

Everything here works on one axis of length ``n`` with kernel ``k`` (odd), dilation ``d``,
stride ``s`` and a causal flag; 2-D neighbourhoods are the Cartesian product of two axes.

For query ``i``:

* dilation group ``g = i mod d``, position in the group ``i' = i // d``, group length
  ``n_g = ceil((n - g) / d)`` (the first ``n mod d`` groups are one longer);
* block leader ``L = min(floor(i'/s)*s + s//2, n_g - 1)`` (causal: ``+ s - 1`` instead of ``+ s//2``);
* non-causal: ``window_start = clamp(L - k//2, 0, n_g - k)`` and ``k`` keys;
  causal: ``window_start = max(L - k + 1, 0)`` and ``i' - window_start + 1`` keys (never one after ``i``);
* key ``t`` is ``j = g + d*(window_start + t)``, its bias index is ``(j - i)//d + k - 1``.

Worked example, ``n = 7, k = 3, d = 1``: query 0 sees keys 0, 1, 2 (the window shifts
inward, bias indices 2, 3, 4); query 3 sees 2, 3, 4 (bias 1, 2, 3); query 6 sees 4, 5, 6
(bias 0, 1, 2). With ``d = 2`` the groups are 0, 2, 4, 6 (``n_g = 4``) and 1, 3, 5 (``n_g = 3``):
query 0 sees 0, 2, 4 and query 5 sees 1, 3, 5.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import (
    as_bool_tuple,
    as_tuple,
    check_array,
    check_optional_array,
    check_same_dtype,
    check_scale,
    check_shape,
    fail,
)


class AxisBounds(NamedTuple):
    """Per query of one axis (arrays of shape ``(n,)``, int64): the first key index, how many
    keys follow it (``dilation`` apart), and the bias index of the first key."""

    first_key: np.ndarray
    key_count: np.ndarray
    first_bias: np.ndarray


class AxisWindows(NamedTuple):
    """Per query and kernel slot of one axis (arrays of shape ``(n, k)``): the key index, whether
    the slot holds a key (causal windows near the start hold fewer), and the bias index.
    Empty slots repeat the query's own index with bias index ``k - 1`` so every index is in range."""

    keys: np.ndarray
    valid: np.ndarray
    bias_index: np.ndarray


class InverseWindows(NamedTuple):
    """Per key of one axis: the queries whose window holds it (``(n, m)``), the slot it sits in
    for each of them (``(n, m)``) and how many there are (``(n,)``); ``m`` is the largest count."""

    queries: np.ndarray
    slots: np.ndarray
    count: np.ndarray


def axis_bounds(length, kernel_size, dilation=1, stride=1, is_causal=False) -> AxisBounds:
    """The window rule for every query of one axis, as first key, key count and first bias index."""
    i = np.arange(length, dtype=np.int64)
    group = i % dilation
    position = i // dilation
    group_length = (length - group + dilation - 1) // dilation
    block_start = (position // stride) * stride
    if is_causal:
        leader = np.minimum(block_start + stride - 1, group_length - 1)
        window_start = np.maximum(leader - kernel_size + 1, 0)
        key_count = position - window_start + 1
    else:
        leader = np.minimum(block_start + stride // 2, group_length - 1)
        window_start = np.clip(leader - kernel_size // 2, 0, group_length - kernel_size)
        key_count = np.full(length, kernel_size, dtype=np.int64)
    first_key = group + dilation * window_start
    first_bias = window_start - position + kernel_size - 1
    return AxisBounds(first_key, key_count, first_bias)


def axis_windows(length, kernel_size, dilation=1, stride=1, is_causal=False) -> AxisWindows:
    """The window rule as ``(n, k)`` tables of key indices, validity and bias indices."""
    bounds = axis_bounds(length, kernel_size, dilation, stride, is_causal)
    slot = np.arange(kernel_size, dtype=np.int64)[None, :]
    valid = slot < bounds.key_count[:, None]
    query = np.arange(length, dtype=np.int64)[:, None]
    keys = np.where(valid, bounds.first_key[:, None] + dilation * slot, query)
    bias_index = np.where(valid, bounds.first_bias[:, None] + slot, kernel_size - 1)
    return AxisWindows(keys, valid, bias_index)


def inverse_windows(windows: AxisWindows) -> InverseWindows:
    """For every key, the (query, slot) pairs whose window holds it: the tables that let the
    backward pass gather ``dk`` and ``dv`` per key instead of scattering them per query."""
    length = windows.keys.shape[0]
    query, slot = np.nonzero(windows.valid)
    key = windows.keys[query, slot]
    order = np.argsort(key, kind="stable")
    query, slot, key = query[order], slot[order], key[order]
    count = np.bincount(key, minlength=length).astype(np.int64)
    width = max(int(count.max()) if count.size else 0, 1)
    rank = np.arange(key.size) - np.concatenate(([0], np.cumsum(count)[:-1]))[key]
    queries = np.zeros((length, width), dtype=np.int64)
    slots = np.zeros((length, width), dtype=np.int64)
    queries[key, rank] = query
    slots[key, rank] = slot
    return InverseWindows(queries, slots, count)


class Windows2D(NamedTuple):
    """Index tables of shape ``(H, W, kh, kw)``: key row, key column, bias row, bias column, validity
    (the product of the two axes' :class:`AxisWindows`, broadcast, not copied)."""

    key_row: np.ndarray
    key_col: np.ndarray
    bias_row: np.ndarray
    bias_col: np.ndarray
    valid: np.ndarray


def windows_2d(height, width, options) -> Windows2D:
    """The window of every query of an ``height x width`` map under ``options`` (an :class:`Options`)."""
    rows, cols = (axis_windows(n, options.kernel_size[a], options.dilation[a], options.stride[a],
                               options.is_causal[a]) for a, n in enumerate((height, width)))
    shape = (height, width) + tuple(options.kernel_size)

    def by_row(table):
        return np.broadcast_to(table[:, None, :, None], shape)

    def by_col(table):
        return np.broadcast_to(table[None, :, None, :], shape)

    return Windows2D(by_row(rows.keys), by_col(cols.keys), by_row(rows.bias_index), by_col(cols.bias_index),
                     by_row(rows.valid) & by_col(cols.valid))


class Options(NamedTuple):
    """Checked arguments of a neighbourhood-attention call; tuples have one entry per axis."""

    kernel_size: tuple
    dilation: tuple
    stride: tuple
    is_causal: tuple
    scale: float


def check_arguments(op, axis_names, q, k, v, kernel_size, dilation, stride, is_causal, rpb, scale, backend):
    """Check every argument once; return ``(q, k, v, rpb, Options)``.

    ``axis_names`` names the spatial axes (``("length",)`` or ``("height", "width")``);
    ``q, k, v`` are ``(B, heads, *spatial, head_dim)``.
    """
    axes = len(axis_names)
    rank = axes + 3
    q = check_array(op, "q", q, backend, ndim=rank)
    k = check_array(op, "k", k, backend, ndim=rank)
    v = check_array(op, "v", v, backend, ndim=rank)
    rpb = check_optional_array(op, "rpb", rpb, backend)
    check_same_dtype(op, q=q, k=k, v=v, rpb=rpb)
    shape = tuple(q.shape)
    check_shape(op, "k", k, shape)
    check_shape(op, "v", v, shape)
    if shape[-1] < 1:
        fail(op, "q", "an array with head_dim >= 1", f"shape {shape}")
    kernel_size = as_tuple(op, "kernel_size", kernel_size, axes, minimum=1, odd=True)
    dilation = as_tuple(op, "dilation", dilation, axes, minimum=1)
    stride = as_tuple(op, "stride", stride, axes, minimum=1)
    is_causal = as_bool_tuple(op, "is_causal", is_causal, axes)
    for axis, name in enumerate(axis_names):
        n, kern, dil, step = shape[2 + axis], kernel_size[axis], dilation[axis], stride[axis]
        if kern * dil > n:
            fail(op, "kernel_size", f"with kernel_size*dilation <= {name} on axis {2 + axis} ({name} {n})",
                 f"kernel_size {kern} * dilation {dil} = {kern * dil} > {n}")
        if step > kern:
            fail(op, "stride", f"<= kernel_size ({kern}) on axis {2 + axis} ({name})", step)
    if rpb is not None:
        check_shape(op, "rpb", rpb, (shape[1],) + tuple(2 * kern - 1 for kern in kernel_size))
    scale = check_scale(op, scale, shape[-1])
    return q, k, v, rpb, Options(kernel_size, dilation, stride, is_causal, scale)
