r"""The *wide* path of ``na2d`` on the CPU (stride 1, no causal mask), forward only: every inner loop
runs along the width of many maps side by side. The layouts and vector loops are in :mod:`.wide_layout`.
Its backward was removed: the ``tiled`` one did less work on the shapes the rule sends here (figures in
:mod:`.dispatch`), so a backward after this forward runs on another path, which reads this ``attn``.

The general kernels take one query at a time; their dot products over the head dimension are
reductions that the compiler does not vectorise without reordering sums (and there is no
``fastmath`` here). This path turns the work around so every inner loop runs along the *width*,
where the lanes are independent queries:

* **one dilation group at a time.** Query ``(x, y)`` of group ``(g_h, g_w)`` sits at
  ``(g_h + \delta_h x, g_w + \delta_w y)`` and only sees keys of its own group, where the window rule
  is the one of dilation 1 on the group's ``(H_g, W_g)`` map.
* **wide rows.** ``q, k, v`` of a group are copied to ``(H_g, d, h + B*heads*W_g + h)``,
  ``h = k_w//2``: map row ``x`` of every map side by side along the last axis (map ``m``, column ``y``
  at position ``h + m W_g + y``), with ``h`` zero columns at both ends. The row window depends on
  ``x`` only, so one loop covers the same row of all maps. A task covers the maps ``[m_0, m_1)`` of
  one row (:class:`refvit.kernels.cpu.na2d.wide_layout.TaskSpan`).
* **shifted rows.** With stride 1 and no causal mask an interior column ``y``
  (``h <= y < W_g - h``) has window start ``y - h``: slot ``w`` holds the key ``y + w - h``, and the
  logits of slot ``(u, w)`` (key row ``r_u``) of a whole wide row are

  .. math::  a_{x,uw}[t] = \sum_c q_x[c, t]\; k_{r_u}[c,\, t + w - h]

  a sum over ``c`` of element-wise products of two shifted rows. The loop over ``t`` has no
  dependence between lanes and vectorises, each lane still summing over ``c`` in a fixed order.
* **border columns, forward.** The ``h`` border columns on each side of every map have clamped column
  windows, but along the *height* their interior rows have shifted windows too. The same kernel,
  :func:`forward_rows`, runs a second time with rows and columns swapped: the border columns (queries)
  and the columns their windows hold (keys, values) are copied to *tall columns* ``(columns, d,
  h_h + B*heads*H_g + h_h)`` and the lanes run along the height. Each pass writes only its interior
  lanes; the border lanes are computed along with the wrong (shifted) windows and dropped. That
  leaves the corners (border row and border column), where all queries of one corner share one
  window: a small dense attention each (:func:`forward_corners`).
* **softmax** per lane along the row, with :func:`refvit.kernels.cpu.vector_math.exp_shifted`. The
  logits start from the bias and ``q`` is scaled when it is copied, so there is no separate pass for
  either; the weighted sum uses the unnormalised weights and ``out`` and ``attn`` are divided by the
  total as they are written. ``attn (B*heads, H, W, kh*kw)`` is stored exactly as the other paths
  store it, so their backward reads this path's cache.

The wide rows multiply across the maps of all batch elements and heads (border lanes by zero
weights), so a NaN or infinity in one map could reach another map's results (``0 * inf``): the
dispatch sends calls with a non-finite input to the general path. The layouts are scratch arrays
kept between calls (:mod:`refvit.kernels.cpu._workspace`). Everything runs in the input dtype.
"""
import functools

import numpy as np

from refvit.kernels.cpu._workspace import scratch
from refvit.kernels.cpu.na2d import wide_layout as layout
from refvit.kernels.cpu.na2d.flat import flat
from refvit.kernels.cpu.na2d.wide_kernels import GroupAxis, Lanes, RowWindows, Slots, forward_corners, forward_rows
from refvit.ops._neighborhood import axis_bounds

TARGET_ROW_LENGTH = 256  # maps per task: enough that a wide row holds about this many columns


class _Group:
    """One dilation group: its offsets, map size, window tables (dilation 1) and layouts."""

    def __init__(self, row_group, col_group, height, width, maps, kernel_size, dilation):
        self.rows_at = (row_group, dilation[0])   # (offset, step) in the image
        self.cols_at = (col_group, dilation[1])
        self.rows = len(range(row_group, height, dilation[0]))
        self.cols = len(range(col_group, width, dilation[1]))
        self.maps = maps
        self.kernel_h, self.kernel_w = kernel_size
        self.row_bounds = axis_bounds(self.rows, self.kernel_h)
        self.col_bounds = axis_bounds(self.cols, self.kernel_w)
        self.margin = self.kernel_w // 2
        self.border = _border(self.cols, self.margin)
        self.row_margin = self.kernel_h // 2
        self.row_border = _border(self.rows, self.row_margin)
        # border columns: the key columns their windows hold, and where each window starts among them
        first_keys = self.col_bounds.first_key[self.border]
        self.key_cols = np.unique(first_keys[:, None] + np.arange(self.kernel_w))
        self.border_first_key = np.searchsorted(self.key_cols, first_keys)
        # the flat pixel offset (in an H x W map) of each group row and column
        rows_in_image = (row_group + dilation[0] * np.arange(self.rows)) * width
        cols_in_image = col_group + dilation[1] * np.arange(self.cols)
        self.row_windows = RowWindows(self.row_bounds.first_key, self.row_bounds.first_bias)
        self.row_lanes = Lanes(rows_in_image, cols_in_image, height * width, _maps_per_task(maps, self.cols))
        self.column_windows = RowWindows(self.border_first_key, self.col_bounds.first_bias[self.border])
        self.column_lanes = Lanes(cols_in_image[self.border], rows_in_image, height * width,
                                  _maps_per_task(maps, self.rows))
        self.corner_axes = (GroupAxis(self.row_bounds.first_key, self.row_bounds.first_bias, self.kernel_h,
                                      row_group, dilation[0]),
                            GroupAxis(self.col_bounds.first_key, self.col_bounds.first_bias, self.kernel_w,
                                      col_group, dilation[1]))

    def wide(self, arrays, factors):
        """Each of ``arrays = (q, k, v)``, ``(B*heads, H, W, d)`` -> wide rows ``(rows, d, h + B*heads*cols + h)``,
        times its factor, in scratch arrays; one parallel loop for all."""
        dtype, head_dim = arrays[0].dtype, arrays[0].shape[3]
        shape = (self.rows, head_dim, self.maps * self.cols + 2 * self.margin)
        results = tuple(scratch(f"na2d.{name}", shape, dtype) for name in "qkv")
        layout.to_wide_rows(tuple(arrays), self.rows_at, self.cols_at, self.margin, np.array(factors, dtype), results)
        return results

    def tall(self, arrays, columns, factors):
        """Columns ``columns[i]`` of each ``arrays[i] (B*heads, H, W, d)`` -> tall columns
        ``(len(columns[i]), d, kh//2 + B*heads*rows + kh//2)``, times its factor, in scratch arrays."""
        dtype, head_dim = arrays[0].dtype, arrays[0].shape[3]
        length = self.maps * self.rows + 2 * self.row_margin
        results = tuple(scratch(f"na2d.{name}", (chosen.size, head_dim, length), dtype)
                        for name, chosen in zip("qkv", columns))
        layout.to_tall_columns(tuple(arrays), tuple(columns), self.rows_at, self.cols_at, self.row_margin,
                               np.array(factors, dtype), results)
        return results


def _border(length, margin):
    """The positions of an axis whose window is clamped: ``0..margin-1`` and ``length-margin..length-1``."""
    return np.concatenate((np.arange(margin), np.arange(length - margin, length)))


def _maps_per_task(maps, lanes):
    return max(1, min(maps, -(-TARGET_ROW_LENGTH // lanes)))


def _groups(height, width, maps, options):
    """The dilation groups of a call (their tables are kept for the next call of the same geometry)."""
    return _cached_groups(height, width, maps, tuple(options.kernel_size), tuple(options.dilation), TARGET_ROW_LENGTH)


@functools.lru_cache(maxsize=32)
def _cached_groups(height, width, maps, kernel_size, dilation, target_row_length):
    return tuple(_Group(row_group, col_group, height, width, maps, kernel_size, dilation)
                 for row_group in range(dilation[0]) for col_group in range(dilation[1]))


def _flat(a):
    return flat(a)


def forward(q, k, v, rpb, options):
    """``q, k, v (B, heads, H, W, d)``, ``rpb (heads, 2kh-1, 2kw-1)`` or None -> ``(out, attn)``,
    ``attn (B, heads, H, W, kh*kw)``; stride 1 and no causal mask.

    Per dilation group, three passes that together write every query once: the wide rows (interior
    columns, every row), the tall columns (border columns, interior rows) and the corners."""
    batch, heads, height, width, head_dim = q.shape
    kernel_h, kernel_w = options.kernel_size
    bias = np.zeros((heads, 0, 0), q.dtype) if rpb is None else np.ascontiguousarray(rpb)
    bias_by_column = np.ascontiguousarray(bias.transpose(0, 2, 1))
    q, k, v = (_flat(a) for a in (q, k, v))
    out = np.empty_like(q)
    attn = np.empty(q.shape[:3] + (kernel_h * kernel_w,), q.dtype)
    pixel_out, pixel_attn = out.reshape(-1, head_dim), attn.reshape(-1, kernel_h * kernel_w)
    factors = (options.scale, 1.0, 1.0)
    for g in _groups(height, width, q.shape[0], options):
        forward_rows(*g.wide((q, k, v), factors), bias, heads, g.row_windows, g.row_lanes,
                     Slots(kernel_h, kernel_w, kernel_w, 1), pixel_out, pixel_attn)
        if g.border.size == 0:
            continue
        # Border columns: the same kernel with rows and columns swapped, lanes along the height.
        forward_rows(*g.tall((q, k, v), (g.border, g.key_cols, g.key_cols), factors), bias_by_column, heads,
                     g.column_windows, g.column_lanes, Slots(kernel_w, kernel_h, 1, kernel_w), pixel_out, pixel_attn)
        if g.row_margin > 0:
            sides = (g.row_border.reshape(2, -1), g.border.reshape(2, -1))
            forward_corners(q, k, v, bias, heads, q.dtype.type(options.scale), sides, *g.corner_axes, out, attn)
    return out.reshape((batch, heads, height, width, head_dim)), attn.reshape((batch, heads, height, width, -1))

