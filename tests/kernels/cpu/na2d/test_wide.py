"""The layouts of the ``wide`` path (:mod:`refvit.kernels.cpu.na2d.wide_layout`): wide rows, tall columns,
border blocks, shifted products."""
import numpy as np

from refvit.kernels.cpu.na2d import wide_layout as wide
from refvit.testing import assert_close


def test_tall_columns_are_the_transpose_of_wide_rows(rng):
    a = rng.standard_normal((3, 7, 9, 4)).astype(np.float32)   # (maps, H, W, d)
    columns = np.array([0, 2, 8])
    margin = 2
    result = np.full((3, 4, 3 * 7 + 2 * margin), np.nan, np.float32)
    wide.to_tall_columns((a,), (columns,), (0, 1), (0, 1), margin, np.array([2.0], np.float32), (result,))
    expected = 2.0 * a[:, :, columns].transpose(2, 3, 0, 1).reshape(3, 4, 3 * 7)
    np.testing.assert_array_equal(result[:, :, margin:-margin], expected)
    np.testing.assert_array_equal(result[:, :, :margin], 0.0)
    np.testing.assert_array_equal(result[:, :, -margin:], 0.0)


def test_wide_rows_of_a_dilation_group_with_zero_margins(rng):
    a = rng.standard_normal((2, 5, 8, 3))
    result = np.full((3, 3, 2 * 4 + 2), np.nan)     # rows 0, 2, 4 and columns 1, 3, 5, 7
    wide.to_wide_rows((a,), (0, 2), (1, 2), 1, np.array([1.0]), (result,))
    expected = a[:, 0::2, 1::2].transpose(1, 3, 0, 2).reshape(3, 3, 8)
    np.testing.assert_array_equal(result[:, :, 1:-1], expected)
    np.testing.assert_array_equal(result[:, :, [0, -1]], 0.0)


def test_add_shifted_dots_accumulates(rng):
    left, right = rng.standard_normal((2, 6, 20))
    products = np.full(12, 0.5)
    wide.add_shifted_dots(left, right, 3, -2, products)
    expected = 0.5 + np.einsum("ct,ct->t", left[:, 3:15], right[:, 1:13])
    assert_close(products, expected, rtol=1e-13, atol=1e-13)


def test_task_span_covers_every_map_once():
    maps, per_task, lanes, margin = 7, 3, 5, 2
    chunks = -(-maps // per_task)
    spans = [wide.task_span(task, chunks, per_task, maps, lanes, margin) for task in range(2 * chunks)]
    assert [s.row for s in spans] == [0] * chunks + [1] * chunks
    assert [(s.first_map, s.last_map) for s in spans[:chunks]] == [(0, 3), (3, 6), (6, 7)]
    assert all(s.start == margin + s.first_map * lanes and s.n == (s.last_map - s.first_map) * lanes for s in spans)
