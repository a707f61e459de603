"""Linear on the CPU: the batch axes are flattened into rows and the three products go to BLAS.

A hand-written Numba loop would be far slower than the BLAS ``gemm`` NumPy calls, so this
module only arranges the data: rows ``(n, in)``, C-contiguous operands, ``gemm`` for
:math:`XW^\\top`, :math:`GW` and :math:`G^\\top X`, and a column sum for the bias gradient.
"""
import numpy as np

from refvit.kernels.cpu._threads import kernel_entry


def _rows(a):
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


@kernel_entry
def forward(x, weight, bias):
    rows = _rows(x)
    y = np.dot(rows, np.ascontiguousarray(weight).T)
    if bias is not None:
        y += bias
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


@kernel_entry
def backward(dout, x, weight):
    rows_x = _rows(x)
    rows_dout = _rows(dout)
    dx = np.dot(rows_dout, np.ascontiguousarray(weight)).reshape(x.shape)
    dweight = np.dot(rows_dout.T, rows_x)
    dbias = rows_dout.sum(axis=0)
    return dx, dweight, dbias
