"""stripe_attention: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import correlate2d

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import dims, layouts, seeds, with_layout
from tests.conftest import tolerance

op = ops.stripe_attention

# (B, heads, H, W, d, stripe_size): vertical (H, sw), horizontal (sh, W), full (H, W), generic.
GRADCHECK_CASES = {
    "vertical": (1, 2, 4, 4, 2, (4, 2)),
    "horizontal": (2, 1, 4, 4, 2, (2, 4)),
    "full": (1, 2, 3, 4, 2, (3, 4)),
    "generic": (1, 2, 4, 6, 2, (2, 3)),
}
LEPE_MODES = ["none", "weight", "weight_and_bias"]


def make_inputs(rng, batch, heads, height, width, head_dim, lepe="weight_and_bias"):
    shape = (batch, heads, height, width, head_dim)
    q, k, v = (rng.standard_normal(shape) for _ in range(3))
    kwargs = {}
    if lepe != "none":
        kwargs["lepe_weight"] = 0.5 * rng.standard_normal((heads * head_dim, 1, 3, 3))
    if lepe == "weight_and_bias":
        kwargs["lepe_bias"] = 0.5 * rng.standard_normal(heads * head_dim)
    return q, k, v, kwargs


@st.composite
def stripe_problems(draw):
    """(shape, stripe_size, lepe mode): H and W are whole multiples of the drawn stripe."""
    stripe_h, stripe_w = draw(dims(1, 3)), draw(dims(1, 3))
    shape = (draw(dims(1, 2)), draw(dims(1, 2)), stripe_h * draw(dims(1, 3)), stripe_w * draw(dims(1, 3)),
             draw(dims(1, 3)))
    return shape, (stripe_h, stripe_w), draw(st.sampled_from(LEPE_MODES))


def full_attention_plus_conv(q, k, v, lepe_weight, lepe_bias, scale):
    """Plain attention over all H*W tokens plus a zero-padded depthwise 3x3 conv of v over the whole map."""
    batch, heads, height, width, head_dim = q.shape
    tokens = [x.reshape(batch, heads, height * width, head_dim) for x in (q, k, v)]
    logits = scale * np.einsum("bhqd,bhkd->bhqk", tokens[0], tokens[1])
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    out = (weights @ tokens[2]).reshape(q.shape)
    for b in range(batch):
        for head in range(heads):
            for j in range(head_dim):
                channel = head * head_dim + j
                conv = correlate2d(v[b, head, :, :, j], lepe_weight[channel, 0], mode="same")
                out[b, head, :, :, j] += conv + lepe_bias[channel]
    return out


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("case", GRADCHECK_CASES)
def test_gradcheck(rng, case):
    batch, heads, height, width, head_dim, stripe_size = GRADCHECK_CASES[case]
    q, k, v, kwargs = make_inputs(rng, batch, heads, height, width, head_dim)
    errors = gradcheck(op, (q, k, v, stripe_size), kwargs)
    assert set(errors) == set(op.DIFFERENTIABLE)


def test_gradcheck_weight_only_and_no_lepe(rng):
    q, k, v, kwargs = make_inputs(rng, 1, 2, 4, 4, 2, lepe="weight")
    gradcheck(op, (q, k, v, (2, 2)), dict(kwargs, scale=0.8))
    _, cache = op.forward(q, k, v, (2, 2), backend="numpy")
    grads = op.backward(np.ones_like(q), cache)
    assert grads[3] is None and grads[4] is None
    _, cache = op.forward(q, k, v, (2, 2), **kwargs, backend="numpy")
    assert op.backward(np.ones_like(q), cache)[4] is None


@given(problem=stripe_problems(), seed=seeds())
def test_vjp(problem, seed):
    shape, stripe_size, lepe = problem
    q, k, v, kwargs = make_inputs(np.random.default_rng(seed), *shape, lepe=lepe)
    check_vjp(op, (q, k, v, stripe_size), kwargs, seed=seed % 1000)


# ---------------------------------------------------------------- backends

# a vertical stripe with weight and bias is the op's example (test_contract.py)
BACKEND_CASES = {
    "generic_no_lepe": ((1, 2, 4, 6, 2), (2, 3), "none"),
    "horizontal_weight_only": ((1, 1, 4, 3, 4), (2, 3), "weight"),
}


@pytest.mark.parametrize("case", BACKEND_CASES)
def test_backends_match_numpy(kernel_backend, dtype, case, rng):
    shape, stripe_size, lepe = BACKEND_CASES[case]
    q, k, v, kwargs = make_inputs(rng, *shape, lepe=lepe)
    check_backends(op, (q, k, v, stripe_size), kwargs, backend=kernel_backend, dtype=dtype, **tolerance(dtype))


@given(problem=stripe_problems(), seed=seeds(), layout=layouts())
def test_cpu_matches_numpy_on_drawn_shapes_and_layouts(problem, seed, layout):
    shape, stripe_size, lepe = problem
    q, k, v, kwargs = make_inputs(np.random.default_rng(seed), *shape, lepe=lepe)
    q = with_layout(q, layout)
    check_backends(op, (q, k, v, stripe_size), kwargs, backend="cpu", **tolerance(np.float64))


@pytest.mark.cuda
def test_cuda_device_arrays_in_device_arrays_out(rng):
    from numba import cuda

    q, k, v, kwargs = make_inputs(rng, 1, 1, 2, 4, 2)
    device = {name: cuda.to_device(a) for name, a in dict(q=q, k=k, v=v, **kwargs).items()}
    out, cache = op.forward(stripe_size=(2, 2), backend="cuda", **device)
    assert hasattr(out, "copy_to_host")
    grads = op.backward(cuda.to_device(np.ones_like(q)), cache)
    assert all(hasattr(g, "copy_to_host") for g in grads)
    expected, _ = op.forward(q, k, v, (2, 2), **kwargs, backend="numpy")
    assert_close(out.copy_to_host(), expected, **tolerance(np.float64))
    host_out, _ = op.forward(q, k, v, (2, 2), **kwargs, backend="cuda")
    assert isinstance(host_out, np.ndarray)


# ---------------------------------------------------------------- properties

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(shape=st.tuples(dims(1, 2), dims(1, 2), dims(1, 5), dims(1, 5), dims(1, 3)), seed=seeds())
def test_full_map_is_attention_plus_depthwise_conv(backend, shape, seed):
    q, k, v, kwargs = make_inputs(np.random.default_rng(seed), *shape)
    height, width = shape[2], shape[3]
    out, _ = op.forward(q, k, v, (height, width), **kwargs, backend=backend)
    expected = full_attention_plus_conv(q, k, v, kwargs["lepe_weight"], kwargs["lepe_bias"], shape[4] ** -0.5)
    assert_close(out, expected, **tolerance(np.float64))


@given(side=dims(1, 5), seed=seeds())
def test_stripe_as_wide_as_the_map_is_full_attention(side, seed):
    """CSWin's horizontal branch ``(sw, W)`` with ``sw = H`` (and an int stripe on a square map) is global."""
    q, k, v, kwargs = make_inputs(np.random.default_rng(seed), 1, 2, side, side, 2)
    expected = full_attention_plus_conv(q, k, v, kwargs["lepe_weight"], kwargs["lepe_bias"], 2 ** -0.5)
    for stripe_size in [(side, side), side]:
        assert_close(op.forward(q, k, v, stripe_size, **kwargs, backend="numpy")[0], expected)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(problem=stripe_problems(), seed=seeds(), data=st.data())
def test_window_never_reads_outside_itself(backend, problem, seed, data):
    shape, (stripe_h, stripe_w), _ = problem
    rows, cols = shape[2] // stripe_h, shape[3] // stripe_w
    rng = np.random.default_rng(seed)
    q, k, v, kwargs = make_inputs(rng, *shape)
    out, _ = op.forward(q, k, v, (stripe_h, stripe_w), **kwargs, backend=backend)
    window = (data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1)))
    inside = np.zeros(shape[2:4], dtype=bool)
    inside[window[0] * stripe_h:(window[0] + 1) * stripe_h, window[1] * stripe_w:(window[1] + 1) * stripe_w] = True
    perturbed = [x.copy() for x in (q, k, v)]
    for x in perturbed:
        x[:, :, ~inside, :] += rng.standard_normal(x[:, :, ~inside, :].shape)
    changed, _ = op.forward(*perturbed, (stripe_h, stripe_w), **kwargs, backend=backend)
    np.testing.assert_array_equal(changed[:, :, inside, :], out[:, :, inside, :])
    if (~inside).any():
        assert not np.allclose(changed[:, :, ~inside, :], out[:, :, ~inside, :])


@given(problem=stripe_problems(), seed=seeds())
def test_each_window_is_an_independent_problem(problem, seed):
    shape, (stripe_h, stripe_w), lepe = problem
    q, k, v, kwargs = make_inputs(np.random.default_rng(seed), *shape, lepe=lepe)
    out, _ = op.forward(q, k, v, (stripe_h, stripe_w), **kwargs, backend="numpy")
    for top in range(0, shape[2], stripe_h):
        for left in range(0, shape[3], stripe_w):
            cut = (slice(None), slice(None), slice(top, top + stripe_h), slice(left, left + stripe_w))
            alone, _ = op.forward(q[cut], k[cut], v[cut], (stripe_h, stripe_w), **kwargs, backend="numpy")
            assert_close(out[cut], alone)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(problem=stripe_problems(), seed=seeds())
def test_zero_lepe_is_plain_windowed_attention(backend, problem, seed):
    shape, stripe_size, _ = problem
    q, k, v, _ = make_inputs(np.random.default_rng(seed), *shape, lepe="none")
    channels = shape[1] * shape[4]
    plain, _ = op.forward(q, k, v, stripe_size, backend=backend)
    zero, _ = op.forward(q, k, v, stripe_size, np.zeros((channels, 1, 3, 3)), np.zeros(channels), backend=backend)
    assert_close(zero, plain)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_scale_zero_averages_each_window(backend, rng):
    q, k, v, _ = make_inputs(rng, 1, 1, 4, 4, 2, lepe="none")
    out, _ = op.forward(q, k, v, (4, 2), scale=0.0, backend=backend)
    means = v.reshape(1, 1, 4, 2, 2, 2).mean(axis=(2, 4), keepdims=True)
    assert_close(out, np.broadcast_to(means, (1, 1, 4, 2, 2, 2)).reshape(q.shape))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_nonfinite_values_stay_in_their_window(backend, rng):
    q, k, v, _ = make_inputs(rng, 1, 1, 4, 4, 2, lepe="none")
    v[0, 0, 0, 0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        out, _ = op.forward(q, k, v, (2, 2), backend=backend)
    assert np.isnan(out[0, 0, :2, :2, 0]).all()
    assert np.isfinite(out[0, 0, 2:, :, :]).all() and np.isfinite(out[0, 0, :, 2:, :]).all()


# ---------------------------------------------------------------- the official forward, ported to torch

def official_branch_forward(torch, q, k, v, height, width, stripe_h, stripe_w, heads, weight, bias, scale):
    """CSWin ``LePEAttention.forward`` on ``(B, L, C)`` tokens (im2cswin, get_lepe, windows2img)."""
    batch, _, channels = q.shape
    head_dim = channels // heads

    def window_images(x):  # (B, L, C) -> (B * windows, C, sh, sw)
        x = x.transpose(-2, -1).reshape(batch, channels, height // stripe_h, stripe_h, width // stripe_w, stripe_w)
        return x.permute(0, 2, 4, 1, 3, 5).reshape(-1, channels, stripe_h, stripe_w)

    def heads_first(x):  # (B', C, sh, sw) -> (B', heads, sh*sw, d)
        return x.reshape(-1, heads, head_dim, stripe_h * stripe_w).permute(0, 1, 3, 2)

    q_win, k_win, v_img = heads_first(window_images(q)), heads_first(window_images(k)), window_images(v)
    lepe = heads_first(torch.nn.functional.conv2d(v_img, weight, bias, padding=1, groups=channels))
    attn = torch.softmax((q_win * scale) @ k_win.transpose(-2, -1), dim=-1)
    x = (attn @ heads_first(v_img) + lepe).transpose(1, 2).reshape(-1, stripe_h * stripe_w, channels)
    x = x.view(batch, height // stripe_h, width // stripe_w, stripe_h, stripe_w, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height * width, channels)


@pytest.mark.parametrize("stripe_size", [(6, 2), (2, 6), (6, 6), (3, 2)], ids=["vertical", "horizontal", "full", "generic"])
def test_matches_official_forward_in_torch(rng, stripe_size):
    import torch
    batch, heads, side, head_dim = 2, 2, 6, 3
    q, k, v, kwargs = make_inputs(rng, batch, heads, side, side, head_dim)
    out, _ = op.forward(q, k, v, stripe_size, **kwargs, backend="cpu")

    def as_tokens(x):  # (B, heads, H, W, d) -> (B, H*W, heads*d), channel head*d + j
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 3, 1, 4)).reshape(batch, side * side, -1))

    expected = official_branch_forward(torch, as_tokens(q), as_tokens(k), as_tokens(v), side, side, *stripe_size, heads,
                                       torch.from_numpy(kwargs["lepe_weight"]), torch.from_numpy(kwargs["lepe_bias"]),
                                       head_dim ** -0.5)
    assert_close(out, expected.numpy().reshape(batch, side, side, heads, head_dim).transpose(0, 3, 1, 2, 4))


# ---------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend, rng):
    q, k, v, kwargs = make_inputs(rng, 1, 2, 4, 6, 3)

    def call(*args, **options):
        return op.forward(*args, **{**dict(backend=backend), **options})

    with pytest.raises(ValueError, match=r"stripe_attention: 'stripe_size'.*\(4, 6\).*H % sh = 1, W % sw = 2"):
        call(q, k, v, (3, 4))
    with pytest.raises(ValueError, match="stripe_attention: 'stripe_size'"):
        call(q, k, v, 5)
    with pytest.raises(ValueError, match="stripe_attention: 'stripe_size'"):
        call(q, k, v, (2, 3, 1))
    with pytest.raises(ValueError, match="stripe_attention: 'stripe_size'"):
        call(q, k, v, (0, 3))
    with pytest.raises(TypeError, match="stripe_attention: 'stripe_size'"):
        call(q, k, v, (2.0, 3))
    with pytest.raises(ValueError, match="stripe_attention: 'k'"):
        call(q, k[:, :1], v, (2, 3))
    with pytest.raises(ValueError, match="stripe_attention: 'v'"):
        call(q, k, v[..., :2], (2, 3))
    with pytest.raises(ValueError, match="stripe_attention: 'q'"):
        call(q[:, :, :0], k[:, :, :0], v[:, :, :0], (2, 3))
    with pytest.raises(ValueError, match=r"stripe_attention: 'lepe_weight' must be of shape \(6, 1, 3, 3\)"):
        call(q, k, v, (2, 3), lepe_weight=np.zeros((6, 1, 5, 5)))
    with pytest.raises(ValueError, match="stripe_attention: 'lepe_weight'"):
        call(q, k, v, (2, 3), lepe_weight=np.zeros((6, 3, 3)))
    with pytest.raises(ValueError, match=r"stripe_attention: 'lepe_bias' must be of shape \(6\)"):
        call(q, k, v, (2, 3), lepe_weight=kwargs["lepe_weight"], lepe_bias=np.zeros(3))
    with pytest.raises(ValueError, match="stripe_attention: 'lepe_bias' must be None when 'lepe_weight' is None"):
        call(q, k, v, (2, 3), lepe_bias=kwargs["lepe_bias"])
    with pytest.raises(TypeError, match="stripe_attention: 'q, k, v, lepe_weight'"):
        call(q, k, v, (2, 3), lepe_weight=kwargs["lepe_weight"].astype(np.float32))
    with pytest.raises(TypeError, match="stripe_attention: 'v'"):
        call(q, k, v.astype(np.int64), (2, 3))
    with pytest.raises(TypeError, match="stripe_attention: 'scale'"):
        call(q, k, v, (2, 3), scale="0.5")
