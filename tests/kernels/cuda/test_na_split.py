"""The cuda kernels of the split neighbourhood-attention ops (refvit/kernels/cuda/na_split.py) against
the NumPy reference on causal, strided and dilated windows: tiny maps, so that the simulator is quick."""
import numpy as np
import pytest

from tests.kernels.cpu.test_na_split import check_split_ops

pytestmark = pytest.mark.cuda

WINDOWS = [
    ((5, 3, 1, 1, True), (6, 3, 2, 1, False)),
    ((4, 3, 1, 2, False), (5, 5, 1, 1, True)),
    ((7, 3, 2, 3, True),),
    ((6, 5, 1, 1, False),),
]


@pytest.mark.parametrize("spatial_axes", WINDOWS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_numpy(spatial_axes, dtype):
    check_split_ops("cuda", spatial_axes, 2, 2, 3, True, 11, dtype)


def test_kernels_match_numpy_without_bias():
    check_split_ops("cuda", ((5, 3, 1, 1, False), (5, 3, 1, 1, True)), 1, 3, 2, False, 4, np.float64)
