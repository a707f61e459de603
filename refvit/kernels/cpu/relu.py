"""ReLU on the CPU: one parallel pass over the flattened array, forward and backward."""
import numpy as np
from numba import njit, prange



@njit(cache=True, parallel=True)
def _forward(x, out):
    for i in prange(x.size):
        v = x[i]
        # `v < 0.0` is False for NaN, so NaN passes through like in np.maximum.
        out[i] = 0.0 if v < 0.0 else v


@njit(cache=True, parallel=True)
def _backward(dout, x, dx):
    for i in prange(x.size):
        # Gradient 0 at x <= 0 (0 included); NaN compares False and keeps its gradient.
        dx[i] = 0.0 if x[i] <= 0.0 else dout[i]


def forward(x):
    x = np.asarray(x, order="C")
    out = np.empty_like(x)
    _forward(x.reshape(-1), out.reshape(-1))
    return out


def backward(dout, x):
    x = np.asarray(x, order="C")
    dx = np.empty_like(x)
    _backward(np.asarray(dout, order="C").reshape(-1), x.reshape(-1), dx.reshape(-1))
    return dx
