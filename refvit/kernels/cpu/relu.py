"""ReLU on the CPU: one parallel pass over the flattened array, forward and backward."""
from numba import njit, prange

from refvit.kernels.cpu._flat import map_flat


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
    return map_flat(_forward, x)


def backward(dout, x):
    return map_flat(_backward, dout, x)
