"""na1d: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import layouts, random_array, seeds, with_layout
from tests.conftest import tolerance

# (length, kernel_size, options): plain NA, DiNA with n not divisible by d, strides, causal, combinations.
CONFIGS = [
    (7, 3, {}),
    (9, 3, dict(dilation=2)),
    (8, 5, dict(stride=2)),
    (7, 3, dict(is_causal=True)),
    (11, 3, dict(dilation=3, stride=3, is_causal=True)),
    (10, 3, dict(dilation=2, stride=3)),
]
IDS = ["plain", "dilated", "strided", "causal", "causal-dilated-strided", "dilated-strided"]
OTHER_CONFIGS = [c for c, name in zip(CONFIGS, IDS) if name != "dilated"]
OTHER_IDS = [name for name in IDS if name != "dilated"]


def inputs(rng, batch, heads, length, head_dim, kernel_size, with_rpb=True, scale=1.0):
    q, k, v = (scale * rng.standard_normal((batch, heads, length, head_dim)) for _ in range(3))
    rpb = rng.standard_normal((heads, 2 * kernel_size - 1)) if with_rpb else None
    return q, k, v, rpb


# "dilated" is the op's example, checked in test_contract.py
@pytest.mark.parametrize("length, kernel_size, options", OTHER_CONFIGS, ids=OTHER_IDS)
def test_gradcheck(rng, length, kernel_size, options):
    q, k, v, rpb = inputs(rng, 2, 2, length, 3, kernel_size)
    errors = gradcheck(ops.na1d, (q, k, v, kernel_size), dict(rpb=rpb, **options))
    assert set(errors) == {"q", "k", "v", "rpb"}


def test_gradcheck_without_bias_and_with_explicit_scale(rng):
    q, k, v, _ = inputs(rng, 1, 2, 6, 4, 3, with_rpb=False)
    gradcheck(ops.na1d, (q, k, v, 3), dict(scale=0.7, dilation=2))
    _, cache = ops.na1d.forward(q, k, v, 3, backend="numpy")
    assert ops.na1d.backward(np.ones_like(q), cache)[3] is None


@st.composite
def configs_1d(draw):
    """A valid 1-D configuration: length, kernel, dilation, stride, causal flag."""
    kernel_size = draw(st.sampled_from([1, 3, 5]))
    dilation = draw(st.integers(1, 3))
    length = draw(st.integers(kernel_size * dilation, kernel_size * dilation + 4))
    stride = draw(st.integers(1, kernel_size))
    return length, kernel_size, dilation, stride, draw(st.booleans())


@given(config=configs_1d(), head_dim=st.integers(1, 4), with_rpb=st.booleans(), seed=seeds())
def test_vjp(config, head_dim, with_rpb, seed):
    length, kernel_size, dilation, stride, is_causal = config
    q, k, v, rpb = inputs(np.random.default_rng(seed), 1, 2, length, head_dim, kernel_size, with_rpb)
    check_vjp(ops.na1d, (q, k, v, kernel_size),
              dict(dilation=dilation, stride=stride, is_causal=is_causal, rpb=rpb), seed=seed)


@pytest.mark.parametrize("length, kernel_size, options", OTHER_CONFIGS, ids=OTHER_IDS)
def test_backends_match_numpy(kernel_backend, dtype, rng, length, kernel_size, options):
    q, k, v, rpb = inputs(rng, 2, 2, length, 4, kernel_size, scale=2.0)
    check_backends(ops.na1d, (q, k, v, kernel_size), dict(rpb=rpb, **options), backend=kernel_backend,
                   dtype=dtype, **tolerance(dtype))


def test_backends_without_bias(kernel_backend, rng):
    q, k, v, _ = inputs(rng, 1, 3, 12, 5, 5, with_rpb=False)
    check_backends(ops.na1d, (q, k, v, 5), dict(dilation=2), backend=kernel_backend, **tolerance(np.float64))


@given(config=configs_1d(), seed=seeds(), layout=layouts())
def test_cpu_accepts_any_layout(config, seed, layout):
    length, kernel_size, dilation, stride, is_causal = config
    q, k, v = (random_array((2, 2, length, 3), seed + i, layout=layout) for i in range(3))
    rpb = with_layout(np.random.default_rng(seed).standard_normal((2, 2 * kernel_size - 1)), layout)
    options = dict(dilation=dilation, stride=stride, is_causal=is_causal, rpb=rpb)
    expected, _ = ops.na1d.forward(*(np.ascontiguousarray(a) for a in (q, k, v)), kernel_size, backend="numpy",
                                   **{**options, "rpb": np.ascontiguousarray(rpb)})
    assert_close(ops.na1d.forward(q, k, v, kernel_size, backend="cpu", **options)[0], expected)


def test_known_values():
    # One head, head_dim 1, n = 3, k = 3: every query sees all keys, logits q_i k_j + rpb[j - i + 2].
    q = np.array([1.0, 0.0, -1.0]).reshape(1, 1, 3, 1)
    k = np.array([0.5, 1.0, 2.0]).reshape(1, 1, 3, 1)
    v = np.array([1.0, 2.0, 4.0]).reshape(1, 1, 3, 1)
    rpb = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    out, _ = ops.na1d.forward(q, k, v, 3, rpb=rpb, scale=1.0, backend="numpy")
    expected = []
    for i in range(3):
        logits = np.array([q[0, 0, i, 0] * k[0, 0, j, 0] + rpb[0, j - i + 2] for j in range(3)])
        weights = np.exp(logits) / np.exp(logits).sum()
        expected.append(weights @ v[0, 0, :, 0])
    assert_close(out[0, 0, :, 0], np.array(expected))


def test_scale_default_and_zero(rng):
    q, k, v, _ = inputs(rng, 1, 1, 7, 4, 3, with_rpb=False)
    default, _ = ops.na1d.forward(q, k, v, 3, backend="numpy")
    explicit, _ = ops.na1d.forward(q, k, v, 3, scale=0.5, backend="numpy")
    assert_close(default, explicit)
    zero, _ = ops.na1d.forward(q, k, v, 3, scale=0.0, backend="numpy")
    keys = [[0, 1, 2]] + [[i - 1, i, i + 1] for i in range(1, 6)] + [[4, 5, 6]]
    assert_close(zero[0, 0], np.stack([v[0, 0, idx].mean(axis=0) for idx in keys]))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_nonfinite_values_propagate(backend, rng):
    q, k, v, _ = inputs(rng, 1, 1, 7, 2, 3, with_rpb=False)
    v[0, 0, 3, 0] = np.nan
    out, _ = ops.na1d.forward(q, k, v, 3, backend=backend)
    assert np.isnan(out[0, 0, 2:5, 0]).all() and np.isfinite(out[0, 0, [0, 1, 5, 6], 0]).all()
    assert np.isfinite(out[0, 0, :, 1]).all()


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x = np.zeros((1, 2, 7, 3))
    with pytest.raises(ValueError, match="na1d: 'kernel_size' must be an odd integer >= 1; got 4"):
        ops.na1d.forward(x, x, x, 4, backend=backend)
    with pytest.raises(ValueError, match="na1d: 'kernel_size'"):
        ops.na1d.forward(x, x, x, -1, backend=backend)
    with pytest.raises(ValueError, match=r"na1d: 'kernel_size' .*axis 2 \(length 7\).* 3 \* dilation 3 = 9 > 7"):
        ops.na1d.forward(x, x, x, 3, dilation=3, backend=backend)
    with pytest.raises(ValueError, match="na1d: 'kernel_size'"):
        ops.na1d.forward(x, x, x, 9, backend=backend)
    with pytest.raises(ValueError, match="na1d: 'dilation'"):
        ops.na1d.forward(x, x, x, 3, dilation=0, backend=backend)
    with pytest.raises(ValueError, match="na1d: 'stride'"):
        ops.na1d.forward(x, x, x, 3, stride=0, backend=backend)
    with pytest.raises(ValueError, match="na1d: 'stride' must be <= kernel_size"):
        ops.na1d.forward(x, x, x, 3, stride=4, backend=backend)
    with pytest.raises(TypeError, match="na1d: 'is_causal'"):
        ops.na1d.forward(x, x, x, 3, is_causal=1, backend=backend)
    with pytest.raises(ValueError, match="na1d: 'kernel_size'"):
        ops.na1d.forward(x, x, x, (3, 3), backend=backend)
    with pytest.raises(ValueError, match="na1d: 'k' must be of shape"):
        ops.na1d.forward(x, x[:, :1], x, 3, backend=backend)
    with pytest.raises(ValueError, match="na1d: 'v' must be of shape"):
        ops.na1d.forward(x, x, x[..., :2], 3, backend=backend)
    with pytest.raises(ValueError, match=r"na1d: 'rpb' must be of shape \(2, 5\)"):
        ops.na1d.forward(x, x, x, 3, rpb=np.zeros((2, 3)), backend=backend)
    with pytest.raises(TypeError, match="na1d: 'q, k, v, rpb'"):
        ops.na1d.forward(x, x, x, 3, rpb=np.zeros((2, 5), np.float32), backend=backend)
    with pytest.raises(TypeError, match="na1d: 'scale'"):
        ops.na1d.forward(x, x, x, 3, scale="big", backend=backend)
