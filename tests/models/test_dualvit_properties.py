"""DualViT properties: cross-attention to one token, the pixel path's linear cost, permutation
equivariance of the pixel tokens, gradient checks through whole blocks (as an op: refvit/bench/_dualvit_block.py)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.bench import _dualvit_block as block_op
from refvit.nn.dualvit import DualAttention, DualBlock, MergeBlock, multi_head_attention
from refvit.testing import assert_close, check_vjp, gradcheck
from refvit.testing.strategies import seeds


def _randomise(module, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    for _, parameter in module.named_parameters():
        parameter.data[...] = scale * rng.standard_normal(parameter.shape)
    return module


@given(batch=st.integers(1, 2), heads=st.integers(1, 3), head_dim=st.integers(1, 4), queries=st.integers(1, 7),
       seed=seeds())
def test_cross_attention_to_a_single_token_returns_its_value(batch, heads, head_dim, queries, seed):
    rng = np.random.default_rng(seed)
    channels = heads * head_dim
    q = rng.standard_normal((batch, queries, channels))
    k, v = rng.standard_normal((batch, 1, channels)), rng.standard_normal((batch, 1, channels))
    out = multi_head_attention(q, k, v, heads, scale=head_dim ** -0.5)
    assert_close(out.data, np.broadcast_to(v, out.shape), name="attention to one key")


@given(pixels=st.integers(1, 9), seed=seeds())
def test_pixels_reading_one_semantic_token_all_get_its_projected_value(pixels, seed):
    """Step 4 of DualAttention with m = 1: every pixel's update is proj(v) of the one semantic token."""
    attention = _randomise(DualAttention(6, 2, dtype=np.float64), seed)
    rng = np.random.default_rng(seed + 1)
    x, semantics = rng.standard_normal((2, pixels, 6)), rng.standard_normal((2, 1, 6))
    update = attention.pixel_to_semantic(x, semantics).data
    value = attention.kv(attention.proxy_ln(semantics)).data[..., 6:]
    expected = attention.proj(value).data
    assert_close(update, np.broadcast_to(expected, update.shape), name="pixel updates")


def _count_logits(monkeypatch):
    """Patch ops.attention.forward to add up B * heads * Nq * Nk, the attention logits computed."""
    counted = []
    original = ops.attention.forward

    def counting_forward(q, k, v, bias=None, scale=None, backend=None):
        counted.append(q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2])
        return original(q, k, v, bias=bias, scale=scale, backend=backend)

    monkeypatch.setattr(ops.attention, "forward", counting_forward)
    return counted


def test_pixel_path_cost_is_linear_in_the_number_of_pixels(monkeypatch):
    """DualBlock: B h (m^2 + 2 n m) logits, linear in n; MergeBlock: B h (n + m)^2, quadratic."""
    counted = _count_logits(monkeypatch)
    batch, heads, dim, m = 1, 2, 4, 3
    dual, merge = DualBlock(dim, heads, 1.0, dtype=np.float64), MergeBlock(dim, heads, 1.0, dtype=np.float64)
    dual_counts, merge_counts = [], []
    sides = (2, 4, 6, 8)
    for side in sides:
        n = side * side
        x, semantics = np.ones((batch, n, dim)), np.ones((batch, m, dim))
        counted.clear()
        dual(x, side, side, semantics)
        dual_counts.append(sum(counted))
        assert sum(counted) == batch * heads * (m * m + 2 * n * m)
        counted.clear()
        merge(np.ones((batch, n + m, dim)), side, side)
        merge_counts.append(sum(counted))
        assert sum(counted) == batch * heads * (n + m) ** 2
    pixels = np.array([side * side for side in sides], dtype=float)
    slopes = np.diff(dual_counts) / np.diff(pixels)
    assert np.allclose(slopes, 2 * batch * heads * m)  # a straight line in n
    assert np.all(np.diff(np.diff(merge_counts) / np.diff(pixels)) > 0)  # a growing slope: quadratic


@given(pixels=st.integers(2, 8), tokens=st.integers(1, 3), seed=seeds())
def test_permuting_pixels_permutes_outputs_and_keeps_semantics(pixels, tokens, seed):
    block = _randomise(DualBlock(4, 2, 2.0, ffn_dwconv=False, dtype=np.float64), seed)
    rng = np.random.default_rng(seed + 1)
    x, semantics = rng.standard_normal((2, pixels, 4)), rng.standard_normal((2, tokens, 4))
    order = rng.permutation(pixels)
    out, new_semantics = block(x, 1, pixels, semantics)
    out_permuted, semantics_permuted = block(x[:, order], 1, pixels, semantics)
    assert_close(out_permuted.data, out.data[:, order], rtol=1e-12, atol=1e-12, name="permuted pixel outputs")
    assert_close(semantics_permuted.data, new_semantics.data, rtol=1e-12, atol=1e-12, name="semantic tokens")


def test_the_depthwise_conv_makes_the_block_see_pixel_order(rng):
    block = _randomise(DualBlock(4, 2, 2.0, dtype=np.float64), 0)
    x, semantics = rng.standard_normal((1, 6, 4)), rng.standard_normal((1, 2, 4))
    order = np.array([5, 0, 1, 2, 3, 4])
    out = block(x, 2, 3, semantics)[0].data
    assert not np.allclose(block(x[:, order], 2, 3, semantics)[0].data, out[:, order])


def _block_case(kind, seed=0):
    rng = np.random.default_rng(seed)
    block = (DualBlock(4, 2, 2.0, dtype=np.float64) if kind == "dual" else MergeBlock(4, 2, 2.0, dtype=np.float64))
    parameters = tuple(0.5 * rng.standard_normal(p.shape) for p in block.parameters())
    x, semantics = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 2, 4))
    return (x, semantics, parameters), dict(block=block, height=2, width=3)


@pytest.mark.parametrize("kind", ["dual", "merge"])
def test_block_gradcheck(kind):
    """Every input and every parameter of a small block, central differences (float64)."""
    args, kwargs = _block_case(kind)
    errors = gradcheck(block_op, args, kwargs)
    assert {"x", "semantics"} <= set(errors) and len(errors) == 2 + len(args[2])


@given(pixels=st.integers(1, 6), tokens=st.integers(1, 3), heads=st.sampled_from([1, 2]), seed=seeds())
def test_dual_block_vjp(pixels, tokens, heads, seed):
    rng = np.random.default_rng(seed)
    block = _randomise(DualBlock(4, heads, 1.0, dtype=np.float64), seed)
    x, semantics = rng.standard_normal((1, pixels, 4)), rng.standard_normal((1, tokens, 4))
    check_vjp(block_op, (x, semantics), dict(block=block, height=1, width=pixels), eps=1e-5)


def test_block_op_contract(rng):
    args, kwargs = block_op.example(rng)
    (x_out, semantics_out), cache = block_op.forward(*args, **kwargs, backend="numpy")
    assert x_out.shape == args[0].shape and semantics_out.shape == args[1].shape and cache.backend == "numpy"
    dx, dsemantics, dparameters = block_op.backward((np.ones_like(x_out), np.ones_like(semantics_out)), cache)
    assert dx.shape == args[0].shape and dsemantics.shape == args[1].shape
    assert len(dparameters) == len(list(kwargs["block"].parameters()))
    (x_cpu, semantics_cpu), _ = block_op.forward(*args, **kwargs, backend="cpu")
    assert_close(x_cpu, x_out, name="cpu vs numpy pixels")
    assert_close(semantics_cpu, semantics_out, name="cpu vs numpy semantics")
    with pytest.raises(ValueError, match="dualvit_block: 'block', 'height', 'width'"):
        block_op.forward(*args, block=kwargs["block"], height=4, width=4)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["dual", "merge"])
def test_blocks_on_cuda_match_numpy(kind):
    args, kwargs = _block_case(kind, seed=1)
    (x_ref, sem_ref), cache_ref = block_op.forward(*args, **kwargs, backend="numpy")
    upstream = (np.ones_like(x_ref), np.full_like(sem_ref, 0.5))
    grads_ref = block_op.backward(upstream, cache_ref)
    (x_gpu, sem_gpu), cache_gpu = block_op.forward(*args, **kwargs, backend="cuda")
    grads_gpu = block_op.backward(upstream, cache_gpu)
    assert_close(x_gpu, x_ref, name="pixels")
    assert_close(sem_gpu, sem_ref, name="semantics")
    for name, got, expected in zip(("dx", "dsemantics"), grads_gpu[:2], grads_ref[:2]):
        assert_close(got, expected, name=name)
    for index, (got, expected) in enumerate(zip(grads_gpu[2], grads_ref[2])):
        assert_close(got, expected, name=f"dparameters[{index}]")


def test_bench_case_torch_equivalent_matches_the_block():
    from refvit.bench.cases_dualvit import CASES, _block_inputs, _torch_block

    assert CASES[0].op is block_op
    args, kwargs = _block_inputs(batch=2, side=3, dim=8, heads=2, mlp_ratio=2, tokens=3)(np.random.default_rng(0),
                                                                                          np.float64)
    (x_out, semantics_out), _ = block_op.forward(*args, **kwargs, backend="numpy")
    expected = _torch_block(args, kwargs)().detach().numpy()
    assert_close(np.concatenate([x_out, semantics_out], axis=1), expected, name="bench torch block")
