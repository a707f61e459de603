"""SiLU on the CPU: one parallel pass over the flattened array, forward and backward."""
import numpy as np
from numba import njit, prange

from refvit.kernels.cpu._threads import kernel_entry
from refvit.kernels.cpu.vector_math import stable_sigmoid


@njit(cache=True, parallel=True)
def _forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v * stable_sigmoid(v)


@njit(cache=True, parallel=True)
def _backward(dout, x, dx):
    for i in prange(x.size):
        v = x[i]
        s = stable_sigmoid(v)
        dx[i] = dout[i] * s * (1.0 + v * (1.0 - s))


@kernel_entry
def forward(x):
    x = np.asarray(x, order="C")
    out = np.empty_like(x)
    _forward(x.reshape(-1), out.reshape(-1))
    return out


@kernel_entry
def backward(dout, x):
    x = np.asarray(x, order="C")
    dx = np.empty_like(x)
    _backward(np.asarray(dout, order="C").reshape(-1), x.reshape(-1), dx.reshape(-1))
    return dx
