"""cross_entropy: the op's own properties, edge cases and bad inputs. Backends on the example in every dtype
and layout, gradcheck, check_vjp, empty batches and the bad inputs every op shares: test_contract.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.testing import assert_close, check_backends, check_vjp, gradcheck
from refvit.testing.strategies import dims, seeds
from tests.conftest import tolerance

SMOOTHING = [0.0, 0.1, 1.0]


def _inputs(rng, batch, classes, scale=3.0):
    return rng.uniform(-scale, scale, (batch, classes)), rng.integers(0, classes, batch)


@pytest.mark.parametrize("label_smoothing", [0.0, 1.0])  # 0.1 is the op's example (test_contract.py)
def test_gradcheck(rng, label_smoothing):
    gradcheck(ops.cross_entropy, _inputs(rng, 4, 5), dict(label_smoothing=label_smoothing))


@given(batch=dims(1, 6), classes=dims(1, 6), label_smoothing=st.floats(0.0, 1.0), seed=seeds())
def test_vjp(batch, classes, label_smoothing, seed):
    args = _inputs(np.random.default_rng(seed), batch, classes)
    check_vjp(ops.cross_entropy, args, dict(label_smoothing=label_smoothing))


def test_backends_match_numpy_without_smoothing(kernel_backend, dtype, rng):
    args = _inputs(rng, 6, 5)
    check_backends(ops.cross_entropy, args, dict(label_smoothing=0.0), backend=kernel_backend,
                   dtype=dtype, **tolerance(dtype))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_output_is_a_zero_d_array_of_the_logits_dtype(backend, dtype, rng):
    logits, target = _inputs(rng, 3, 4)
    loss, cache = ops.cross_entropy.forward(logits.astype(dtype), target, backend=backend)
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype
    (dlogits,) = ops.cross_entropy.backward(1.0, cache)  # a Python number is accepted as the upstream scalar
    assert dlogits.dtype == dtype and dlogits.shape == (3, 4)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@given(batch=dims(1, 6), classes=dims(1, 6), label_smoothing=st.floats(0.0, 1.0), seed=seeds(),
       shift=st.floats(-1e3, 1e3))
def test_defining_formula_shift_invariance_and_zero_sum_gradient(backend, batch, classes, label_smoothing, seed,
                                                                 shift):
    logits, target = _inputs(np.random.default_rng(seed), batch, classes)
    loss, cache = ops.cross_entropy.forward(logits, target, label_smoothing, backend=backend)
    log_probs = np.log(ops.softmax.forward(logits, backend="numpy")[0])
    expected = -np.mean((1 - label_smoothing) * log_probs[np.arange(batch), target]
                        + label_smoothing * log_probs.mean(axis=1))
    assert_close(np.atleast_1d(loss), np.atleast_1d(expected), rtol=1e-12, atol=1e-12)
    shifted, _ = ops.cross_entropy.forward(logits + shift, target, label_smoothing, backend=backend)
    assert_close(np.atleast_1d(shifted), np.atleast_1d(loss), rtol=1e-9, atol=1e-9)
    (dlogits,) = ops.cross_entropy.backward(np.array(1.0), cache)
    assert_close(dlogits.sum(axis=1), np.zeros(batch), atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_huge_and_infinite_logits(backend):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, -np.inf, 0.0]])
    target = np.array([0, 2])
    loss, _ = ops.cross_entropy.forward(logits, target, backend=backend)
    assert_close(np.atleast_1d(loss), np.array([np.log(2.0) / 2]))
    smoothed, _ = ops.cross_entropy.forward(logits, target, 0.1, backend=backend)
    assert np.isinf(smoothed)  # smoothing puts weight on the -inf logit, as in PyTorch


@pytest.mark.parametrize("label_smoothing", SMOOTHING)
def test_matches_torch(rng, label_smoothing):
    import torch
    logits, target = _inputs(rng, 5, 7)
    loss, cache = ops.cross_entropy.forward(logits, target, label_smoothing)
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.tensor(target), label_smoothing=label_smoothing)
    loss_t.backward(torch.tensor(0.7, dtype=torch.float64))
    assert_close(np.atleast_1d(loss), np.atleast_1d(loss_t.detach().numpy()))
    assert_close(ops.cross_entropy.backward(np.array(0.7), cache)[0], logits_t.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    logits, target = np.zeros((3, 4)), np.array([0, 1, 3])
    ce = ops.cross_entropy.forward
    with pytest.raises(TypeError, match="cross_entropy: 'target'"):
        ce(logits, target.astype(np.float64), backend=backend)
    with pytest.raises(TypeError, match="cross_entropy: 'target'"):
        ce(logits, np.array([True, False, True]), backend=backend)
    with pytest.raises(ValueError, match="cross_entropy: 'target'"):
        ce(logits, np.array([0, 4, 1]), backend=backend)
    with pytest.raises(ValueError, match="cross_entropy: 'target'"):
        ce(logits, np.array([-1, 0, 1]), backend=backend)
    with pytest.raises(ValueError, match="cross_entropy: 'target'"):
        ce(logits, np.array([0, 1]), backend=backend)
    with pytest.raises(ValueError, match="cross_entropy: 'logits'"):  # the mean over no rows: B >= 1
        ce(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), backend=backend)
    with pytest.raises(ValueError, match="cross_entropy: 'label_smoothing'"):
        ce(logits, target, 1.5, backend=backend)
    with pytest.raises(TypeError, match="cross_entropy: 'label_smoothing'"):
        ce(logits, target, None, backend=backend)
    ce(logits, [0, 1, 3], backend=backend)  # a list of class indices is fine


@pytest.mark.cuda
def test_cuda_answers_device_arrays_in_kind(rng):
    from numba import cuda

    logits, target = _inputs(rng, 4, 3)
    loss, cache = ops.cross_entropy.forward(cuda.to_device(logits), cuda.to_device(target), 0.1, backend="cuda")
    (dlogits,) = ops.cross_entropy.backward(cuda.to_device(np.array(2.0)), cache)
    expected_loss, expected_cache = ops.cross_entropy.forward(logits, target, 0.1, backend="numpy")
    assert not isinstance(loss, np.ndarray) and not isinstance(dlogits, np.ndarray)
    assert loss.shape == ()
    assert_close(loss.copy_to_host().reshape(1), expected_loss.reshape(1))
    assert_close(dlogits.copy_to_host(), ops.cross_entropy.backward(np.array(2.0), expected_cache)[0])
