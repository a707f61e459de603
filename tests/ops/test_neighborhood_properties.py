"""The window rule and the defining equivalences of neighbourhood attention (``na1d``, ``na2d``)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.ops._neighborhood import axis_windows, inverse_windows
from refvit.testing import assert_close
from refvit.testing.strategies import seeds

BACKENDS = ["numpy", "cpu"]
UNIT_ROUNDOFF = 2.0 ** -53
ULPS_PER_TERM = 4


def qkv(seed, shape):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape) for _ in range(3))


@st.composite
def axes(draw, max_kernel=5, max_dilation=3, extra=4):
    """(length, kernel, dilation, stride, causal) with kernel * dilation <= length."""
    kernel_size = draw(st.sampled_from([k for k in (1, 3, 5, 7) if k <= max_kernel]))
    dilation = draw(st.integers(1, max_dilation))
    length = draw(st.integers(kernel_size * dilation, kernel_size * dilation + extra))
    return length, kernel_size, dilation, draw(st.integers(1, kernel_size)), draw(st.booleans())


# --- the window rule -------------------------------------------------------------------------

def test_worked_border_example():
    windows = axis_windows(7, 3)
    assert windows.keys[0].tolist() == [0, 1, 2] and windows.bias_index[0].tolist() == [2, 3, 4]
    assert windows.keys[3].tolist() == [2, 3, 4] and windows.bias_index[3].tolist() == [1, 2, 3]
    assert windows.keys[6].tolist() == [4, 5, 6] and windows.bias_index[6].tolist() == [0, 1, 2]
    dilated = axis_windows(7, 3, dilation=2)  # groups 0,2,4,6 and 1,3,5
    assert dilated.keys[0].tolist() == [0, 2, 4] and dilated.keys[6].tolist() == [2, 4, 6]
    assert dilated.keys[5].tolist() == [1, 3, 5] and dilated.bias_index[5].tolist() == [0, 1, 2]
    causal = axis_windows(7, 3, is_causal=True)
    assert causal.valid[0].tolist() == [True, False, False] and causal.keys[0, 0] == 0
    assert causal.keys[4].tolist() == [2, 3, 4] and causal.bias_index[4].tolist() == [0, 1, 2]
    strided = axis_windows(7, 3, stride=3)  # blocks {0,1,2} lead by 1, {3,4,5} by 4, {6} by 6
    assert [strided.keys[i].tolist() for i in (0, 2, 3, 5, 6)] == [[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5], [4, 5, 6]]


@given(axis=axes(max_kernel=7, max_dilation=4, extra=9))
def test_window_rule_invariants(axis):
    length, kernel_size, dilation, stride, is_causal = axis
    windows = axis_windows(length, kernel_size, dilation, stride, is_causal)
    query = np.arange(length)[:, None]
    keys = np.where(windows.valid, windows.keys, query)
    assert ((keys >= 0) & (keys < length)).all()
    assert (keys % dilation == query % dilation).all(), "keys stay in the query's dilation group"
    assert (np.diff(keys, axis=1)[windows.valid[:, 1:]] == dilation).all(), "consecutive, dilation apart"
    assert (windows.bias_index == (keys - query) // dilation + kernel_size - 1).all()
    assert ((windows.bias_index >= 0) & (windows.bias_index <= 2 * kernel_size - 2)).all()
    assert windows.valid[:, 0].all()
    if is_causal:
        assert (keys <= query).all(), "causal windows never hold a later key"
        assert (keys.max(axis=1, where=windows.valid, initial=-1) == query[:, 0]).all(), "causal windows end at the query"
    else:
        assert windows.valid.all(), "non-causal windows always hold exactly kernel_size keys"
    position = np.arange(length) // dilation
    group = np.arange(length) % dilation
    for i in range(length):
        same_block = (group == group[i]) & (position // stride == position[i] // stride)
        if not is_causal:
            assert (windows.keys[same_block] == windows.keys[i]).all(), "a stride block shares one window"


@given(axis=axes(max_kernel=7, max_dilation=3, extra=8))
def test_inverse_windows_list_every_pair_once(axis):
    windows = axis_windows(*axis)
    inverse = inverse_windows(windows)
    pairs = {(int(windows.keys[i, t]), i, t) for i, t in zip(*np.nonzero(windows.valid))}
    listed = {(j, int(inverse.queries[j, a]), int(inverse.slots[j, a]))
              for j in range(axis[0]) for a in range(inverse.count[j])}
    assert listed == pairs and int(inverse.count.sum()) == len(pairs)


# --- equivalences ----------------------------------------------------------------------------

def rounding_tolerance(q, k, v, length, scale=None, bias=None):
    """``atol`` for two float64 computations of softmax attention over ``length`` keys, ``rtol`` 0.

    Each weight :math:`p_j` rounds in its logit (``d`` products and the bias: about ``d`` ulps of the
    largest logit), its ``exp`` (2 ulps) and the normaliser (``length`` ulps); the weighted sum of ``v`` adds
    ``length`` ulps of ``max|v|``. So either side is within about ``(length + d * max(1, max|logit|)) * max|v|``
    ulps, and ULPS_PER_TERM = 4 covers both sides with room: the ``numpy`` and ``cpu`` outputs against the
    written-out attention reached 0.06 of it over 6,800 draws of the two tests below (the fixed
    ``atol=1e-12`` failed on a 2e-12 difference). A key from a wrong window moves the output by about
    ``max|v|`` (0.98 against a tolerance of 5e-14 for one swapped key at ``length`` 7).
    """
    head_dim = q.shape[-1]
    scale = head_dim ** -0.5 if scale is None else scale
    largest_logit = scale * float(np.max(np.abs(q))) * float(np.max(np.abs(k))) * head_dim
    if bias is not None:
        largest_logit += float(np.max(np.abs(bias)))
    terms = length + head_dim * max(1.0, largest_logit)
    return dict(rtol=0.0, atol=ULPS_PER_TERM * UNIT_ROUNDOFF * terms * float(np.max(np.abs(v))))


def full_attention(q, k, v, bias, scale):
    """Dense softmax attention, written out: ``q, k, v (B, heads, N, d)``, ``bias (heads, N, N)``."""
    logits = scale * np.einsum("bhic,bhjc->bhij", q, k) + bias
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("bhij,bhjc->bhic", weights, v)


@pytest.mark.parametrize("backend", BACKENDS)
@given(length=st.sampled_from([1, 3, 5, 7]), seed=seeds())
def test_na1d_kernel_covering_the_map_is_full_attention(backend, length, seed):
    kernel_size = length
    q, k, v = qkv(seed, (2, 2, length, 3))
    rpb = np.random.default_rng(seed + 1).standard_normal((2, 2 * kernel_size - 1))
    offset = np.arange(length)[None, :] - np.arange(length)[:, None]    # j - i
    expected = full_attention(q, k, v, rpb[:, offset + kernel_size - 1], 3 ** -0.5)
    assert_close(ops.na1d.forward(q, k, v, kernel_size, rpb=rpb, backend=backend)[0], expected,
                 **rounding_tolerance(q, k, v, length, bias=rpb))


@pytest.mark.parametrize("backend", BACKENDS)
@given(height=st.sampled_from([1, 3, 5]), width=st.sampled_from([1, 3]), seed=seeds())
def test_na2d_kernel_covering_the_map_is_full_attention(backend, height, width, seed):
    q, k, v = qkv(seed, (1, 2, height, width, 2))
    rpb = np.random.default_rng(seed + 1).standard_normal((2, 2 * height - 1, 2 * width - 1))
    rows, cols = np.divmod(np.arange(height * width), width)
    bias = rpb[:, rows[None, :] - rows[:, None] + height - 1, cols[None, :] - cols[:, None] + width - 1]
    tokens = [a.reshape(1, 2, height * width, 2) for a in (q, k, v)]
    expected = full_attention(*tokens, bias, 2 ** -0.5).reshape(q.shape)
    out, _ = ops.na2d.forward(q, k, v, (height, width), rpb=rpb, backend=backend)
    assert_close(out, expected, **rounding_tolerance(q, k, v, height * width, bias=rpb))


@pytest.mark.parametrize("backend", BACKENDS)
@given(axis=axes(max_kernel=3, max_dilation=3), seed=seeds())
def test_dina1d_is_na_on_each_dilation_group(backend, axis, seed):
    length, kernel_size, dilation, stride, is_causal = axis
    q, k, v = qkv(seed, (1, 2, length, 2))
    rpb = np.random.default_rng(seed).standard_normal((2, 2 * kernel_size - 1))
    options = dict(stride=stride, is_causal=is_causal, rpb=rpb, backend=backend)
    out, _ = ops.na1d.forward(q, k, v, kernel_size, dilation=dilation, **options)
    interleaved = np.empty_like(out)
    for group in range(dilation):
        sub = (slice(None), slice(None), slice(group, None, dilation))
        interleaved[sub] = ops.na1d.forward(q[sub], k[sub], v[sub], kernel_size, **options)[0]
    assert_close(out, interleaved, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@given(rows=axes(max_kernel=3, max_dilation=2, extra=2), cols=axes(max_kernel=3, max_dilation=3, extra=2),
       seed=seeds())
def test_dina2d_is_na_on_each_dilation_subgrid(backend, rows, cols, seed):
    size, kernel_size, dilation, stride, is_causal = zip(rows, cols)
    q, k, v = qkv(seed, (1, 1) + size + (2,))
    rpb = np.random.default_rng(seed).standard_normal((1, 2 * kernel_size[0] - 1, 2 * kernel_size[1] - 1))
    options = dict(stride=stride, is_causal=is_causal, rpb=rpb, backend=backend)
    out, _ = ops.na2d.forward(q, k, v, kernel_size, dilation=dilation, **options)
    interleaved = np.empty_like(out)
    for row_group in range(dilation[0]):
        for col_group in range(dilation[1]):
            sub = (slice(None), slice(None), slice(row_group, None, dilation[0]), slice(col_group, None, dilation[1]))
            interleaved[sub] = ops.na2d.forward(q[sub], k[sub], v[sub], kernel_size, **options)[0]
    assert_close(out, interleaved, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@given(length=st.integers(1, 6), causal=st.booleans(), seed=seeds())
def test_kernel_one_returns_v(backend, length, causal, seed):
    q, k, v = qkv(seed, (2, 1, length, 3))
    rpb = np.full((1, 1), 5.0)
    assert_close(ops.na1d.forward(q, k, v, 1, is_causal=causal, rpb=rpb, backend=backend)[0], v)
    q2, k2, v2 = qkv(seed, (1, 2, length, 2, 3))
    assert_close(ops.na2d.forward(q2, k2, v2, 1, is_causal=causal, backend=backend)[0], v2)


@pytest.mark.parametrize("backend", BACKENDS)
@given(kernel_size=st.sampled_from([1, 3, 5]), dilation=st.integers(1, 2), shift=st.integers(1, 3), seed=seeds())
def test_interior_translation_equivariance(backend, kernel_size, dilation, shift, seed):
    """Shifting the map shifts the output, for queries whose windows are centred and unwrapped."""
    height, width = kernel_size * dilation + shift + 3, kernel_size * dilation + shift + 2
    q, k, v = qkv(seed, (1, 2, height, width, 2))
    rpb = np.random.default_rng(seed).standard_normal((2, 2 * kernel_size - 1, 2 * kernel_size - 1))

    def na(*maps):
        return ops.na2d.forward(*maps, kernel_size, dilation=dilation, rpb=rpb, backend=backend)[0]

    out = na(q, k, v)
    shifted = na(*(np.roll(a, (shift, shift), axis=(2, 3)) for a in (q, k, v)))
    reach = dilation * (kernel_size // 2)
    rows = np.arange(shift + reach, height - reach)
    cols = np.arange(shift + reach, width - reach)
    assert rows.size and cols.size
    assert_close(shifted[:, :, rows[:, None], cols[None, :]], out[:, :, rows[:, None] - shift, cols[None, :] - shift],
                 rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@given(axis=axes(max_kernel=5, max_dilation=2, extra=5), seed=seeds(), data=st.data())
def test_causal_never_reads_the_future(backend, axis, seed, data):
    length, kernel_size, dilation, stride, _ = axis
    query = data.draw(st.integers(0, length - 1))
    q, k, v = qkv(seed, (1, 2, length, 2))
    options = dict(dilation=dilation, stride=stride, is_causal=True, backend=backend)
    out, _ = ops.na1d.forward(q, k, v, kernel_size, **options)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, query + 1:] += 10.0
    v2[:, :, query + 1:] -= 7.0
    perturbed, _ = ops.na1d.forward(q, k2, v2, kernel_size, **options)
    np.testing.assert_array_equal(perturbed[:, :, :query + 1], out[:, :, :query + 1])
    # 2-D, causal on both axes: the queries at (x, y) only read rows <= x and columns <= y.
    q, k, v = qkv(seed, (1, 1, length, length, 2))
    options["is_causal"] = (True, True)
    out, _ = ops.na2d.forward(q, k, v, kernel_size, **options)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, query + 1:] += 10.0
    v2[:, :, :, query + 1:] -= 7.0
    perturbed, _ = ops.na2d.forward(q, k2, v2, kernel_size, **options)
    np.testing.assert_array_equal(perturbed[:, :, :query + 1, :query + 1], out[:, :, :query + 1, :query + 1])


@pytest.mark.parametrize("backend", BACKENDS)
@given(axis=axes(max_kernel=5, max_dilation=3), with_rpb=st.booleans(), seed=seeds())
def test_na1d_is_na2d_with_a_singleton_axis(backend, axis, with_rpb, seed):
    length, kernel_size, dilation, stride, is_causal = axis
    q, k, v = qkv(seed, (2, 2, length, 3))
    rpb = np.random.default_rng(seed).standard_normal((2, 2 * kernel_size - 1)) if with_rpb else None
    out, cache = ops.na1d.forward(q, k, v, kernel_size, dilation=dilation, stride=stride, is_causal=is_causal,
                                  rpb=rpb, backend=backend)
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grads = ops.na1d.backward(dout, cache)
    for axis_of_sequence in (2, 3):  # the sequence as a column (width 1) or a row (height 1)
        expand = 3 if axis_of_sequence == 2 else 2
        first = axis_of_sequence == 2

        def pair(value, other):
            return (value, other) if first else (other, value)

        maps = [np.expand_dims(a, expand) for a in (q, k, v)]
        bias = None if rpb is None else np.expand_dims(rpb, 2 if first else 1)
        out2, cache2 = ops.na2d.forward(*maps, pair(kernel_size, 1), dilation=pair(dilation, 1),
                                        stride=pair(stride, 1), is_causal=pair(is_causal, False), rpb=bias,
                                        backend=backend)
        assert_close(out2.squeeze(expand), out, rtol=1e-10, atol=1e-12)
        grads2 = ops.na2d.backward(np.expand_dims(dout, expand), cache2)
        for grad, grad2 in zip(grads[:3], grads2[:3]):
            assert_close(grad2.squeeze(expand), grad, rtol=1e-10, atol=1e-12)
        if rpb is not None:
            assert_close(grads2[3].squeeze(2 if first else 1), grads[3], rtol=1e-10, atol=1e-12)
        else:
            assert grads2[3] is None
