import numpy as np
import pytest

import refvit
from refvit import ops


def test_default_is_cpu_and_context_restores():
    assert refvit.get_backend() == "cpu"
    with refvit.use_backend("numpy"):
        assert refvit.get_backend() == "numpy"
        with refvit.use_backend("cpu"):
            assert refvit.get_backend() == "cpu"
        assert refvit.get_backend() == "numpy"
    assert refvit.get_backend() == "cpu"


def test_set_backend_changes_default_for_ops():
    try:
        refvit.set_backend("numpy")
        _, cache = ops.gelu.forward(np.zeros(2))
        assert cache.backend == "numpy"
    finally:
        refvit.set_backend("cpu")
    _, cache = ops.gelu.forward(np.zeros(2))
    assert cache.backend == "cpu"


def test_explicit_backend_wins_over_default():
    with refvit.use_backend("numpy"):
        _, cache = ops.gelu.forward(np.zeros(2), backend="cpu")
    assert cache.backend == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "CPU", 3, ""])
def test_unknown_backend_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="'backend' must be one of 'numpy', 'cpu', 'cuda'"):
        refvit.set_backend(bad)
    with pytest.raises(ValueError, match="gelu: 'backend'"):
        ops.gelu.forward(np.zeros(2), backend=bad)


@pytest.mark.skipif(refvit.cuda_available(), reason="checks the error raised when CUDA is missing")
def test_cuda_without_gpu_or_simulator_is_a_clear_error():
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM"):
        ops.gelu.forward(np.zeros(2), backend="cuda")
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM"):
        refvit.set_backend("cuda")


@pytest.mark.cuda
def test_cuda_returns_device_arrays_for_device_inputs():
    from numba import cuda

    x = np.linspace(-2, 2, 7)
    out, cache = ops.gelu.forward(cuda.to_device(x), backend="cuda")
    assert not isinstance(out, np.ndarray)
    (dx,) = ops.gelu.backward(cuda.to_device(np.ones(7)), cache)
    assert not isinstance(dx, np.ndarray)
    host, _ = ops.gelu.forward(x, backend="cuda")
    assert isinstance(host, np.ndarray)
    np.testing.assert_allclose(out.copy_to_host(), host)


def test_device_arrays_rejected_by_numpy_backend():
    class FakeDevice:
        __cuda_array_interface__ = {}
        shape, dtype, ndim = (2,), np.dtype(np.float64), 1

    with pytest.raises(TypeError, match="gelu: 'x' must be a NumPy array for backend 'numpy'"):
        ops.gelu.forward(FakeDevice(), backend="numpy")


def test_op_listing_and_unknown_op():
    assert "gelu" in ops.list_ops()
    with pytest.raises(AttributeError, match="no op 'nope'"):
        ops.nope


@pytest.mark.cuda
def test_cuda_empty_call_answers_in_kind():
    """An empty call runs the reference on the host; device arrays in still give device arrays out."""
    from numba import cuda

    out, cache = ops.gelu.forward(cuda.to_device(np.zeros((0, 3))), backend="cuda")
    assert not isinstance(out, np.ndarray) and tuple(out.shape) == (0, 3)
    (dx,) = ops.gelu.backward(cuda.to_device(np.zeros((0, 3))), cache)
    assert not isinstance(dx, np.ndarray) and tuple(dx.shape) == (0, 3)
    host, _ = ops.gelu.forward(np.zeros((0, 3)), backend="cuda")
    assert isinstance(host, np.ndarray) and host.shape == (0, 3)
