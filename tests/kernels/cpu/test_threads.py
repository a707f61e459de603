"""The thread rule of the ``cpu`` kernels (:mod:`refvit.kernels.cpu._threads`), for every op of the op
table: one thread and all threads give the same values, both equal to ``numpy``; BLAS runs on one
thread inside every kernel call; the thread settings around a call are restored."""
import os

import numba
import numpy as np
import pytest

from refvit import kernels, ops
from refvit.kernels.cpu import _threads
from refvit.testing import assert_close, check_backends
from refvit.testing.gradients import bind_inputs
from tests.conftest import tolerance

CPU_KERNEL_OPS = [spec.name for spec in ops.table() if spec.kernels.get("cpu")]


def _depthwise_example(rng):
    x = rng.standard_normal((2, 5, 6, 4))
    return (x, rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)), dict(padding=1, groups=4)


# Every op with a cpu kernel, plus the kernel variants an entry picks by shape.
CASES = [(name, ops.spec(name).example) for name in CPU_KERNEL_OPS] + [("conv2d", _depthwise_example)]
CASE_IDS = CPU_KERNEL_OPS + ["conv2d-depthwise"]


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


def test_every_op_with_a_cpu_kernel_is_covered():
    assert set(CPU_KERNEL_OPS) == {spec.name for spec in ops.table() if spec.kernels["cpu"] is not None}
    assert {"na2d", "attention", "na1d", "stripe_attention"} <= set(CPU_KERNEL_OPS)


@pytest.mark.parametrize("name, example", CASES, ids=CASE_IDS)
def test_parallel_path_matches_numpy(monkeypatch, name, example, dtype, rng):
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    args, kwargs = example(rng)
    check_backends(getattr(ops, name), args, kwargs, backend="cpu", dtype=dtype, **tolerance(dtype))


@pytest.mark.parametrize("name, example", CASES, ids=CASE_IDS)
def test_one_thread_and_all_threads_agree_exactly(monkeypatch, name, example, rng):
    args, kwargs = example(rng)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 0)
    parallel = _run(getattr(ops, name), args, kwargs)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_SIZE", 1 << 62)
    serial = _run(getattr(ops, name), args, kwargs)
    assert len(parallel) == len(serial)
    for p, s in zip(parallel, serial):
        np.testing.assert_array_equal(p, s)


def _spy_on_entries(monkeypatch, name, seen):
    """Wrap the cpu kernel entries of op ``name``: record Numba's and every loaded BLAS library's
    thread count at the moment the entry runs (threadpoolctl reads the libraries afresh)."""
    import threadpoolctl
    module = kernels.load("cpu", ops.spec(name).kernels["cpu"])
    for step in ("forward", "backward"):
        original = getattr(module, step)

        def spy(*args, _original=original, _step=step):
            blas = {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info()
                    if info["user_api"] == "blas"}
            seen.append((_step, numba.get_num_threads(), blas))
            return _original(*args)

        monkeypatch.setattr(module, step, spy)


@pytest.mark.parametrize("name, example", CASES, ids=CASE_IDS)
def test_blas_runs_on_one_thread_inside_every_cpu_kernel(monkeypatch, name, example, rng):
    """Every cpu kernel entry runs with each BLAS library in the process (NumPy's, and SciPy's, which
    the ``np.dot`` of compiled kernels calls inside ``prange`` loops) on one thread, although outside
    the call BLAS may use two."""
    import threadpoolctl
    seen = []
    _spy_on_entries(monkeypatch, name, seen)
    args, kwargs = example(rng)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        _run(getattr(ops, name), args, kwargs)
    assert {step for step, _, _ in seen} == {"forward", "backward"}
    for step, _, blas in seen:
        assert blas, "no BLAS library found"
        assert all(n == 1 for n in blas.values()), f"{name} {step}: BLAS threads {blas}"


def test_na2d_dense_path_calls_blas_on_one_thread(monkeypatch, rng):
    """A real na2d call on a map the dense path takes (a 14x14 NAT-Mini layer, kernel 7), whose kernels
    call ``np.dot`` inside ``prange``: SciPy's BLAS, which serves that ``np.dot``, is loaded and held to
    one thread for the whole call, and the results equal the reference."""
    import threadpoolctl
    seen = []
    _spy_on_entries(monkeypatch, "na2d", seen)
    q, k, v = (rng.standard_normal((2, 2, 14, 14, 16)).astype(np.float32) for _ in range(3))
    rpb = rng.standard_normal((2, 13, 13)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        out, cache = ops.na2d.forward(q, k, v, 7, rpb=rpb, backend="cpu")
        grads = ops.na2d.backward(np.ones_like(out), cache)
    paths = [path for _, _, blas in seen for path in blas]
    assert any("scipy" in path for path in paths), paths
    assert all(n == 1 for _, _, blas in seen for n in blas.values()), seen
    want, want_cache = ops.na2d.forward(q, k, v, 7, rpb=rpb, backend="numpy")
    assert_close(out, want, **tolerance(np.float32))
    for got, expected in zip(grads, ops.na2d.backward(np.ones_like(want), want_cache)):
        assert_close(got, expected, **tolerance(np.float32))


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
    import threadpoolctl
    from refvit.kernels.cpu import linear

    linear.forward(np.ones((4, 3)), np.ones((2, 3)), None)  # np.dot inside a compiled kernel
    controlled = {lib.filepath for lib in _threads._blas_libraries()}
    loaded = {info["filepath"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    assert loaded <= controlled
