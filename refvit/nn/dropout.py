r"""``Dropout`` and ``DropPath`` (stochastic depth): random in training, the identity in evaluation.

Both multiply by a random mask through ``ops.mul``, so the gradient is the same mask
times ``dout``. Masks come from :mod:`refvit.nn.random` (seeded, resumable).

* Dropout: :math:`y = x \cdot m / (1 - p)`, :math:`m_i \sim \text{Bernoulli}(1 - p)` per element.
* DropPath: :math:`y_b = x_b \cdot m_b / (1 - p)`, one :math:`m_b` per sample (first axis).
"""
from __future__ import annotations

import numpy as np

from refvit import functional as F
from refvit._validate import check_probability
from refvit.nn import random
from refvit.nn.module import Module


def _check_probability(where, name, p):
    return check_probability(where, name, p)


def _keep_mask(shape, keep, dtype, scale):
    mask = (random.generator().random(shape) < keep).astype(dtype)
    if scale and keep > 0.0:
        mask *= 1.0 / keep
    return mask


def dropout(x, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    p = _check_probability("dropout", "p", p)
    if not training or p == 0.0:
        return x
    return F.mul(x, _keep_mask(np.shape(getattr(x, "data", x)), 1.0 - p, _dtype(x), True))


def drop_path(x, drop_prob=0.0, training=False, scale_by_keep=True):
    """Zero whole samples (index 0 of ``x``) with probability ``drop_prob``; scale the kept ones."""
    drop_prob = _check_probability("drop_path", "drop_prob", drop_prob)
    if not training or drop_prob == 0.0:
        return x
    shape = np.shape(getattr(x, "data", x))
    mask_shape = (shape[0],) + (1,) * (len(shape) - 1)
    return F.mul(x, _keep_mask(mask_shape, 1.0 - drop_prob, _dtype(x), scale_by_keep))


def _dtype(x):
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        self.p = _check_probability("Dropout", "p", p)

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class DropPath(Module):
    """Stochastic depth per sample, as timm's ``DropPath``."""

    def __init__(self, drop_prob=0.0, scale_by_keep=True):
        super().__init__()
        self.drop_prob = _check_probability("DropPath", "drop_prob", drop_prob)
        self.scale_by_keep = scale_by_keep

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self):
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"
