"""multiscale_dwconv: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import seeds
from tests.conftest import tolerance

op = ops.multiscale_dwconv


def make_inputs(rng, batch, height, width, heads, per_head, with_bias=True, dtype=np.float64):
    x = rng.standard_normal((batch, height, width, heads * per_head)).astype(dtype)
    weights = [(0.5 * rng.standard_normal((per_head, 1, 3 + 2 * i, 3 + 2 * i))).astype(dtype) for i in range(heads)]
    biases = [rng.standard_normal(per_head).astype(dtype) for _ in range(heads)] if with_bias else None
    return x, weights, biases


def depthwise_conv_reference(x, w, b):
    """Depthwise cross-correlation with 'same' zero padding, written with explicit windows:
    ``x (B, H, W, C)``, ``w (C, 1, k, k)``, ``b (C,)`` or None."""
    radius = w.shape[2] // 2
    padded = np.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
    windows = sliding_window_view(padded, (w.shape[2], w.shape[3]), axis=(1, 2))  # (B, H, W, C, k, k)
    out = np.einsum("bhwcst,cst->bhwc", windows, w[:, 0])
    return out if b is None else out + b


@st.composite
def problems(draw, max_heads=3):
    heads = draw(st.integers(1, max_heads))
    return dict(batch=draw(st.integers(1, 2)), height=draw(st.integers(1, 5)), width=draw(st.integers(1, 5)),
                heads=heads, per_head=draw(st.integers(1, 2)), with_bias=draw(st.booleans()))


# 1. gradients

@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("with_bias", [True, False])
def test_gradcheck(rng, heads, with_bias):
    x, weights, biases = make_inputs(rng, 1, 3, 4, heads, 2, with_bias)
    errors = gradcheck(op, (x, weights, biases, heads))
    assert len(errors) == 1 + heads + (heads if with_bias else 0)


@given(problem=problems(), seed=seeds())
def test_vjp(problem, seed):
    x, weights, biases = make_inputs(np.random.default_rng(seed), **problem)
    check_vjp(op, (x, weights, biases, problem["heads"]))


# 2. backends (the op's example in every dtype and layout: test_contract.py)

@pytest.mark.parametrize("with_bias", [True, False])
def test_backends_match_numpy(kernel_backend, dtype, with_bias, rng):
    # a 2x5 map is smaller than head 2's 7x7 kernel: padding covers more than the map
    x, weights, biases = make_inputs(rng, 2, 2, 5, 3, 2, with_bias)
    check_backends(op, (x, weights, biases, 3), backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    x, weights, biases = make_inputs(rng, 1, 3, 3, 2, 1)
    out, cache = op.forward(cuda.to_device(x), [cuda.to_device(w) for w in weights],
                            [cuda.to_device(b) for b in biases], 2, backend="cuda")
    assert hasattr(out, "copy_to_host")
    dx, dweights, dbiases = op.backward(cuda.to_device(np.ones_like(x)), cache)
    assert all(hasattr(a, "copy_to_host") for a in (dx, *dweights, *dbiases))
    ref_out, ref_cache = op.forward(x, weights, biases, 2, backend="numpy")
    assert_close(out.copy_to_host(), ref_out)
    for got, want in zip(dweights, op.backward(np.ones_like(x), ref_cache)[1]):
        assert_close(got.copy_to_host(), want)


# 3. properties

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)), seed=seeds())
def test_one_head_is_a_depthwise_3x3_conv(backend, shape, seed):
    rng = np.random.default_rng(seed)
    x, weights, biases = make_inputs(rng, *shape[:3], heads=1, per_head=shape[3])
    out, _ = op.forward(x, weights, biases, 1, backend=backend)
    assert_close(out, depthwise_conv_reference(x, weights[0], biases[0]))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(problem=problems(max_heads=4), seed=seeds())
def test_equals_per_head_depthwise_convs_concatenated(backend, problem, seed):
    x, weights, biases = make_inputs(np.random.default_rng(seed), **problem)
    per_head = problem["per_head"]
    parts = [depthwise_conv_reference(x[..., i * per_head:(i + 1) * per_head], w, None if biases is None else biases[i])
             for i, w in enumerate(weights)]
    out, _ = op.forward(x, weights, biases, problem["heads"], backend=backend)
    assert_close(out, np.concatenate(parts, axis=3))


def test_each_head_sees_only_its_own_channels(rng):
    x, weights, biases = make_inputs(rng, 1, 4, 4, 3, 2)
    out, _ = op.forward(x, weights, biases, 3, backend="numpy")
    changed = x.copy()
    changed[..., 2:4] += 1.0  # head 1's channels
    out_changed, _ = op.forward(changed, weights, biases, 3, backend="numpy")
    assert_close(out_changed[..., :2], out[..., :2])
    assert_close(out_changed[..., 4:], out[..., 4:])
    assert not np.allclose(out_changed[..., 2:4], out[..., 2:4])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_matches_torch_grouped_conv2d(backend, rng):
    import torch
    heads, per_head = 4, 2
    x, weights, biases = make_inputs(rng, 2, 6, 5, heads, per_head)
    out, cache = op.forward(x, weights, biases, heads, backend=backend)
    dout = rng.standard_normal(out.shape)
    dx, dweights, dbiases = op.backward(dout, cache)

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = [torch.tensor(w, requires_grad=True) for w in weights]
    tb = [torch.tensor(b, requires_grad=True) for b in biases]
    parts = [torch.nn.functional.conv2d(tx[:, i * per_head:(i + 1) * per_head], tw[i], tb[i], padding=1 + i,
                                        groups=per_head) for i in range(heads)]
    tout = torch.cat(parts, dim=1)
    tout.backward(torch.tensor(dout.transpose(0, 3, 1, 2)))
    assert_close(out, tout.detach().numpy().transpose(0, 2, 3, 1))
    assert_close(dx, tx.grad.numpy().transpose(0, 2, 3, 1))
    for i in range(heads):
        assert_close(dweights[i], tw[i].grad.numpy(), name=f"dweights[{i}]")
        assert_close(dbiases[i], tb[i].grad.numpy(), name=f"dbiases[{i}]")


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_nonfinite_values_propagate(backend, rng):
    x, weights, biases = make_inputs(rng, 1, 4, 4, 2, 1)
    x[0, 0, 0, 1] = np.nan  # head 1, kernel 5: reaches pixels up to 2 away
    out, _ = op.forward(x, weights, biases, 2, backend=backend)
    assert np.isnan(out[0, :3, :3, 1]).all() and np.isfinite(out[0, 3, :, 1]).all()
    assert np.isfinite(out[..., 0]).all()


# 4. bad input

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend, rng):
    x, weights, biases = make_inputs(rng, 1, 4, 4, 2, 2)

    def call(x=x, weights=weights, biases=biases, heads=2):
        return op.forward(x, weights, biases, heads, backend=backend)

    with pytest.raises(ValueError, match="multiscale_dwconv: 'heads' must be a divisor of the channel count C = 4"):
        call(heads=3)
    with pytest.raises(ValueError, match="multiscale_dwconv: 'heads'"):
        call(heads=0)
    with pytest.raises(ValueError, match=r"multiscale_dwconv: 'weights' must be a sequence of 2 arrays .*; got 1 arrays"):
        call(weights=weights[:1])
    with pytest.raises(TypeError, match="multiscale_dwconv: 'weights'"):
        call(weights=weights[0])
    with pytest.raises(ValueError, match="multiscale_dwconv: 'biases' must be a sequence of 2 arrays"):
        call(biases=biases + biases)
    even = [weights[0], rng.standard_normal((2, 1, 4, 4))]
    with pytest.raises(ValueError, match=r"multiscale_dwconv: 'weights\[1\]' must be of shape \(2, 1, 5, 5\) "
                                         r".*; got shape \(2, 1, 4, 4\)"):
        call(weights=even)
    with pytest.raises(ValueError, match=r"multiscale_dwconv: 'weights\[0\]' must be of shape \(2, 1, 3, 3\)"):
        call(weights=[rng.standard_normal((3, 1, 3, 3)), weights[1]])
    with pytest.raises(ValueError, match=r"multiscale_dwconv: 'weights\[0\]' must be a 4-D array"):
        call(weights=[weights[0][:, 0], weights[1]])
    with pytest.raises(ValueError, match=r"multiscale_dwconv: 'biases\[1\]' must be of shape \(2,\)"):
        call(biases=[biases[0], np.zeros(3)])
    with pytest.raises(TypeError, match=r"multiscale_dwconv: 'x, weights\[0\], weights\[1\]"):
        call(weights=[weights[0], weights[1].astype(np.float32)])
    with pytest.raises(TypeError, match=r"multiscale_dwconv: 'x"):
        call(biases=[biases[0].astype(np.float32), biases[1]])
