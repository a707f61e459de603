"""conv2d: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.kernels.cpu import conv2d as cpu_conv2d
from refvit.kernels.cpu import depthwise_conv2d
from refvit.ops._conv_geometry import Window
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import layouts, random_array, seeds
from tests.conftest import tolerance

# (x shape, weight shape, with bias, options): dense, grouped, depthwise, channel multiplier
VARIANTS = {
    "dense": ((1, 4, 5, 2), (3, 2, 3, 3), True, dict(padding=1)),
    "dense_strided_dilated": ((2, 6, 7, 2), (3, 2, 2, 3), True, dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
    "grouped": ((1, 5, 5, 4), (4, 2, 3, 2), False, dict(stride=(1, 2), padding=1, dilation=(2, 1), groups=2)),
    "depthwise": ((2, 5, 6, 3), (3, 1, 3, 3), True, dict(padding=1, groups=3)),
    "depthwise_strided_dilated": ((1, 7, 6, 2), (2, 1, 3, 2), True, dict(stride=(2, 3), padding=(2, 1), dilation=(2, 1), groups=2)),
    "depthwise_multiplier": ((1, 5, 4, 2), (4, 1, 3, 3), True, dict(stride=2, padding=1, groups=2)),
}


def variant_inputs(name, rng):
    x_shape, w_shape, with_bias, options = VARIANTS[name]
    x = rng.standard_normal(x_shape)
    weight = rng.standard_normal(w_shape)
    bias = rng.standard_normal(w_shape[0]) if with_bias else None
    return (x, weight, bias), options


@st.composite
def conv_configs(draw, max_groups=3, max_side_extra=4):
    """A conv2d problem whose window fits: (x shape, weight shape, options)."""
    groups = draw(st.integers(1, max_groups))
    group_in, group_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    sides = [max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, max_side_extra))
             for k, d, p in zip(kernel, dilation, padding)]
    x_shape = (draw(st.integers(1, 2)), *sides, groups * group_in)
    w_shape = (groups * group_out, group_in, *kernel)
    return x_shape, w_shape, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def torch_conv(x, weight, bias, stride=1, padding=0, dilation=1, groups=1):
    import torch
    out = torch.nn.functional.conv2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(weight),
        None if bias is None else torch.from_numpy(bias), stride, padding, dilation, groups)
    return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradcheck(rng, variant):
    args, options = variant_inputs(variant, rng)
    gradcheck(ops.conv2d, args, options)


@given(config=conv_configs(), seed=seeds(), with_bias=st.booleans())
def test_vjp(config, seed, with_bias):
    x_shape, w_shape, options = config
    bias = random_array((w_shape[0],), seed + 2) if with_bias else None
    check_vjp(ops.conv2d, (random_array(x_shape, seed), random_array(w_shape, seed + 1), bias), options)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_backends_match_numpy(kernel_backend, dtype, variant, rng):
    args, options = variant_inputs(variant, rng)
    check_backends(ops.conv2d, args, options, backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    (x, weight, bias), options = variant_inputs("depthwise", rng)
    for args in ((x, weight, bias), (np.ascontiguousarray(x[..., :2]), rng.standard_normal((2, 2, 1, 1)), None)):
        on_device = tuple(None if a is None else cuda.to_device(a) for a in args)
        kwargs = options if args[2] is not None else {}
        out, cache = ops.conv2d.forward(*on_device, **kwargs, backend="cuda")
        assert not isinstance(out, np.ndarray)
        expected, _ = ops.conv2d.forward(*args, **kwargs, backend="numpy")
        assert_close(out.copy_to_host(), expected)
        grads = ops.conv2d.backward(cuda.to_device(np.ones(expected.shape)), cache)
        assert all(g is None or not isinstance(g, np.ndarray) for g in grads)


@given(config=conv_configs(max_groups=1), seed=seeds(), layout=layouts(), depthwise=st.booleans())
def test_cpu_accepts_any_layout(config, seed, layout, depthwise):
    x_shape, w_shape, options = config
    if depthwise:
        w_shape, options = (x_shape[3], 1, *w_shape[2:]), {**options, "groups": x_shape[3]}
    x = random_array(x_shape, seed, layout=layout)
    weight = random_array(w_shape, seed + 1, layout=layout)
    expected, _ = ops.conv2d.forward(np.ascontiguousarray(x), np.ascontiguousarray(weight), **options, backend="numpy")
    assert_close(ops.conv2d.forward(x, weight, **options, backend="cpu")[0], expected)


@given(batch=st.integers(1, 2), side=st.integers(1, 4), channels=st.integers(1, 5),
       out_channels=st.integers(1, 5), seed=seeds())
def test_1x1_conv_is_linear(batch, side, channels, out_channels, seed):
    x = random_array((batch, side, side + 1, channels), seed)
    weight = random_array((out_channels, channels, 1, 1), seed + 1)
    bias = random_array((out_channels,), seed + 2)
    linear = x @ weight[:, :, 0, 0].T + bias
    for backend in ("numpy", "cpu"):
        assert_close(ops.conv2d.forward(x, weight, bias, backend=backend)[0], linear, rtol=1e-12, atol=1e-12)


@given(config=conv_configs(max_groups=1), seed=seeds())
def test_depthwise_kernels_equal_grouped_dense_path(config, seed):
    """The dedicated depthwise kernels (which the cpu entry picks at ``groups = C``) agree with the
    cpu path for other grouped convolutions, called directly at ``groups = C``."""
    (batch, height, width, _), (_, _, kh, kw), options = config
    channels = 1 + seed % 4
    x = random_array((batch, height, width, channels), seed)
    weight = random_array((channels, 1, kh, kw), seed + 1)
    bias = random_array((channels,), seed + 2)
    dout_shape = (batch, *Window((kh, kw), options["stride"], options["padding"], options["dilation"])
                  .output_size(height, width), channels)
    dout = random_array(dout_shape, seed + 3)
    out, cache = ops.conv2d.forward(x, weight, bias, **{**options, "groups": channels}, backend="cpu")
    window = cache.window
    assert cpu_conv2d.choose(channels, channels, channels) is depthwise_conv2d
    grouped = cpu_conv2d.choose(2 * channels, 2 * channels, channels)  # the path of other grouped convs
    assert grouped is not depthwise_conv2d
    assert_close(out, grouped.forward(x, weight, bias, window), rtol=1e-12, atol=1e-12)
    want = grouped.backward(dout, x, weight, True, window, cpu_conv2d.channel_sums)
    for got, expected in zip(ops.conv2d.backward(dout, cache), want):
        assert_close(got, expected, rtol=1e-12, atol=1e-12)


@given(config=conv_configs(), seed=seeds(), with_bias=st.booleans())
def test_matches_torch(config, seed, with_bias):
    import torch
    x_shape, w_shape, options = config
    x, weight = random_array(x_shape, seed), random_array(w_shape, seed + 1)
    bias = random_array((w_shape[0],), seed + 2) if with_bias else None
    expected = torch_conv(x, weight, bias, **options)
    dout = random_array(expected.shape, seed + 3)
    tx, tw = (torch.from_numpy(a).requires_grad_() for a in (x.transpose(0, 3, 1, 2), weight))
    tb = None if bias is None else torch.from_numpy(bias).requires_grad_()
    torch.nn.functional.conv2d(tx, tw, tb, **options).backward(torch.from_numpy(dout.transpose(0, 3, 1, 2)))
    for backend in ("numpy", "cpu"):
        out, cache = ops.conv2d.forward(x, weight, bias, **options, backend=backend)
        assert_close(out, expected, rtol=1e-10, atol=1e-12)
        dx, dweight, dbias = ops.conv2d.backward(dout, cache)
        assert_close(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
        assert_close(dweight, tw.grad.numpy(), rtol=1e-10, atol=1e-12)
        if bias is None:
            assert dbias is None
        else:
            assert_close(dbias, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_output_size_follows_pytorch():
    x = np.zeros((1, 10, 9, 2))
    out, _ = ops.conv2d.forward(x, np.zeros((3, 2, 3, 2)), stride=(3, 2), padding=(1, 0), dilation=(2, 3),
                                backend="numpy")
    # H: floor((10 + 2 - 2*2 - 1)/3) + 1 = 3; W: floor((9 - 3*1 - 1)/2) + 1 = 3
    assert out.shape == (1, 3, 3, 3)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_nonfinite_values_propagate(backend):
    x = np.zeros((1, 3, 3, 1))
    x[0, 0, 0, 0] = np.nan
    x[0, 2, 2, 0] = np.inf
    out, _ = ops.conv2d.forward(x, np.ones((1, 1, 2, 2)), backend=backend)
    assert np.isnan(out[0, 0, 0, 0]) and np.isposinf(out[0, 1, 1, 0]) and np.isfinite(out[0, 0, 1, 0])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x, w = np.zeros((1, 5, 5, 4)), np.zeros((6, 2, 3, 3))
    forward = ops.conv2d.forward
    with pytest.raises(ValueError, match="conv2d: 'weight' must be a 4-D array"):
        forward(x, np.zeros((6, 2, 3)), groups=2, backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'weight' must be of shape"):
        forward(x, w, groups=1, backend=backend)  # C_in 4 needs weight (C_out, 4, kh, kw)
    with pytest.raises(ValueError, match="conv2d: 'groups' must be a divisor"):
        forward(x, np.zeros((6, 1, 3, 3)), groups=3, backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'groups' must be a divisor"):
        forward(x, np.zeros((5, 2, 3, 3)), groups=2, backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'groups' must be an integer >= 1"):
        forward(x, w, groups=0, backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'weight' must be a window that fits the padded input"):
        forward(x, np.zeros((6, 2, 7, 3)), groups=2, padding=(0, 1), backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'weight' must be a window that fits the padded input"):
        forward(x, w, groups=2, dilation=3, backend=backend)
    for stride in (0, -1, (1, 0)):
        with pytest.raises(ValueError, match="conv2d: 'stride' must be an integer >= 1"):
            forward(x, w, groups=2, stride=stride, backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'padding' must be an integer >= 0"):
        forward(x, w, groups=2, padding=-1, backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'dilation' must be an integer >= 1"):
        forward(x, w, groups=2, dilation=0, backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'stride' must be an integer or a sequence of 2"):
        forward(x, w, groups=2, stride=(1, 1, 1), backend=backend)
    with pytest.raises(ValueError, match="conv2d: 'bias' must be of shape"):
        forward(x, w, np.zeros(5), groups=2, backend=backend)
    with pytest.raises(TypeError, match="conv2d: 'x, weight, bias' must be of one dtype"):
        forward(x, w, np.zeros(6, dtype=np.float32), groups=2, backend=backend)
