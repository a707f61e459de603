"""AdamW's compiled update gives the NumPy expressions' results to the last bit, in float32 and
float64, for contiguous and non-contiguous parameters and for state restored in another layout."""
import math

import numpy as np
import pytest

from refvit.nn import Parameter
from refvit.optim import AdamW


def numpy_adamw(theta, grads, lr, betas, eps, weight_decay):
    """The update as NumPy operations on arrays of ``theta``'s dtype (Python scalars take that dtype)."""
    theta = theta.copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    beta1, beta2 = betas
    for step, g in enumerate(grads, start=1):
        theta *= 1.0 - lr * weight_decay
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        denominator = np.sqrt(v) / math.sqrt(1.0 - beta2 ** step) + eps
        theta -= lr / (1.0 - beta1 ** step) * (m / denominator)
    return theta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("shape", [(7, 5), (37, 41)])  # the second runs the vectorised loop many times
def test_compiled_update_equals_numpy_bit_for_bit(dtype, transposed, shape):
    rng = np.random.default_rng(0)
    start = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) * 10.0 ** k for k in (-6, 0, 2)]
    data = np.asfortranarray(start) if transposed else start.copy()
    p = Parameter(data)
    optimizer = AdamW([p], lr=3e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05)
    for g in grads:
        p.grad = g
        optimizer.step()
    expected = numpy_adamw(start, grads, 3e-3, (0.8, 0.99), 1e-7, 0.05)
    assert p.data.dtype == dtype
    np.testing.assert_array_equal(p.data, expected)


def test_state_in_fortran_order_is_still_updated():
    rng = np.random.default_rng(1)
    start = rng.standard_normal((4, 6)).astype(np.float32)
    grads = [rng.standard_normal((4, 6)).astype(np.float32) for _ in range(3)]
    p, q = Parameter(start.copy()), Parameter(start.copy())
    first, second = AdamW([p], lr=1e-2), AdamW([q], lr=1e-2)
    p.grad = q.grad = grads[0]
    first.step()
    second.step()
    saved = first.state_dict()
    for entries in saved["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            entries[key] = np.asfortranarray(entries[key])
    second.load_state_dict(saved)
    for g in grads[1:]:
        p.grad = q.grad = g
        first.step()
        second.step()
    np.testing.assert_array_equal(q.data, p.data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_denominator_gives_nan_as_numpy_does(dtype):
    """eps=0 and a zero gradient make 0/0: NaN in those places, as the NumPy expressions give, not an error."""
    start = np.linspace(-1.0, 1.0, 40, dtype=dtype).reshape(5, 8)
    grad = np.where(np.arange(40).reshape(5, 8) % 3 == 0, 0.0, 0.5).astype(dtype)
    p = Parameter(start.copy())
    p.grad = grad
    AdamW([p], lr=1e-2, eps=0.0, weight_decay=0.0).step()
    with np.errstate(invalid="ignore"):
        expected = numpy_adamw(start, [grad], 1e-2, (0.9, 0.999), 0.0, 0.0)
    assert np.isnan(p.data).sum() == 14
    np.testing.assert_array_equal(p.data, expected)
