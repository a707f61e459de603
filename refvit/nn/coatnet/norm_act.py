"""``BatchNormAct2d``: BatchNorm followed by an activation, one module (timm's norm-act layer).

The activation is a child module without parameters, so the ``state_dict`` keys are those
of a plain ``BatchNorm2d``: ``weight, bias, running_mean, running_var, num_batches_tracked``.
"""
from __future__ import annotations

from refvit.nn.activation import GELU
from refvit.nn.linear import Identity
from refvit.nn.norm import BatchNorm2d


class BatchNormAct2d(BatchNorm2d):
    """``act(batch_norm(x))`` on ``x (B, H, W, C)``; ``apply_act=False`` leaves out the activation.

    ``act_layer`` is a module class (default ``GELU``, exact). BatchNorm statistics follow
    PyTorch (see :class:`refvit.nn.BatchNorm2d`).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, apply_act=True, act_layer=GELU, dtype=None):
        super().__init__(num_features, eps=eps, momentum=momentum, dtype=dtype)
        self.drop = Identity()
        self.act = act_layer() if apply_act else Identity()

    def forward(self, x):
        return self.act(self.drop(super().forward(x)))
