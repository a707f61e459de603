"""na2d: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import layouts, random_array, seeds, with_layout
from tests.conftest import tolerance

# (map size, kernel_size, options): NA, DiNA (sizes not divisible by the dilation), strides,
# causal windows, per-axis mixtures.
CONFIGS = [
    ((5, 6), 3, {}),
    ((7, 5), (3, 1), dict(dilation=(2, 3))),
    ((6, 7), (3, 5), dict(stride=(2, 3))),
    ((5, 5), 3, dict(is_causal=True)),
    ((7, 6), 3, dict(dilation=(2, 1), stride=(1, 2), is_causal=(True, False))),
    ((7, 7), 3, dict(dilation=2, stride=3, is_causal=(False, True))),
]
IDS = ["plain", "dilated", "strided", "causal", "mixed", "dilated-strided-causal"]


def inputs(rng, batch, heads, size, head_dim, kernel_size, with_rpb=True, scale=1.0):
    kernel_h, kernel_w = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
    q, k, v = (scale * rng.standard_normal((batch, heads) + tuple(size) + (head_dim,)) for _ in range(3))
    rpb = rng.standard_normal((heads, 2 * kernel_h - 1, 2 * kernel_w - 1)) if with_rpb else None
    return q, k, v, rpb


@pytest.mark.parametrize("size, kernel_size, options", CONFIGS, ids=IDS)
def test_gradcheck(rng, size, kernel_size, options):
    q, k, v, rpb = inputs(rng, 1, 2, size, 2, kernel_size)
    errors = gradcheck(ops.na2d, (q, k, v, kernel_size), dict(rpb=rpb, **options))
    assert set(errors) == {"q", "k", "v", "rpb"}


def test_gradcheck_without_bias(rng):
    q, k, v, _ = inputs(rng, 2, 1, (4, 5), 3, 3, with_rpb=False)
    gradcheck(ops.na2d, (q, k, v, 3), dict(scale=1.3))
    _, cache = ops.na2d.forward(q, k, v, 3, backend="numpy")
    assert ops.na2d.backward(np.ones_like(q), cache)[3] is None


@st.composite
def axis_configs(draw):
    kernel_size = draw(st.sampled_from([1, 3]))
    dilation = draw(st.integers(1, 2))
    length = draw(st.integers(kernel_size * dilation, kernel_size * dilation + 3))
    return length, kernel_size, dilation, draw(st.integers(1, kernel_size)), draw(st.booleans())


@given(rows=axis_configs(), cols=axis_configs(), with_rpb=st.booleans(), seed=seeds())
def test_vjp(rows, cols, with_rpb, seed):
    size, kernel_size, dilation, stride, is_causal = zip(rows, cols)
    q, k, v, rpb = inputs(np.random.default_rng(seed), 1, 2, size, 3, kernel_size, with_rpb)
    check_vjp(ops.na2d, (q, k, v, kernel_size),
              dict(dilation=dilation, stride=stride, is_causal=is_causal, rpb=rpb), seed=seed)


@pytest.mark.parametrize("size, kernel_size, options", CONFIGS, ids=IDS)
def test_backends_match_numpy(kernel_backend, dtype, rng, size, kernel_size, options):
    q, k, v, rpb = inputs(rng, 1, 2, size, 3, kernel_size, scale=2.0)
    check_backends(ops.na2d, (q, k, v, kernel_size), dict(rpb=rpb, **options), backend=kernel_backend,
                   dtype=dtype, **tolerance(dtype))


def test_backends_many_queries_share_keys(kernel_backend, rng):
    # Stride 3 with kernel 3 on 9x9: whole blocks of queries share one window, and the border
    # keys are read by up to 6 queries per axis: the gather (cpu) and per-key (cuda) backward
    # passes must add every contribution exactly once.
    q, k, v, rpb = inputs(rng, 1, 1, (9, 9), 2, 3)
    check_backends(ops.na2d, (q, k, v, 3), dict(stride=3, rpb=rpb), backend=kernel_backend,
                   **tolerance(np.float64))
    check_backends(ops.na2d, (q, k, v, 5), dict(is_causal=True), backend=kernel_backend, **tolerance(np.float64))


def test_backends_without_bias(kernel_backend, rng):
    q, k, v, _ = inputs(rng, 2, 1, (4, 6), 4, (3, 5), with_rpb=False)
    check_backends(ops.na2d, (q, k, v, (3, 5)), {}, backend=kernel_backend, **tolerance(np.float64))


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    q, k, v, rpb = inputs(rng, 1, 1, (4, 4), 2, 3)
    expected, reference_cache = ops.na2d.forward(q, k, v, 3, rpb=rpb, backend="numpy")
    device = [cuda.to_device(a) for a in (q, k, v, rpb)]
    out, cache = ops.na2d.forward(*device[:3], 3, rpb=device[3], backend="cuda")
    assert not isinstance(out, np.ndarray)
    assert_close(out.copy_to_host(), expected)
    dout = rng.standard_normal(q.shape)
    grads = ops.na2d.backward(cuda.to_device(dout), cache)
    for grad, reference in zip(grads, ops.na2d.backward(dout, reference_cache)):
        assert not isinstance(grad, np.ndarray)
        assert_close(grad.copy_to_host(), reference, **tolerance(np.float64))


@given(seed=seeds(), layout=layouts(), causal=st.booleans())
def test_cpu_accepts_any_layout(seed, layout, causal):
    q, k, v = (random_array((1, 2, 5, 4, 3), seed + i, layout=layout) for i in range(3))
    rpb = with_layout(np.random.default_rng(seed).standard_normal((2, 5, 1)), layout)
    options = dict(dilation=(1, 2), is_causal=causal)
    expected, _ = ops.na2d.forward(*(np.ascontiguousarray(a) for a in (q, k, v)), (3, 1),
                                   rpb=np.ascontiguousarray(rpb), backend="numpy", **options)
    assert_close(ops.na2d.forward(q, k, v, (3, 1), rpb=rpb, backend="cpu", **options)[0], expected)


def test_border_window_example():
    # n = 7, k = 3: the corner query (0, 0) attends to rows 0..2 x columns 0..2, the query (6, 3)
    # to rows 4..6 x columns 2..4. With scale 0 and no bias, the output is the window mean.
    rng = np.random.default_rng(0)
    q, k, v, _ = inputs(rng, 1, 1, (7, 7), 2, 3, with_rpb=False)
    out, _ = ops.na2d.forward(q, k, v, 3, scale=0.0, backend="numpy")
    assert_close(out[0, 0, 0, 0], v[0, 0, 0:3, 0:3].mean(axis=(0, 1)))
    assert_close(out[0, 0, 6, 3], v[0, 0, 4:7, 2:5].mean(axis=(0, 1)))
    dilated, _ = ops.na2d.forward(q, k, v, 3, dilation=2, scale=0.0, backend="numpy")
    assert_close(dilated[0, 0, 0, 5], v[0, 0, 0:6:2, 1:6:2].mean(axis=(0, 1)))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    x = np.zeros((1, 2, 7, 5, 3))
    with pytest.raises(ValueError, match="na2d: 'kernel_size' must be an odd integer >= 1; got 4"):
        ops.na2d.forward(x, x, x, (3, 4), backend=backend)
    with pytest.raises(ValueError, match="na2d: 'kernel_size' must be an odd integer >= 1; got 0"):
        ops.na2d.forward(x, x, x, 0, backend=backend)
    with pytest.raises(ValueError, match=r"na2d: 'kernel_size' .*axis 3 \(width 5\).* 3 \* dilation 2 = 6 > 5"):
        ops.na2d.forward(x, x, x, 3, dilation=2, backend=backend)
    with pytest.raises(ValueError, match=r"na2d: 'kernel_size' .*axis 2 \(height 7\).* 9 \* dilation 1 = 9 > 7"):
        ops.na2d.forward(x, x, x, (9, 3), backend=backend)
    with pytest.raises(ValueError, match="na2d: 'dilation'"):
        ops.na2d.forward(x, x, x, 3, dilation=(1, 0), backend=backend)
    with pytest.raises(ValueError, match="na2d: 'stride' must be <= kernel_size"):
        ops.na2d.forward(x, x, x, (3, 1), stride=(1, 2), backend=backend)
    with pytest.raises(ValueError, match="na2d: 'stride'"):
        ops.na2d.forward(x, x, x, 3, stride=-1, backend=backend)
    with pytest.raises(TypeError, match="na2d: 'is_causal'"):
        ops.na2d.forward(x, x, x, 3, is_causal=(True,), backend=backend)
    with pytest.raises(ValueError, match="na2d: 'kernel_size'"):
        ops.na2d.forward(x, x, x, (3, 3, 3), backend=backend)
    with pytest.raises(ValueError, match="na2d: 'k' must be a 5-D array"):
        ops.na2d.forward(x, x[0], x, 3, backend=backend)
    with pytest.raises(ValueError, match="na2d: 'v' must be of shape"):
        ops.na2d.forward(x, x, x[:, :, :6], 3, backend=backend)
    with pytest.raises(ValueError, match=r"na2d: 'rpb' must be of shape \(2, 5, 5\)"):
        ops.na2d.forward(x, x, x, 3, rpb=np.zeros((2, 5)), backend=backend)
    with pytest.raises(ValueError, match=r"na2d: 'rpb' must be of shape \(2, 5, 1\)"):
        ops.na2d.forward(x, x, x, (3, 1), rpb=np.zeros((2, 5, 5)), backend=backend)
