"""The AdamW update of one parameter as one compiled loop: one pass over the parameter, its
gradient and its two moment arrays, in place, with no temporary arrays.

The arithmetic is the NumPy sequence it replaces, operation by operation, in the parameter's dtype
(the scalars are rounded to that dtype first, as NumPy does with Python numbers in an operation
on a float32 array), so the results are the same to the last bit::

    p *= decay; m = m * beta1 + (1 - beta1) * g; v = v * beta2 + (1 - beta2) * (g * g)
    p -= step_size * (m / (sqrt(v) / bias_correction2_sqrt + eps))

Numba does not fuse a product into an addition (no ``fastmath``), which would change the rounding.
``error_model="numpy"``: a division by zero gives inf or NaN, as in NumPy, instead of the zero test
that Numba's default (Python's ``ZeroDivisionError``) puts before each division; that test kept
LLVM from vectorising the loop, which now runs 4.5x faster (866,000 float32 parameters of
``dinat_nano``, one thread: 0.56 ms against 2.5 ms; the results are the same bits).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# The order of the scalars in the ``coefficients`` array of :func:`update`.
COEFFICIENTS = ("decay", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "step_size",
                "bias_correction2_sqrt", "eps")


@njit(cache=True, error_model="numpy")
def _update(parameter, grad, exp_avg, exp_avg_sq, coefficients):
    decay, beta1, one_minus_beta1 = coefficients[0], coefficients[1], coefficients[2]
    beta2, one_minus_beta2, step_size = coefficients[3], coefficients[4], coefficients[5]
    bias_correction2_sqrt, eps = coefficients[6], coefficients[7]
    for i in range(parameter.shape[0]):
        g = grad[i]
        m = exp_avg[i] * beta1 + one_minus_beta1 * g
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * (g * g)
        exp_avg[i] = m
        exp_avg_sq[i] = v
        parameter[i] = parameter[i] * decay - step_size * (m / (np.sqrt(v) / bias_correction2_sqrt + eps))


def update(parameter, grad, exp_avg, exp_avg_sq, coefficients):
    """One AdamW step in place on the contiguous arrays ``parameter``, ``exp_avg``, ``exp_avg_sq``
    (one dtype, one shape) with ``grad`` (cast to that dtype and made contiguous when it is not);
    ``coefficients`` the scalars named by :data:`COEFFICIENTS`, in that order."""
    dtype = parameter.dtype
    grad = np.ascontiguousarray(grad, dtype=dtype)
    _update(parameter.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
            np.asarray(coefficients, dtype=dtype))
