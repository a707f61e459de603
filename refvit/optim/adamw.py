r"""Adam with decoupled weight decay, as ``torch.optim.AdamW``.

For a parameter :math:`\theta` with gradient :math:`g` at step :math:`t = 1, 2, \dots`,
learning rate :math:`\eta`, weight decay :math:`\lambda`, betas :math:`\beta_1, \beta_2`:

.. math::  \theta \leftarrow \theta\,(1 - \eta\lambda) \qquad\text{(decoupled decay, before the Adam step)}

.. math::  m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g^2

.. math::  \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\;
           \frac{m_t}{\sqrt{v_t}\,/\sqrt{1-\beta_2^t} + \epsilon}

:math:`m_0 = v_0 = 0`. Note that :math:`\epsilon` is added after the bias correction of
:math:`\sqrt{v_t}`, exactly as PyTorch does. The update of each parameter is one compiled pass
(:mod:`refvit.optim._adamw_kernel`), with the same results as the NumPy expressions to the last bit.
"""
from __future__ import annotations

import math

import numpy as np

from refvit.optim import _adamw_kernel
from refvit.optim.optimizer import Optimizer


class AdamW(Optimizer):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)``."""

    name = "AdamW"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check_hyperparameters(self, group):
        for key in ("lr", "eps", "weight_decay"):
            self._check_real(group, key)
        betas = group["betas"]
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"AdamW: 'betas' must be two numbers in [0, 1); got {betas!r}")
        group["betas"] = (float(betas[0]), float(betas[1]))

    def _update(self, parameter, grad, state, group):
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros(parameter.data.shape, parameter.data.dtype)
            state["exp_avg_sq"] = np.zeros(parameter.data.shape, parameter.data.dtype)
        state["step"] += 1
        step = state["step"]
        for key in ("exp_avg", "exp_avg_sq"):  # loaded state may come in another layout
            if not state[key].flags.c_contiguous:
                state[key] = np.ascontiguousarray(state[key])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        contiguous = parameter.data.flags.c_contiguous
        target = parameter.data if contiguous else np.ascontiguousarray(parameter.data)
        _adamw_kernel.update(target, grad, exp_avg, exp_avg_sq, (
            1.0 - lr * weight_decay, beta1, 1.0 - beta1, beta2, 1.0 - beta2,
            lr / (1.0 - beta1 ** step), math.sqrt(1.0 - beta2 ** step), eps))
        if not contiguous:
            parameter.data[...] = target
