"""The ``cpu`` kernels of linear_gelu: linear's row blocks and gelu's code, so the fused op gives the bits of
the ``cpu`` ops ``linear`` then ``gelu`` (forward and all three gradients), on any number of threads."""
import numba
import numpy as np
import pytest

from refvit import ops
from refvit.kernels.cpu import _threads
from refvit.kernels.cpu import linear as cpu_linear

# rows: one block, two forward blocks with a shorter last one, the most backward blocks plus a remainder
ROWS = (5, 300, cpu_linear.MAX_BLOCKS * cpu_linear.ROWS_PER_BLOCK + 37)


def _inputs(rng, rows, in_features, out_features, with_bias, dtype):
    x = rng.standard_normal((rows, in_features)).astype(dtype)
    weight = (rng.standard_normal((out_features, in_features)) * in_features ** -0.5).astype(dtype)
    bias = rng.standard_normal(out_features).astype(dtype) if with_bias else None
    dout = rng.standard_normal((rows, out_features)).astype(dtype)
    return x, weight, bias, dout


def _fused(x, weight, bias, dout, approximate):
    y, cache = ops.linear_gelu.forward(x, weight, bias, approximate=approximate, backend="cpu")
    return (y,) + ops.linear_gelu.backward(dout, cache)


def _separate(x, weight, bias, dout, approximate):
    hidden, linear_cache = ops.linear.forward(x, weight, bias, backend="cpu")
    y, gelu_cache = ops.gelu.forward(hidden, approximate=approximate, backend="cpu")
    (dhidden,) = ops.gelu.backward(dout, gelu_cache)
    return (y,) + ops.linear.backward(dhidden, linear_cache)


def _assert_same_bits(got, expected):
    for a, b in zip(got, expected):
        if a is None or b is None:
            assert a is None and b is None
        else:
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_equals_linear_then_gelu_bit_for_bit(monkeypatch, dtype, rows, with_bias, approximate):
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)  # the parallel path even on small arrays
    x, weight, bias, dout = _inputs(np.random.default_rng(rows), rows, 6, 10, with_bias, dtype)
    x[0, 0] = np.nan if rows > 5 else x[0, 0]  # a NaN row propagates alike
    _assert_same_bits(_fused(x, weight, bias, dout, approximate), _separate(x, weight, bias, dout, approximate))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_leading_axes_and_nano_shape_bit_for_bit(approximate):
    """The rows of a (64, 8, 8, 32) -> 96 layer, dinat_nano's first MLP at batch 64, in float32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 8, 32), dtype=np.float32)
    weight = rng.standard_normal((96, 32), dtype=np.float32) * np.float32(32 ** -0.5)
    bias = rng.standard_normal(96, dtype=np.float32)
    dout = rng.standard_normal((64, 8, 8, 96), dtype=np.float32)
    _assert_same_bits(_fused(x, weight, bias, dout, approximate), _separate(x, weight, bias, dout, approximate))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_one_and_two_threads_give_the_same_bits(monkeypatch, approximate):
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    x, weight, bias, dout = _inputs(np.random.default_rng(3), ROWS[-1], 6, 10, True, np.float32)
    results = []
    before = numba.get_num_threads()
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS), before}):
        numba.set_num_threads(threads)
        try:
            results.append(_fused(x, weight, bias, dout, approximate))
        finally:
            numba.set_num_threads(before)
    for got in results[1:]:
        _assert_same_bits(got, results[0])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_output_blocks_bit_for_bit(monkeypatch, dtype, approximate):
    """Few rows with a large weight: the forward is cut along the outputs, in both ops alike."""
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    monkeypatch.setattr(cpu_linear, "LARGE_WEIGHT", 0)
    rows, out_features = 9, 13
    assert cpu_linear.cuts_outputs(rows, 6, out_features)
    x, weight, bias, dout = _inputs(np.random.default_rng(4), rows, 6, out_features, True, dtype)
    _assert_same_bits(_fused(x, weight, bias, dout, approximate), _separate(x, weight, bias, dout, approximate))
