"""``LayerNorm`` (over the last axis) and ``BatchNorm2d`` (channels-last, PyTorch's statistics)."""
from __future__ import annotations

import numbers

import numpy as np

from refvit import functional as F
from refvit._validate import check_int, describe, fail
from refvit.nn.module import Module
from refvit.nn.parameter import Parameter, resolve_dtype


class LayerNorm(Module):
    """Normalise ``x (..., C)`` over its last axis, then ``* weight + bias`` (both ``(C,)``).

    ``normalized_shape`` is ``C`` or ``(C,)``; without ``elementwise_affine`` (or without
    ``bias``) the missing parameters act as ones (zeros) and are not registered.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (tuple, list)):
            if len(normalized_shape) != 1:
                raise ValueError(f"LayerNorm: 'normalized_shape' must be one size (the last axis); "
                                 f"got {tuple(normalized_shape)}")
            normalized_shape = normalized_shape[0]
        normalized_shape = (check_int("LayerNorm", "normalized_shape", normalized_shape, minimum=1),)
        eps = _check_eps("LayerNorm", eps)
        self.normalized_shape, self.eps, self.elementwise_affine = normalized_shape, float(eps), elementwise_affine
        dtype = resolve_dtype(dtype)
        if elementwise_affine:
            self.weight = Parameter(np.ones(normalized_shape, dtype))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = Parameter(np.zeros(normalized_shape, dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        dtype = _dtype_of(x)
        weight = np.ones(self.normalized_shape, dtype) if self.weight is None else self.weight
        bias = np.zeros(self.normalized_shape, dtype) if self.bias is None else self.bias
        return F.layer_norm(x, weight, bias, eps=self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps:g}, elementwise_affine={self.elementwise_affine}"


class BatchNorm2d(Module):
    """Batch normalisation of ``x (B, H, W, C)`` per channel, as PyTorch's ``BatchNorm2d``.

    Training: normalise with the batch mean and biased variance; ``running_mean`` and
    ``running_var`` (unbiased variance) move by ``momentum`` (``None``: cumulative average),
    ``num_batches_tracked`` counts the batches. Evaluation: normalise with the running
    statistics. Buffers ``running_mean (C,)``, ``running_var (C,)``, ``num_batches_tracked
    ()`` (int64) are in ``state_dict``.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        super().__init__()
        self.num_features = check_int("BatchNorm2d", "num_features", num_features, minimum=1)
        self.eps = _check_eps("BatchNorm2d", eps)
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
                                     or not 0.0 <= momentum <= 1.0):
            fail("BatchNorm2d", "momentum", "a number in [0, 1] or None", describe(momentum))
        self.momentum = momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = resolve_dtype(dtype)
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0.0
            self.running_var[...] = 1.0
            self.num_batches_tracked[...] = 0

    def forward(self, x):
        shape = getattr(x, "shape", np.shape(x))
        if len(shape) != 4:
            raise ValueError(f"BatchNorm2d: 'x' must be a 4-D (B, H, W, C) array; got shape {tuple(shape)}")
        dtype = _dtype_of(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked[...] += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or not self.track_running_stats
        if self.track_running_stats:
            running_mean, running_var = self.running_mean, self.running_var
        else:  # statistics of this batch only; the scratch arrays are dropped
            running_mean, running_var = np.zeros(self.num_features, dtype), np.ones(self.num_features, dtype)
        weight = np.ones(self.num_features, dtype) if self.weight is None else self.weight
        bias = np.zeros(self.num_features, dtype) if self.bias is None else self.bias
        return F.batch_norm(x, weight, bias, running_mean, running_var, use_batch_stats, momentum=float(momentum),
                            eps=self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


def _check_eps(owner, eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        fail(owner, "eps", "a finite number >= 0", describe(eps), TypeError)
    if not 0.0 <= eps < float("inf"):
        fail(owner, "eps", "a finite number >= 0", repr(eps))
    return float(eps)


def _dtype_of(x):
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
