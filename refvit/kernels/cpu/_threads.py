"""How the ``cpu`` backend uses threads: one pool at a time, and no threads for small work.

Two pools of worker threads can serve one ``cpu`` op call: Numba's (``prange`` kernels) and the
BLAS library's behind NumPy's ``matmul``/``dot``. Both pools keep their workers busy-waiting for a
while after a call (OpenBLAS for a long while), so on a machine with few cores the workers of one
pool take the cores the other pool's next call needs, and on a machine that other processes keep
busy every parallel region waits for descheduled, spinning workers. Measured on 2 cores: a whole
training step of the nano models ran 10-30x slower than with one thread per pool. Hence:

* every call of a ``cpu`` kernel entry goes through :func:`run_as_kernel_entry` (the op dispatch,
  :func:`refvit.kernels.call`, applies it, so no kernel can miss it): BLAS runs single-threaded
  inside it (the Numba kernels are the ``cpu`` backend's parallelism; this covers the ``np.dot``
  that compiled kernels call inside ``prange`` loops, which goes to SciPy's BLAS), and the Numba
  kernels run on one thread when the call's largest array has fewer than
  :data:`PARALLEL_MIN_SIZE` elements, where waking the workers costs more than the work.
  :func:`kernel_entry` is the same rule as a decorator, for a function called outside the ops.
* :func:`spin_briefly` sets how long Numba's OpenMP workers spin after a parallel region before
  they sleep (it is called once when the ``cpu`` kernels are first imported): long enough to bridge
  the Python between one op's parallel regions and the next op's, as libgomp's own default does
  when threads do not outnumber cores. Waking a sleeping worker took about 0.1 ms per region on a
  2-core virtual machine (the ``na2d`` forward at (1, 4, 56, 56, 32), five regions: median 3.7 ms
  with workers that sleep at once, 2.6 ms with a spin count of 1000 to 3,000,000), and a training
  step runs hundreds of regions with tens of microseconds of Python between them
  (``python examples/spin_count.py``, dinat_nano, batch 64, 2 cores, 3 rounds, medians: training
  step 81.3 ms with 10,000 rounds, 76.3 with 300,000, 75.8 with 3,000,000; inference 28.4, 26.8,
  26.1 ms).

The results do not depend on any of this: every kernel gives the same values on any number of
threads (each output element is written by one iteration, reductions go through fixed blocks).
"""
from __future__ import annotations

import ctypes
import functools
import os

import numba
import numpy as np

# A call whose largest array has fewer elements runs its Numba kernels on one thread. With the
# workers spinning between regions (SPIN_COUNT), a parallel region costs about a microsecond, and
# the kernel calls of the nano models' training steps from 4096 elements up took less time on all
# threads than on one, summed per model: 1.1-1.3 of 2.3-4.1 ms less on dualvit, smt and cswin, 0.4
# of 1.5 on coatnet (``python examples/parallel_threshold.py --model M --below 32768``, 2 cores).
# Smaller calls, test-sized ones among them, stay on one thread.
PARALLEL_MIN_SIZE = 1 << 12

# Rounds an idle OpenMP worker spins before it sleeps (libgomp's GOMP_SPINCOUNT; libgomp's own
# default when threads do not outnumber cores): enough to bridge the Python
# between the ops of a training step.
SPIN_COUNT = 300000

_OPENBLAS_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
                     "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_")


class _OpenBLAS:
    """One loaded OpenBLAS library, reached through ``ctypes`` (``set_num_threads``/``get_num_threads``)."""

    def __init__(self, setter, getter, filepath):
        self._set, self._get, self.filepath = setter, getter, filepath

    def get_num_threads(self):
        return self._get()

    def set_num_threads(self, n):
        self._set(n)


def _loaded_openblas_from_maps(maps_path="/proc/self/maps"):
    """The OpenBLAS libraries mapped into this process (Linux), as :class:`_OpenBLAS` objects."""
    try:
        with open(maps_path) as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return []
    found = []
    for path in sorted(paths):
        try:
            handle = _openblas_handle(ctypes.CDLL(path), path)
        except OSError:
            continue
        if handle is not None:
            found.append(handle)
    return found


def _openblas_handle(library, filepath):
    """An :class:`_OpenBLAS` for a loaded OpenBLAS ``ctypes`` library, or ``None`` if it has no thread setter."""
    for name in _OPENBLAS_SETTERS:
        getter_name = name.replace("_set_", "_get_")
        if hasattr(library, name) and hasattr(library, getter_name):
            setter, getter = getattr(library, name), getattr(library, getter_name)
            setter.argtypes, setter.restype, getter.argtypes, getter.restype = [ctypes.c_int], None, [], ctypes.c_int
            return _OpenBLAS(setter, getter, filepath)
    return None


def _direct(controller):
    """threadpoolctl's controller of an OpenBLAS with its own thread pool, as a direct :class:`_OpenBLAS`
    handle: the same two C functions without the Python around each call (about 1 us a call, and the
    thread rule makes four per library per kernel call). Other libraries keep their controller."""
    if controller.internal_api != "openblas" or getattr(controller, "threading_layer", None) == "openmp":
        return controller
    return _openblas_handle(controller.dynlib, controller.filepath) or controller


def _loaded_blas():
    """Thread controls of the BLAS libraries: threadpoolctl's when it is installed (OpenBLAS, MKL,
    BLIS on any platform), else the OpenBLAS libraries found in ``/proc/self/maps``.

    Two libraries matter: NumPy's, and SciPy's, which Numba calls for ``np.dot`` inside compiled
    kernels. SciPy's is loaded here first (importing ``scipy.linalg.cython_blas``, as Numba does on
    its first compiled ``np.dot``), so it is found even when no kernel has run yet; missed, it ran
    its own threads inside ``prange`` loops."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return _loaded_openblas_from_maps()
    return [_direct(lib) for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


_blas = None
_blas_calls = None
_numba_calls = None


def _blas_libraries():
    global _blas
    if _blas is None:
        _blas = _loaded_blas()
    return _blas


def _blas_thread_calls():
    """``(get, set)`` of each BLAS library's thread count, the bare C functions where there are ones
    (an OpenBLAS found directly), found once."""
    global _blas_calls
    if _blas_calls is None:
        _blas_calls = tuple((lib._get, lib._set) if isinstance(lib, _OpenBLAS)
                            else (lib.get_num_threads, lib.set_num_threads) for lib in _blas_libraries())
    return _blas_calls


def _numba_thread_calls():
    """``(get, set)`` of the calling thread's Numba thread count: the C functions behind
    ``numba.get_num_threads``/``numba.set_num_threads``, found once the thread pool is started.
    The public functions check on every call that the pool is started (two locks) and that the
    count is in range, about 0.7 us a call; the counts set here are always in range."""
    global _numba_calls
    if _numba_calls is None:
        numba.get_num_threads()  # starts the pool, as the first parallel kernel would
        from numba.np.ufunc import parallel

        get, set_ = getattr(parallel, "_get_num_threads", None), getattr(parallel, "_set_num_threads", None)
        if get is None or set_ is None or get() != numba.get_num_threads():
            get, set_ = numba.get_num_threads, numba.set_num_threads
        _numba_calls = (get, set_)
    return _numba_calls


def largest_size(args):
    """The element count of the largest NumPy array among ``args``, searched through tuples and
    lists (0 if none)."""
    largest = 0
    for a in args:
        kind = type(a)
        if kind is int or a is None:  # shapes and options: the most frequent arguments after arrays
            continue
        if kind is np.ndarray or isinstance(a, np.ndarray):
            size = a.size
        elif isinstance(a, (tuple, list)):
            size = largest_size(a)
        else:
            continue
        if size > largest:
            largest = size
    return largest


def run_with_threads(fn, args, kwargs, numba_threads):
    """``fn(*args, **kwargs)`` with BLAS on one thread and Numba on ``numba_threads`` (``None``: unchanged).

    Only what must change is set, and only that is restored, through the bare C functions: the
    thread rule runs around every kernel call, hundreds in a training step, and at a few
    microseconds a call it cost a third of a tiny op (see ``examples/dispatch_overhead.py``)."""
    blas_changed = ()
    numba_set = numba_before = None
    try:
        for get, set_ in _blas_calls or _blas_thread_calls():
            before = get()
            if before != 1:
                set_(1)
                blas_changed += ((set_, before),)
        if numba_threads is not None:
            numba_get, numba_set = _numba_calls or _numba_thread_calls()
            before = numba_get()
            if numba_threads < before:
                numba_set(numba_threads)
                numba_before = before
        return fn(*args, **kwargs) if kwargs else fn(*args)
    finally:
        if numba_before is not None:
            numba_set(numba_before)
        for set_, before in blas_changed:
            set_(before)


def run_as_kernel_entry(fn, args, kwargs=None):
    """``fn(*args, **kwargs)`` under the thread rule: single-threaded BLAS inside it, and its Numba
    kernels on one thread when its largest array argument is smaller than :data:`PARALLEL_MIN_SIZE`."""
    size = largest_size(args)
    if kwargs:
        size = max(size, largest_size(tuple(kwargs.values())))
    return run_with_threads(fn, args, kwargs, 1 if size < PARALLEL_MIN_SIZE else None)


def kernel_entry(fn):
    """Decorate a function with the thread rule of :func:`run_as_kernel_entry`."""

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        return run_as_kernel_entry(fn, args, kwargs)

    return entry


def spin_briefly():
    """Start Numba's thread pool with OpenMP workers that spin :data:`SPIN_COUNT` rounds after a
    parallel region, then sleep (the name is older than the count, which is no longer brief).

    ``GOMP_SPINCOUNT`` is set only while Numba loads its threading layer (the OpenMP runtime reads
    it when it is loaded) and only when neither it nor ``OMP_WAIT_POLICY`` was set by the user.
    Without effect when Numba's threads were already started or it uses TBB or its own work queue.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        numba.get_num_threads()
        return
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        numba.get_num_threads()  # loads the threading layer
    finally:
        del os.environ["GOMP_SPINCOUNT"]
