"""attention: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck, to_numpy
from refvit.testing.strategies import dims, seeds
from tests.conftest import tolerance

B, H, NQ, NK, D, DV = 2, 2, 3, 5, 4, 3
# bias shapes broadcastable to (B, H, NQ, NK); "mask" is (B, 1, 1, NK) holding -inf entries
BIAS_KINDS = ["none", "full", "per_head", "per_query_key", "mask", "per_key"]
PROPERTY_BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def bias_for(kind, batch, heads, n_queries, n_keys, rng):
    if kind == "none":
        return None
    if kind == "mask":
        mask = np.zeros((batch, 1, 1, n_keys))
        mask[..., 1::2] = -np.inf  # key 0 always stays visible
        return mask
    shape = {"full": (batch, heads, n_queries, n_keys), "per_head": (heads, n_queries, n_keys),
             "per_query_key": (n_queries, n_keys), "per_key": (n_keys,)}[kind]
    return rng.standard_normal(shape)


def inputs(rng, batch=B, heads=H, n_queries=NQ, n_keys=NK, head_dim=D, value_dim=DV, bias="none"):
    q = rng.standard_normal((batch, heads, n_queries, head_dim))
    k = rng.standard_normal((batch, heads, n_keys, head_dim))
    v = rng.standard_normal((batch, heads, n_keys, value_dim))
    return (q, k, v), {"bias": bias_for(bias, batch, heads, n_queries, n_keys, rng)}


@st.composite
def attention_problems(draw, bias_kinds=BIAS_KINDS):
    """(shape dict, bias kind, seed), drawn small."""
    shape = dict(batch=draw(dims(1, 2)), heads=draw(dims(1, 3)), n_queries=draw(dims(1, 4)),
                 n_keys=draw(dims(1, 5)), head_dim=draw(dims(1, 4)), value_dim=draw(dims(1, 4)))
    return shape, draw(st.sampled_from(bias_kinds)), draw(seeds())


# 1. gradients (the op's example, with a per-head bias, is checked in test_contract.py)

@pytest.mark.parametrize("bias", [kind for kind in BIAS_KINDS if kind != "per_head"])
def test_gradcheck(rng, bias):
    args, kwargs = inputs(rng, bias=bias)
    errors = gradcheck(ops.attention, args, kwargs)
    assert set(errors) == {"q", "k", "v"} | ({"bias"} if bias != "none" else set())


@pytest.mark.parametrize("bias", ["none", "mask"])
def test_gradcheck_cpu_kernels(rng, bias):
    args, kwargs = inputs(rng, bias=bias)
    gradcheck(ops.attention, args, dict(kwargs, scale=0.7), backend="cpu")


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(problem=attention_problems())
def test_vjp(backend, problem):
    shape, bias, seed = problem
    args, kwargs = inputs(np.random.default_rng(seed), bias=bias, **shape)
    check_vjp(ops.attention, args, kwargs, backend=backend, seed=seed % 1000)


def test_backward_without_bias_returns_none(rng):
    args, _ = inputs(rng)
    out, cache = ops.attention.forward(*args, backend="numpy")
    grads = ops.attention.backward(np.ones_like(out), cache)
    assert len(grads) == 4 and grads[3] is None


# 2. backends (the example in every dtype and layout is checked in test_contract.py)

@pytest.mark.parametrize("bias", ["none", "full", "mask", "per_key"])
def test_backends_match_numpy(kernel_backend, dtype, bias, rng):
    args, kwargs = inputs(rng, bias=bias)
    check_backends(ops.attention, args, kwargs, backend=kernel_backend, dtype=dtype, **tolerance(dtype))


def test_backends_match_numpy_with_large_logits(kernel_backend, dtype, rng):
    (q, k, v), kwargs = inputs(rng, bias="per_query_key")
    check_backends(ops.attention, (8.0 * q, 8.0 * k, v), dict(kwargs, scale=1.0), backend=kernel_backend,
                   dtype=dtype, rtol=tolerance(dtype)["rtol"] * 10, atol=tolerance(dtype)["atol"] * 10)


@pytest.mark.cuda
def test_cuda_device_arrays_in_device_arrays_out(rng):
    from numba import cuda
    (q, k, v), kwargs = inputs(rng, bias="per_head")
    on_device = [cuda.to_device(a) for a in (q, k, v, kwargs["bias"])]
    out, cache = ops.attention.forward(*on_device[:3], bias=on_device[3], backend="cuda")
    assert not isinstance(out, np.ndarray)
    expected, ref_cache = ops.attention.forward(q, k, v, **kwargs, backend="numpy")
    assert_close(out, expected)
    dout = rng.standard_normal(expected.shape)
    grads = ops.attention.backward(cuda.to_device(dout), cache)
    for grad, ref in zip(grads, ops.attention.backward(dout, ref_cache)):
        assert not isinstance(grad, np.ndarray)
        assert_close(to_numpy(grad), ref, rtol=1e-9, atol=1e-11)


# 3. properties

def _run(backend, *args, **kwargs):
    return to_numpy(ops.attention.forward(*args, **kwargs, backend=backend)[0])


@pytest.mark.parametrize("backend", PROPERTY_BACKENDS)
@given(problem=attention_problems(["none"]))
def test_equal_logits_average_the_values(backend, problem):
    shape, _, seed = problem
    (q, k, v), _ = inputs(np.random.default_rng(seed), **shape)
    mean_v = np.broadcast_to(v.mean(axis=2, keepdims=True), q.shape[:3] + v.shape[3:])
    assert_close(_run(backend, np.zeros_like(q), k, v), mean_v, rtol=1e-9, atol=1e-12)
    assert_close(_run(backend, q, k, v, scale=0.0), mean_v, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", PROPERTY_BACKENDS)
@given(problem=attention_problems(["none", "full", "per_head"]))
def test_single_key_returns_its_value(backend, problem):
    shape, bias, seed = problem
    args, kwargs = inputs(np.random.default_rng(seed), bias=bias, **dict(shape, n_keys=1))
    v = args[2]
    assert_close(_run(backend, *args, **kwargs), np.broadcast_to(v, v.shape[:2] + (shape["n_queries"], v.shape[3])),
                 rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", PROPERTY_BACKENDS)
@given(problem=attention_problems(["none", "full", "per_query_key", "mask"]))
def test_permuting_keys_with_values_leaves_output_unchanged(backend, problem):
    shape, bias_kind, seed = problem
    rng = np.random.default_rng(seed)
    (q, k, v), kwargs = inputs(rng, bias=bias_kind, **shape)
    bias = kwargs["bias"]
    order = rng.permutation(shape["n_keys"])
    permuted_bias = None if bias is None else bias[..., order]
    expected = _run(backend, q, k, v, bias=bias)
    assert_close(_run(backend, q, k[:, :, order], v[:, :, order], bias=permuted_bias), expected,
                 rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_stable_at_large_logit_scale(backend, rng):
    (q, k, v), _ = inputs(rng)
    out = _run(backend, q, k, v, scale=1e4)
    winner = np.argmax(q @ np.swapaxes(k, -1, -2), axis=-1)
    assert_close(out, np.take_along_axis(v, winner[..., None], axis=2), rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # -inf - -inf in the simulator
@pytest.mark.parametrize("backend", PROPERTY_BACKENDS)
def test_fully_masked_row_is_nan_and_others_are_not(backend, rng):
    (q, k, v), _ = inputs(rng)
    bias = np.zeros((NQ, NK))
    bias[1] = -np.inf
    with np.errstate(invalid="ignore"):
        out = _run(backend, q, k, v, bias=bias)
    assert np.isnan(out[:, :, 1]).all()
    assert np.isfinite(np.delete(out, 1, axis=2)).all()


@pytest.mark.parametrize("bias", ["none", "full", "per_head", "mask"])
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_matches_torch_scaled_dot_product_attention(backend, bias, rng):
    import torch
    args, kwargs = inputs(rng, bias=bias)
    out, cache = ops.attention.forward(*args, **kwargs, scale=0.6, backend=backend)
    dout = rng.standard_normal(out.shape)
    grads = ops.attention.backward(dout, cache)

    tensors = [torch.tensor(a, requires_grad=True) for a in args]
    mask = None if kwargs["bias"] is None else torch.tensor(kwargs["bias"], requires_grad=bias != "mask")
    expected = torch.nn.functional.scaled_dot_product_attention(*tensors, attn_mask=mask, scale=0.6)
    expected.backward(torch.tensor(dout))
    assert_close(out, expected, rtol=1e-9, atol=1e-12)
    for name, grad, tensor in zip("qkv", grads, tensors):
        assert_close(grad, tensor.grad, rtol=1e-9, atol=1e-12, name=f"d{name}")
    if bias not in ("none", "mask"):
        assert_close(grads[3], mask.grad, rtol=1e-9, atol=1e-12, name="dbias")


# 4. bad inputs

def _bad(error, arg, *args, **kwargs):
    with pytest.raises(error, match=f"attention: '{arg}"):
        ops.attention.forward(*args, **kwargs)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend, rng):
    (q, k, v), _ = inputs(rng)
    run = dict(backend=backend)
    _bad(ValueError, "k", q, k[..., 0], v, **run)                              # rank
    _bad(ValueError, "v", q, k, v[None], **run)                                # rank
    _bad(ValueError, "k", q, k[:1], v[:1], **run)                              # batch mismatch
    _bad(ValueError, "k", q, k[:, :1], v[:, :1], **run)                        # head mismatch
    _bad(ValueError, "k", q, k[..., :2], v, **run)                             # d mismatch
    _bad(ValueError, "v", q, k, v[:, :, :2], **run)                            # Nk mismatch
    _bad(ValueError, "k", q, k[:, :, :0], v[:, :, :0], **run)                  # no keys
    _bad(ValueError, "bias", q, k, v, bias=np.zeros((NQ, NK + 1)), **run)      # not broadcastable
    _bad(ValueError, "bias", q, k, v, bias=np.zeros((B, H, NQ, NK, 1)), **run)  # too many axes
    _bad(ValueError, "bias", q, k, v, bias=np.zeros((3, H, NQ, NK)), **run)    # would enlarge the batch
    _bad(TypeError, "q, k, v, bias", q, k, v, bias=np.zeros(NK, np.float32), **run)
    _bad(TypeError, "scale", q, k, v, scale="0.5", **run)
