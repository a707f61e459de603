"""SiLU on the CPU: one parallel pass over the flattened array, forward and backward."""
from numba import njit, prange

from refvit.kernels.cpu._flat import map_flat
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


def forward(x):
    return map_flat(_forward, x)


def backward(dout, x):
    return map_flat(_backward, dout, x)
