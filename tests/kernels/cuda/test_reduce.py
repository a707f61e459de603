"""kernels/cuda/_reduce.py: the device sums over axes behind mean, add and mul (under the simulator in CI)."""
import itertools

import numpy as np
import pytest

from refvit import kernels
from refvit.testing import assert_close, to_numpy


@pytest.mark.cuda
def test_sum_over_axes_for_every_axis_subset(rng):
    """The device reductions behind mean, add and mul."""
    module = kernels.load("cuda", "_reduce")
    x = rng.standard_normal((2, 1, 3, 2))
    for count in range(x.ndim + 1):
        for axes in itertools.combinations(range(x.ndim), count):
            for keepdims in (False, True):
                got = to_numpy(module.sum_over_axes(x, axes, keepdims, 0.5))
                assert_close(got, 0.5 * np.sum(x, axis=axes, keepdims=keepdims), rtol=1e-12, atol=1e-12)
                assert got.shape == np.sum(x, axis=axes, keepdims=keepdims).shape
    assert_close(to_numpy(module.sum_to_shape(x, (3, 1))), x.sum(axis=(0, 1, 3))[:, None], rtol=1e-12, atol=1e-12)
