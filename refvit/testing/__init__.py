"""Tools for checking gradients, backends and other frameworks against refvit.

* :func:`gradcheck`: float64 central differences against a random upstream gradient.
* :func:`check_vjp`: the dot-product test, ``<g, J v> == <J^T g, v>``, cheap enough
  for Hypothesis-sized inputs.
* :mod:`refvit.testing.noise`: what a central difference can resolve; both checks accept
  a mismatch below this noise floor (truncation and rounding) and fail above it.
* :func:`check_backends`: one op on two backends, forward and backward.
* :func:`check_module_gradients`: ``Tensor.backward`` through a whole module at probed entries.
* :func:`assert_close`: an ``allclose`` that says where and by how much.
* :mod:`refvit.testing.strategies`: Hypothesis strategies for shapes, seeds and layouts.
* :mod:`refvit.testing.conformance`: check anyone's implementation of an op family (``check_na2d``,
  ``check_conv2d``, ...) against refvit, case by case, with a reproducer per failing case.
"""
from refvit.testing.compare import assert_close, to_numpy
from refvit.testing.conformance import ConformanceError
from refvit.testing.modules import check_module_gradients
from refvit.testing.gradients import (
    GradcheckError,
    bind_inputs,
    check_backends,
    check_vjp,
    gradcheck,
    numerical_vjp,
    relative_error,
)

__all__ = [
    "ConformanceError",
    "GradcheckError",
    "assert_close",
    "bind_inputs",
    "check_backends",
    "check_module_gradients",
    "check_vjp",
    "gradcheck",
    "numerical_vjp",
    "relative_error",
    "to_numpy",
]
