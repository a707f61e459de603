"""The ``cpu`` kernels on one thread and on all threads: same values, both equal to ``numpy``;
the thread settings around a kernel call are restored."""
import os

import numba
import numpy as np
import pytest

from refvit import ops
from refvit.kernels.cpu import _threads
from refvit.testing import assert_close, check_backends
from refvit.testing.gradients import bind_inputs
from tests.conftest import tolerance

OPS = ["avg_pool2d", "batch_norm", "channel_shuffle", "conv2d", "cross_entropy", "gelu", "layer_norm", "linear",
       "max_pool2d", "multiscale_dwconv", "relative_position_bias", "relu", "sigmoid", "silu", "softmax",
       "stripe_attention", "tanh"]


def _depthwise_example(rng):
    x = rng.standard_normal((2, 5, 6, 4))
    return (x, rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)), dict(padding=1, groups=4)


def _example(name, rng):
    return _depthwise_example(rng) if name == "depthwise_conv2d" else getattr(ops, name).example(rng)


def _op(name):
    return ops.conv2d if name == "depthwise_conv2d" else getattr(ops, name)


def _run(op, args, kwargs, seed=0):
    """Forward and backward on ``cpu``: the outputs and the gradients as flat lists of arrays."""
    arguments, _ = bind_inputs(op, args, kwargs, backend="cpu")
    out, cache = op.forward(**arguments)
    outs = list(out) if isinstance(out, tuple) else [out]
    rng = np.random.default_rng(seed)
    upstream = [rng.standard_normal(np.shape(o)).astype(np.asarray(o).dtype) for o in outs]
    grads = op.backward(tuple(upstream) if isinstance(out, tuple) else upstream[0], cache)
    flat = [g for g in grads if g is not None and not isinstance(g, (list, tuple))]
    flat += [item for g in grads if isinstance(g, (list, tuple)) for item in g if item is not None]
    return outs + flat


@pytest.mark.parametrize("name", OPS + ["depthwise_conv2d"])
def test_parallel_path_matches_numpy(monkeypatch, name, dtype, rng):
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    args, kwargs = _example(name, rng)
    check_backends(_op(name), args, kwargs, backend="cpu", dtype=dtype, **tolerance(dtype))


@pytest.mark.parametrize("name", OPS + ["depthwise_conv2d"])
def test_one_thread_and_all_threads_agree_exactly(monkeypatch, name, rng):
    args, kwargs = _example(name, rng)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    parallel = _run(_op(name), args, kwargs)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 1 << 62)
    serial = _run(_op(name), args, kwargs)
    assert len(parallel) == len(serial)
    for p, s in zip(parallel, serial):
        np.testing.assert_array_equal(p, s)


def test_large_arrays_take_the_parallel_path_and_agree(rng):
    x = rng.standard_normal((_threads.PARALLEL_MIN_SIZE // 64 + 3, 64)).astype(np.float32)
    weight, bias = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    threads_seen = []
    kernel = ops.layer_norm.forward

    def spy(*a, **k):
        threads_seen.append(numba.get_num_threads())
        return kernel(*a, **k)

    parallel = _threads.kernel_entry(spy)(x, weight, bias, backend="cpu")[0]
    serial = _threads.run_with_threads(kernel, (x, weight, bias), dict(backend="cpu"), 1)[0]
    assert threads_seen == [numba.get_num_threads()]
    np.testing.assert_array_equal(parallel, serial)
    assert_close(parallel, ops.layer_norm.forward(x, weight, bias, backend="numpy")[0], **tolerance(np.float32))


def test_small_arrays_run_numba_on_one_thread_and_settings_are_restored():
    before_numba = numba.get_num_threads()
    blas = _threads._blas_libraries()
    before_blas = [lib.get_num_threads() for lib in blas]
    seen = {}

    @_threads.kernel_entry
    def probe(x):
        seen["numba"] = numba.get_num_threads()
        seen["blas"] = [lib.get_num_threads() for lib in blas]
        raise ValueError("probe")

    with pytest.raises(ValueError, match="probe"):
        probe(np.zeros(8))
    assert seen["numba"] == 1 and all(n == 1 for n in seen["blas"])
    assert numba.get_num_threads() == before_numba
    assert [lib.get_num_threads() for lib in blas] == before_blas


def test_openblas_found_through_the_memory_maps():
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("no /proc/self/maps on this system")
    libraries = _threads._loaded_openblas_from_maps()
    if not libraries:
        pytest.skip("NumPy is not linked to OpenBLAS here")
    before = libraries[0].get_num_threads()
    try:
        libraries[0].set_num_threads(1)
        assert libraries[0].get_num_threads() == 1
    finally:
        libraries[0].set_num_threads(before)
    assert _threads._loaded_openblas_from_maps("/nonexistent/maps") == []


def test_spin_briefly_leaves_the_environment_as_it_was():
    before = dict(os.environ)
    _threads.spin_briefly()
    assert dict(os.environ) == before


def test_the_blas_numba_calls_is_controlled_too():
    """Numba's compiled ``np.dot`` calls SciPy's BLAS, a library apart from NumPy's: it must be among
    the libraries held to one thread, or it starts its own threads inside ``prange`` loops."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from refvit.kernels.cpu import linear

    linear.forward(np.ones((4, 3)), np.ones((2, 3)), None)  # np.dot inside a compiled kernel
    controlled = {lib.filepath for lib in _threads._blas_libraries()}
    loaded = {info["filepath"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    assert loaded <= controlled
