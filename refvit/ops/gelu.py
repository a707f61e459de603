r"""GELU activation, exact (erf) or with the tanh approximation.

Shapes: ``x (...)`` -> ``out (...)``, elementwise.

Forward, exact (``approximate="none"``), with :math:`\Phi` the standard normal CDF:

.. math::  y = x\,\Phi(x) = \tfrac12 x\left(1 + \operatorname{erf}(x/\sqrt2)\right)

Backward, with :math:`\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}`:

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\left(\Phi(x) + x\,\varphi(x)\right)

Forward, tanh approximation (``approximate="tanh"``), :math:`c = \sqrt{2/\pi}`:

.. math::  u = c\,(x + 0.044715\,x^3), \qquad y = \tfrac12 x\,(1 + \tanh u)

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\left(\tfrac12(1 + \tanh u)
           + \tfrac12 x\,(1 - \tanh^2 u)\,c\,(1 + 3\cdot 0.044715\,x^2)\right)
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import erf

from refvit._validate import check_array, check_choice, check_grad
from refvit.ops import _dispatch as dispatch

OP = "gelu"
DIFFERENTIABLE = ("x",)
TANH_COEFF = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
SQRT_2 = math.sqrt(2.0)
SQRT_2PI = math.sqrt(2.0 * math.pi)


class Cache(NamedTuple):
    x: np.ndarray
    approximate: str
    backend: str


def forward(x, approximate="none", backend=None):
    """``gelu(x)`` -> ``(out, cache)``; see the module docstring for the math."""
    backend = dispatch.resolve(OP, backend)
    x = check_array(OP, "x", x, backend)
    check_choice(OP, "approximate", approximate, ("none", "tanh"))
    out = dispatch.run(OP, backend, "forward", _forward_numpy, (x, approximate),
                       kernel_args=(x, approximate == "tanh"))
    return out, Cache(x, approximate, backend)


def backward(dout, cache):
    """``dout (...)`` -> ``(dx,)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.x)
    return (dispatch.run(OP, cache.backend, "backward", _backward_numpy, (dout, cache.x, cache.approximate),
                         kernel_args=(dout, cache.x, cache.approximate == "tanh")),)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)) * 2.0,), {"approximate": "none"}


def _forward_numpy(x, approximate):
    if approximate == "tanh":
        u = SQRT_2_OVER_PI * (x + TANH_COEFF * x**3)
        return 0.5 * x * (1.0 + np.tanh(u))
    return 0.5 * x * (1.0 + erf(x / SQRT_2))


def _backward_numpy(dout, x, approximate):
    if approximate == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (x + TANH_COEFF * x**3))
        du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_COEFF * x**2)
        return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
    cdf = 0.5 * (1.0 + erf(x / SQRT_2))
    pdf = np.exp(-0.5 * x * x) / SQRT_2PI
    return dout * (cdf + x * pdf)
