r"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

For a parameter :math:`\theta` with gradient :math:`g`, learning rate :math:`\eta`, weight
decay :math:`\lambda`, momentum :math:`\mu`, dampening :math:`\tau`:

.. math::  d = g + \lambda\theta \qquad \text{(L2 decay, added to the gradient)}

.. math::  b_1 = d,\qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, d \quad (t > 1)

.. math::  \theta \leftarrow \theta - \eta\,(d + \mu\, b_t) \ \text{(Nesterov)}\quad\text{or}\quad
           \theta \leftarrow \theta - \eta\, b_t

With :math:`\mu = 0` there is no buffer and :math:`\theta \leftarrow \theta - \eta\, d`.
"""
from __future__ import annotations

import numpy as np

from refvit.optim.optimizer import Optimizer


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)``."""

    name = "SGD"

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=bool(nesterov))
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        for key in ("lr", "momentum", "dampening", "weight_decay"):
            self._check_real(group, key)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: 'nesterov' needs momentum > 0 and dampening 0; got momentum "
                             f"{group['momentum']!r}, dampening {group['dampening']!r}")

    def _update(self, parameter, grad, state, group):
        lr, momentum, weight_decay = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        direction = grad
        if weight_decay != 0.0:
            direction = grad + weight_decay * parameter.data
        if momentum != 0.0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = np.array(direction, copy=True)
                state["momentum_buffer"] = buffer
            else:
                buffer *= momentum
                buffer += (1.0 - float(group["dampening"])) * direction
            direction = direction + momentum * buffer if group["nesterov"] else buffer
        parameter.data -= lr * direction
