r"""Gradient checks through whole modules: a few probed entries, not every element.

A model has far too many parameters for central differences on all of them, so
:func:`check_module_gradients` probes chosen entries (of the input or of any parameter):
each analytic entry of :math:`J^T g` from ``Tensor.backward`` is compared with
:math:`(\langle g, f(x + \epsilon e_i)\rangle - \langle g, f(x - \epsilon e_i)\rangle) / 2\epsilon`.
Use float64 models (``create_model(..., dtype=np.float64)``) and ``eval()`` (or no dropout).
"""
from __future__ import annotations

import numpy as np

from refvit.testing.gradients import GradcheckError, numerical_vjp, relative_error


def check_module_gradients(module, inputs, probes, upstream, *, eps=1e-6, tol=1e-6):
    """Check ``Tensor.backward`` through ``module(inputs)`` at chosen entries.

    ``inputs``: the input array; ``probes``: ``[(name, index), ...]`` where ``name`` is
    ``"input"`` or a key of ``module.named_parameters()`` and ``index`` an element index;
    ``upstream``: the gradient of the output. Returns ``(analytic, numeric)`` lists and raises
    :class:`GradcheckError` when their relative error exceeds ``tol``.
    """
    from refvit.autograd import Tensor, no_grad

    x = Tensor(np.array(inputs, copy=True), requires_grad=True)
    for parameter in module.parameters():
        parameter.grad = None
    module(x).backward(upstream)
    params = dict(module.named_parameters())
    analytic, numeric = [], []
    for name, index in probes:
        tensor = x if name == "input" else params[name]

        def output_at(value, tensor=tensor, index=index):
            saved = tensor.data[index]
            tensor.data[index] = value[0]
            with no_grad():
                out = module(x.data).data
            tensor.data[index] = saved
            return out

        analytic.append(float(tensor.grad[index]))
        numeric.append(float(numerical_vjp(output_at, [np.array([tensor.data[index]])], upstream, eps=eps)[0][0]))
    error = relative_error(analytic, numeric)
    if not error < tol:
        worst = int(np.argmax(np.abs(np.subtract(analytic, numeric))))
        raise GradcheckError(
            f"{type(module).__name__}: probed gradients have relative error {error:.3e} > {tol:g}; worst probe "
            f"{probes[worst]}: analytic {analytic[worst]!r}, numeric {numeric[worst]!r}")
    return analytic, numeric
