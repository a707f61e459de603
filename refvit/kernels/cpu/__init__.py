"""Numba CPU kernels.

Rules the kernels follow:

* module-level ``@njit(cache=True)`` functions (a factory would defeat the cache);
* flat loops over C-contiguous arrays (the op boundary makes inputs contiguous);
* ``prange`` over the output being written, so that no two threads write one
  element (gradients are gathered, not scattered);
* no ``fastmath`` beyond two flags: the float64 path must match the reference to rounding.
  ``contract`` (a product fused into an addition) and ``reassoc`` (a sum added in another order,
  so that a dot product over the head dimension runs in vector lanes) change only the rounding;
  the flags that assume no NaN or infinity, or that approximate functions, are never used.

Threads: see :mod:`refvit.kernels.cpu._threads` (BLAS single-threaded inside the kernels, no
Numba threads for small arrays, OpenMP workers that spin only briefly between parallel regions).
Memory: see :mod:`refvit.kernels.cpu._heap` (freed arrays stay in the heap for the next step).
Cache: see :mod:`refvit.kernels.cpu._stale_cache` (a kernel is compiled afresh when a file it imports
changed, which Numba alone does not notice).
"""
from refvit.kernels.cpu._heap import keep_freed_memory
from refvit.kernels.cpu._stale_cache import refresh_kernels
from refvit.kernels.cpu._threads import spin_briefly

refresh_kernels()
spin_briefly()
keep_freed_memory()
