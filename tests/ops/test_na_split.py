"""The split neighbourhood-attention ops ``na2d_qk`` / ``na2d_av`` and ``na1d_qk`` / ``na1d_av``:
``av(softmax(qk(q, k, rpb, scale)), v)`` is ``na(q, k, v, rpb, scale)``, forward and backward; the
logits are ``na``'s before the softmax; a dense PyTorch version with autograd agrees."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.ops._neighborhood import axis_windows, windows_2d
from refvit.testing import assert_close
from refvit.testing.strategies import seeds
from tests.conftest import tolerance
from tests.ops.test_neighborhood_properties import axes

BACKENDS = ["numpy", "cpu"]
TOL = tolerance(np.float64)


def _arrays(seed, shape, kernel_sizes, heads, with_rpb):
    rng = np.random.default_rng(seed)
    q, k, v, dout = (rng.standard_normal(shape) for _ in range(4))
    rpb = rng.standard_normal((heads,) + tuple(2 * n - 1 for n in kernel_sizes)) if with_rpb else None
    return q, k, v, dout, rpb, float(rng.uniform(0.1, 1.5))


def _split(qk, av, q, k, v, dout, rpb, scale, window, backend):
    """Forward and backward of ``av(softmax(qk(q, k, scale)), v)``: ``(out, logits, (dq, dk, dv, drpb))``."""
    logits, qk_cache = qk.forward(q, k, **window, rpb=rpb, scale=scale, backend=backend)
    weights, softmax_cache = ops.softmax.forward(logits, backend=backend)
    out, av_cache = av.forward(weights, v, **window, backend=backend)
    dweights, dv = av.backward(dout, av_cache)
    dlogits, = ops.softmax.backward(dweights, softmax_cache)
    dq, dk, drpb = qk.backward(dlogits, qk_cache)
    return out, logits, (dq, dk, dv, drpb)


def _check_against_fused(fused, qk, av, q, k, v, dout, rpb, scale, window, backend):
    want, cache = fused.forward(q, k, v, **window, rpb=rpb, scale=scale, backend=backend)
    want_grads = fused.backward(dout, cache)
    out, logits, grads = _split(qk, av, q, k, v, dout, rpb, scale, window, backend)
    assert_close(out, want, **TOL, name="out")
    for name, got, expected in zip(("dq", "dk", "dv", "drpb"), grads, want_grads):
        if expected is None:
            assert got is None, name
        else:
            assert_close(got, expected, **TOL, name=name)
    # the logits are na's before the softmax: the same weights, -inf exactly where na's weight is 0
    attn = np.asarray(cache.attn)
    assert_close(ops.softmax.forward(logits, backend="numpy")[0], attn, **TOL, name="softmax(logits)")
    assert (np.isneginf(logits) == (attn == 0)).all()
    # scale= on the logits op is the same as scaling q first with scale=1.0 (NATTEN's unscaled qk)
    unscaled, _ = qk.forward(q * scale, k, **window, rpb=rpb, scale=1.0, backend=backend)
    assert_close(unscaled, logits, **TOL, name="logits of q * scale with scale=1.0")


@pytest.mark.parametrize("backend", BACKENDS)
@given(rows=axes(), cols=axes(), batch=st.integers(1, 2), heads=st.integers(1, 2), head_dim=st.integers(1, 3),
       with_rpb=st.booleans(), seed=seeds())
def test_na2d_av_of_softmax_of_na2d_qk_is_na2d(backend, rows, cols, batch, heads, head_dim, with_rpb, seed):
    shape = (batch, heads, rows[0], cols[0], head_dim)
    window = dict(kernel_size=(rows[1], cols[1]), dilation=(rows[2], cols[2]), stride=(rows[3], cols[3]),
                  is_causal=(rows[4], cols[4]))
    q, k, v, dout, rpb, scale = _arrays(seed, shape, window["kernel_size"], heads, with_rpb)
    _check_against_fused(ops.na2d, ops.na2d_qk, ops.na2d_av, q, k, v, dout, rpb, scale, window, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@given(axis=axes(max_kernel=7, extra=6), batch=st.integers(1, 2), heads=st.integers(1, 2),
       head_dim=st.integers(1, 3), with_rpb=st.booleans(), seed=seeds())
def test_na1d_av_of_softmax_of_na1d_qk_is_na1d(backend, axis, batch, heads, head_dim, with_rpb, seed):
    length, kernel_size, dilation, stride, is_causal = axis
    window = dict(kernel_size=kernel_size, dilation=dilation, stride=stride, is_causal=is_causal)
    q, k, v, dout, rpb, scale = _arrays(seed, (batch, heads, length, head_dim), (kernel_size,), heads, with_rpb)
    _check_against_fused(ops.na1d, ops.na1d_qk, ops.na1d_av, q, k, v, dout, rpb, scale, window, backend)


def test_qk_scales_by_head_dim_by_default(rng):
    """``scale=None`` is ``d ** -0.5``, as in na2d; ``scale=1.0`` is NATTEN's unscaled ``qk``."""
    q, k = rng.standard_normal((2, 1, 2, 7, 5, 4))
    default, _ = ops.na2d_qk.forward(q, k, 3, backend="numpy")
    one, cache = ops.na2d_qk.forward(q, k, 3, scale=1.0, backend="numpy")
    hood = windows_2d(7, 5, cache.options)
    dots = np.einsum("bhxyc,bhxyuwc->bhxyuw", q, k[:, :, hood.key_row, hood.key_col]).reshape(one.shape)
    assert_close(one, dots, **TOL)
    assert_close(default, dots * 4 ** -0.5, **TOL)


def test_av_ignores_the_weights_of_empty_causal_slots(rng):
    """A causal window near the start holds fewer keys: the weights of its empty slots are not read
    and get gradient 0, whatever they hold."""
    v = rng.standard_normal((1, 1, 6, 3))
    attn = rng.standard_normal((1, 1, 6, 3))
    valid = axis_windows(6, 3, is_causal=True).valid
    noisy = np.where(valid, attn, 1e6)
    for backend in BACKENDS:
        out, cache = ops.na1d_av.forward(noisy, v, 3, is_causal=True, backend=backend)
        assert_close(out, ops.na1d_av.forward(attn, v, 3, is_causal=True, backend="numpy")[0], **TOL)
        dattn, _ = ops.na1d_av.backward(np.ones_like(out), cache)
        assert (dattn[..., ~valid] == 0).all()


def test_av_refuses_weights_of_the_wrong_window_size(rng):
    v = rng.standard_normal((1, 1, 7, 5, 2))
    with pytest.raises(ValueError, match=r"^na2d_av: 'attn' must be of shape \(1, 1, 7, 5, 9\)"):
        ops.na2d_av.forward(rng.standard_normal((1, 1, 7, 5, 8)), v, 3)
    with pytest.raises(ValueError, match=r"^na1d_av: 'attn' must be a 4-D array"):
        ops.na1d_av.forward(rng.standard_normal((1, 1, 7, 5, 9)), v, 3)


# --- a dense PyTorch version, differentiated by autograd ------------------------------------------

def _torch_split_2d(torch, q, k, v, rpb, window):
    """``na2d_qk`` then ``na2d_av`` written densely in PyTorch: every query's dot product with every key,
    then the window's slots picked out by index (-inf on empty slots), and the weights' sum over them."""
    height, width = q.shape[2:4]
    options = ops.na2d_qk.forward(q.detach().numpy(), k.detach().numpy(), **window)[1].options
    hood = windows_2d(height, width, options)
    key_index = torch.from_numpy((hood.key_row * width + hood.key_col).reshape(height * width, -1))
    valid = torch.from_numpy(np.ascontiguousarray(hood.valid).reshape(height * width, -1))
    flat_q, flat_k, flat_v = (t.reshape(t.shape[0], t.shape[1], height * width, -1) for t in (q, k, v))
    dense = flat_q @ flat_k.transpose(-1, -2)                                  # (B, heads, HW, HW)
    logits = torch.gather(dense, 3, key_index.expand(dense.shape[:2] + key_index.shape))
    bias_index = (hood.bias_row * rpb.shape[2] + hood.bias_col).reshape(height * width, -1)
    logits = logits + rpb.reshape(rpb.shape[0], -1)[:, torch.from_numpy(bias_index)]
    logits = logits.masked_fill(~valid, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    out = (weights.unsqueeze(-1) * flat_v[:, :, key_index]).sum(dim=-2)       # (B, heads, HW, d)
    return logits.reshape(q.shape[:4] + (-1,)), out.reshape(v.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("window", [dict(kernel_size=3), dict(kernel_size=(3, 5), dilation=(2, 1)),
                                    dict(kernel_size=3, stride=(1, 2), is_causal=(True, False))])
def test_split_pair_matches_dense_pytorch_autograd(backend, window, rng):
    import torch
    q, k, v = (rng.standard_normal((2, 2, 7, 6, 3)) for _ in range(3))
    kernel = np.broadcast_to(window["kernel_size"], (2,))
    rpb = rng.standard_normal((2, 2 * kernel[0] - 1, 2 * kernel[1] - 1))
    dout = rng.standard_normal(q.shape)
    leaves = [torch.tensor(a, requires_grad=True) for a in (q, k, v, rpb)]
    want_logits, want_out = _torch_split_2d(torch, *leaves, window)
    want_out.backward(torch.from_numpy(dout))

    out, logits, grads = _split(ops.na2d_qk, ops.na2d_av, q, k, v, dout, rpb, 1.0, window, backend)
    finite = np.isfinite(logits)
    assert (finite == np.isfinite(want_logits.detach().numpy())).all()
    assert_close(logits[finite], want_logits.detach().numpy()[finite], **TOL, name="logits")
    assert_close(out, want_out.detach().numpy(), **TOL, name="out")
    for name, got, leaf in zip(("dq", "dk", "dv", "drpb"), grads, leaves):
        assert_close(got, leaf.grad.numpy(), **TOL, name=name)
