"""``refvit.kernels.cpu.na2d.flat``: the (B*heads, H, W, d) arrays the kernels take, from any layout."""
import numpy as np
import pytest

from refvit.kernels.cpu.na2d import flat


@pytest.mark.parametrize("batch", [64, 2])  # above and below PARALLEL_MIN_SIZE
def test_strided_views_of_a_projection_are_copied_exactly(rng, batch):
    qkv = rng.standard_normal((batch, 8, 8, 3, 2, 32)).astype(np.float32)
    view = qkv[:, :, :, 1].transpose(0, 3, 1, 2, 4)                 # (B, heads, H, W, d), strided
    assert (view.size >= flat.PARALLEL_MIN_SIZE) == (batch == 64)
    result = flat.flat(view)
    assert result.flags.c_contiguous and result.shape == (batch * 2, 8, 8, 32)
    np.testing.assert_array_equal(result, np.ascontiguousarray(view).reshape(result.shape))


def test_contiguous_input_is_not_copied(rng):
    a = rng.standard_normal((2, 3, 4, 5, 6))
    result = flat.flat(a)
    assert np.shares_memory(result, a) and result.shape == (6, 4, 5, 6)
