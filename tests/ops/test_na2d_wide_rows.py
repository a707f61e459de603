"""The layouts of the width-vectorised ``na2d`` forward: wide rows, tall columns and corners.

The forward writes every query of a dilation group once, from one of three passes: the wide rows
(interior columns), the tall columns (border columns of interior rows, the same kernel on the
transposed problem) and the corners. The shapes below make each pass matter on its own: kernels
taller than wide and wider than tall, kernel 1 on one axis (no border on it), and maps split between
tasks in both passes."""
import numpy as np
import pytest

from refvit import ops
from refvit.kernels.cpu import na2d_transposed
from refvit.kernels.cpu import na2d_wide_rows as wide
from refvit.testing import assert_close
from tests.conftest import tolerance


def test_tall_columns_are_the_transpose_of_wide_rows(rng):
    a = rng.standard_normal((3, 7, 9, 4)).astype(np.float32)   # (maps, H, W, d)
    columns = np.array([0, 2, 8])
    margin = 2
    result = np.full((3, 4, 3 * 7 + 2 * margin), np.nan, np.float32)
    wide.to_tall_columns((a,), (columns,), 0, 1, 0, 1, margin, np.array([2.0], np.float32), (result,))
    expected = 2.0 * a[:, :, columns].transpose(2, 3, 0, 1).reshape(3, 4, 3 * 7)
    np.testing.assert_array_equal(result[:, :, margin:-margin], expected)
    np.testing.assert_array_equal(result[:, :, :margin], 0.0)
    np.testing.assert_array_equal(result[:, :, -margin:], 0.0)


def test_wide_rows_of_a_dilation_group_with_zero_margins(rng):
    a = rng.standard_normal((2, 5, 8, 3))
    result = np.full((3, 3, 2 * 4 + 2), np.nan)     # rows 0, 2, 4 and columns 1, 3, 5, 7
    wide.to_wide_rows((a,), 0, 2, 1, 2, 1, np.array([1.0]), (result,))
    expected = a[:, 0::2, 1::2].transpose(1, 3, 0, 2).reshape(3, 3, 8)
    np.testing.assert_array_equal(result[:, :, 1:-1], expected)
    np.testing.assert_array_equal(result[:, :, [0, -1]], 0.0)


def test_add_shifted_dots_accumulates(rng):
    left, right = rng.standard_normal((2, 6, 20))
    products = np.full(12, 0.5)
    wide.add_shifted_dots(left, right, 3, -2, products)
    expected = 0.5 + np.einsum("ct,ct->t", left[:, 3:15], right[:, 1:13])
    assert_close(products, expected, rtol=1e-13, atol=1e-13)


# (batch, heads, (H, W), head_dim, kernel_size, dilation, with_rpb)
SHAPES = [
    (1, 2, (11, 6), 4, (7, 3), 1, True),     # taller kernel: wide tall-column margins
    (2, 1, (6, 12), 3, (3, 7), 1, True),     # wider kernel: many border columns, few border rows
    (1, 3, (8, 9), 5, (1, 5), 1, True),      # no border rows: no corners
    (1, 2, (9, 7), 4, (5, 1), 1, True),      # no border columns: the wide rows alone
    (2, 2, (10, 13), 4, (3, 5), (3, 2), False),
]
IDS = ["tall-kernel", "wide-kernel", "kernel-1-rows", "kernel-1-cols", "dilation-no-rpb"]


@pytest.mark.parametrize("batch, heads, size, head_dim, kernel_size, dilation, with_rpb", SHAPES, ids=IDS)
@pytest.mark.parametrize("row_length", [None, 1])
def test_forward_matches_numpy(rng, dtype, monkeypatch, batch, heads, size, head_dim, kernel_size, dilation,
                               with_rpb, row_length):
    if row_length is not None:  # one map per task in every pass
        monkeypatch.setattr(na2d_transposed, "TARGET_ROW_LENGTH", row_length)
    q, k, v = (rng.standard_normal((batch, heads) + size + (head_dim,)) for _ in range(3))
    rpb = rng.standard_normal((heads, 2 * kernel_size[0] - 1, 2 * kernel_size[1] - 1)) if with_rpb else None
    expected, cache = ops.na2d.forward(q, k, v, kernel_size, dilation=dilation, rpb=rpb, backend="numpy")
    q, k, v = (a.astype(dtype) for a in (q, k, v))
    out, attn = na2d_transposed.forward(q, k, v, None if rpb is None else rpb.astype(dtype), cache.options)
    assert out.dtype == dtype and attn.dtype == dtype
    assert_close(out, expected, **tolerance(dtype))
    assert_close(attn.reshape(cache.attn.shape), cache.attn, **tolerance(dtype))


def test_forward_does_not_depend_on_the_task_split(rng, monkeypatch):
    q, k, v = (rng.standard_normal((3, 2, 9, 10, 4)) for _ in range(3))
    rpb = rng.standard_normal((2, 5, 5))
    _, cache = ops.na2d.forward(q, k, v, 3, dilation=(1, 2), rpb=rpb, backend="numpy")
    whole = na2d_transposed.forward(q, k, v, rpb, cache.options)
    monkeypatch.setattr(na2d_transposed, "TARGET_ROW_LENGTH", 1)
    split = na2d_transposed.forward(q, k, v, rpb, cache.options)
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a, b)
