"""The tap loops of refvit/kernels/cuda/_conv.py: the depthwise kernels are the grouped kernels of
conv2d at one channel per group, so both give the same numbers, bit for bit."""
import numpy as np
import pytest

from refvit.ops._conv_geometry import Window

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("window", [Window((3, 3), (1, 1), (1, 1), (1, 1)), Window((3, 2), (2, 1), (1, 0), (1, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_kernels_are_conv2d_with_one_channel_per_group(window, dtype):
    from refvit.kernels.cuda import conv2d, depthwise_conv2d
    from refvit.kernels.cuda._device import empty, grid_1d, to_device

    rng = np.random.default_rng(5)
    x, weight, bias = to_device(rng.standard_normal((1, 6, 5, 4)).astype(dtype),
                                rng.standard_normal((4, 1, *window.kernel)).astype(dtype),
                                rng.standard_normal(4).astype(dtype))
    out_shape = (1, *window.output_size(6, 5), 4)
    (dout,) = to_device(rng.standard_normal(out_shape).astype(dtype))
    results = []
    for module in (conv2d, depthwise_conv2d):
        geometry = module._window_args(window)
        out, dx = empty(out_shape, dtype), empty(x.shape, dtype)
        module._forward_kernel[grid_1d(out.size)](x, weight, bias, out, *geometry)
        module._grad_input_kernel[grid_1d(dx.size)](dout, weight, dx, *geometry)
        results.append((out.copy_to_host(), dx.copy_to_host()))
    for grouped, depthwise in zip(*results):
        np.testing.assert_array_equal(grouped, depthwise)
