r"""GELU of an affine map of the last axis, ``gelu(linear(x, weight, bias), approximate)`` in one op.

Shapes: ``x (..., in)``, ``weight (out, in)`` (PyTorch's layout), ``bias (out,)`` or None
-> ``y (..., out)``. Any number of leading (batch) axes, including none. ``approximate`` is GELU's:
``"none"`` (erf) or ``"tanh"``.

It is the first half of a transformer MLP (``fc1`` then GELU, :class:`refvit.nn.Mlp`), in one op call
instead of two (one check, dispatch and tape node fewer; on ``cpu`` GELU runs over the row blocks of
linear's kernels, with the bits of the two ops); the math is that of :mod:`refvit.ops.linear` and
:mod:`refvit.ops.gelu`, composed.

Forward, for each row :math:`x \in \mathbb{R}^{in}`, keeping the pre-activation :math:`h` for the backward:

.. math::  h = x W^\top + b,\qquad y = \operatorname{gelu}(h) = h\,\Phi(h)

(elementwise; :math:`\Phi` the standard normal CDF, or its tanh approximation, see :mod:`refvit.ops.gelu`).

Backward, with :math:`G = \partial L/\partial y` and the rows stacked into matrices
:math:`X (n, in)`, :math:`H, G (n, out)`: the chain rule through GELU, elementwise,

.. math::  \frac{\partial L}{\partial H} = G \odot \operatorname{gelu}'(H),\qquad
           \operatorname{gelu}'(h) = \Phi(h) + h\,\varphi(h)

(:math:`\varphi` the standard normal density; the tanh form's derivative is in :mod:`refvit.ops.gelu`),
then linear's backward with :math:`\partial L/\partial H` as its upstream gradient:

.. math::  \frac{\partial L}{\partial X} = \frac{\partial L}{\partial H} W,\qquad
           \frac{\partial L}{\partial W} = \Big(\frac{\partial L}{\partial H}\Big)^{\!\top} X,
           \qquad \frac{\partial L}{\partial b} = \sum_{\text{rows}} \frac{\partial L}{\partial H}

The gradient of ``bias`` is ``None`` when ``bias`` was ``None``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit._validate import check_choice, check_grad
from refvit.ops import _dispatch as dispatch
from refvit.ops import gelu, linear

OP = "linear_gelu"
DIFFERENTIABLE = ("x", "weight", "bias")


class Cache(NamedTuple):
    x: np.ndarray
    weight: np.ndarray
    pre_activation: np.ndarray  # h = x W^T + b, the input of GELU, shape (..., out)
    has_bias: bool
    approximate: str
    backend: str


def forward(x, weight, bias=None, approximate="none", backend=None):
    """``gelu(linear(x, weight, bias), approximate)`` -> ``(y, cache)``; see the module docstring for the math."""
    backend = dispatch.resolve(OP, backend)
    x, weight, bias = linear.check_arguments(OP, x, weight, bias, backend)
    check_choice(OP, "approximate", approximate, ("none", "tanh"))
    y, pre_activation = dispatch.run(OP, backend, "forward", _forward_numpy, (x, weight, bias, approximate),
                                     kernel_args=(x, weight, bias, approximate == "tanh"))
    return y, Cache(x, weight, pre_activation, bias is not None, approximate, backend)


def backward(dout, cache):
    """``dout (..., out)`` -> ``(dx (..., in), dweight (out, in), dbias (out,) or None)``."""
    dispatch.check_cache(OP, cache, Cache)
    dout = check_grad(OP, dout, cache.pre_activation)
    dx, dweight, dbias = dispatch.run(
        OP, cache.backend, "backward", _backward_numpy,
        (dout, cache.x, cache.weight, cache.pre_activation, cache.approximate),
        kernel_args=(dout, cache.x, cache.weight, cache.pre_activation, cache.approximate == "tanh"))
    return dx, dweight, (dbias if cache.has_bias else None)


def example(rng):
    """Small float64 inputs for ``refvit check``: ``(args, kwargs)``."""
    return (rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)), {}


def _forward_numpy(x, weight, bias, approximate):
    pre_activation = linear._forward_numpy(x, weight, bias)
    return gelu._forward_numpy(pre_activation, approximate), pre_activation


def _backward_numpy(dout, x, weight, pre_activation, approximate):
    dpre_activation = gelu._backward_numpy(dout, pre_activation, approximate)
    return linear._backward_numpy(dpre_activation, x, weight)
