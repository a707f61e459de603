r"""The per-row and per-channel sums of the CUDA normalisation kernels (``batch_norm``,
``layer_norm``), as device functions. Inputs are seen as ``(rows, C)``; sums run in float64.

* :func:`mean_var`: mean and biased variance of one row of a 2-D array, in two passes (the
  mean, then the centred squares). Layer norm reads a row of ``x``; batch norm a row of ``x.T``,
  that is one channel.
* :func:`gradient_sums`: down channel ``c``, :math:`\sum_r g_{rc}` and
  :math:`\sum_r g_{rc}\,\hat x_{rc}` with :math:`\hat x_{rc} = (x_{rc} - \mu)\,\sigma^{-1}`, the
  statistics taken per row (layer norm) or per channel (batch norm).
"""
from numba import cuda


@cuda.jit(device=True)
def mean_var(a, row):
    """``(mean, biased variance)`` of ``a[row, :]``."""
    count = a.shape[1]
    total = 0.0
    for c in range(count):
        total += a[row, c]
    mu = total / count
    squares = 0.0
    for c in range(count):
        d = a[row, c] - mu
        squares += d * d
    return mu, squares / count


@cuda.jit(device=True)
def gradient_sums(dout, x, c, mean, rstd, per_row):
    """``(sum_r dout[r, c], sum_r dout[r, c] * (x[r, c] - mean) * rstd)``; ``mean`` and ``rstd`` are
    read at ``r`` when ``per_row``, else at ``c``."""
    total_g = 0.0
    total_g_xhat = 0.0
    for row in range(x.shape[0]):
        at = row if per_row else c
        total_g += dout[row, c]
        total_g_xhat += dout[row, c] * (x[row, c] - mean[at]) * rstd[at]
    return total_g, total_g_xhat
