"""Benchmark cases for the core ops, at the shapes of a 224x224 backbone's first stage."""
from __future__ import annotations

import numpy as np

from refvit.bench import BenchCase


def _normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _torch(*arrays, grad=True):
    import torch

    return [torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(grad) for a in arrays]


def _gelu_torch(args, kwargs):
    import torch.nn.functional as F

    (x,) = _torch(args[0])
    return lambda: F.gelu(x)


def _layer_norm_torch(args, kwargs):
    import torch.nn.functional as F

    x, w, b = _torch(*args)
    return lambda: F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


def _softmax_torch(args, kwargs):
    (x,) = _torch(args[0])
    return lambda: x.softmax(-1)


def _linear_torch(args, kwargs):
    import torch.nn.functional as F

    x, w, b = _torch(*args)
    return lambda: F.linear(x, w, b)


def _conv_torch(args, kwargs):
    import torch.nn.functional as F

    x, w = _torch(args[0].transpose(0, 3, 1, 2), args[1])
    return lambda: F.conv2d(x, w, None, kwargs.get("stride", 1), kwargs.get("padding", 0), 1, kwargs.get("groups", 1))


def _attention_torch(args, kwargs):
    import torch.nn.functional as F

    q, k, v = _torch(*args)
    return lambda: F.scaled_dot_product_attention(q, k, v)


def _pool_torch(kind):
    def build(args, kwargs):
        import torch.nn.functional as F

        (x,) = _torch(args[0].transpose(0, 3, 1, 2))
        pool = F.max_pool2d if kind == "max" else F.avg_pool2d
        return lambda: pool(x, kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0))

    return build


FEATURES = (8, 56, 56, 64)

CASES = [
    BenchCase("gelu (8,56,56,64)", "gelu", lambda rng, dt: ((_normal(rng, FEATURES, dt),), {}), _gelu_torch),
    BenchCase(
        "layer_norm (8,3136,64)", "layer_norm",
        lambda rng, dt: ((_normal(rng, (8, 3136, 64), dt), _normal(rng, (64,), dt), _normal(rng, (64,), dt)), {}),
        _layer_norm_torch,
    ),
    BenchCase("softmax (8,4,196,196)", "softmax", lambda rng, dt: ((_normal(rng, (8, 4, 196, 196), dt),), {}),
              _softmax_torch),
    BenchCase(
        "linear (8,3136,64)->192", "linear",
        lambda rng, dt: ((_normal(rng, (8, 3136, 64), dt), _normal(rng, (192, 64), dt, 0.1),
                          _normal(rng, (192,), dt)), {}),
        _linear_torch,
        flops=lambda a, k: 2.0 * a[0].size * a[1].shape[0],
    ),
    BenchCase(
        "conv2d depthwise 7x7 (8,56,56,64)", "conv2d",
        lambda rng, dt: ((_normal(rng, FEATURES, dt), _normal(rng, (64, 1, 7, 7), dt, 0.1)),
                         {"padding": 3, "groups": 64}),
        _conv_torch,
        flops=lambda a, k: 2.0 * a[0].size * 49,
    ),
    BenchCase(
        "conv2d dense 3x3 (8,56,56,64)->64", "conv2d",
        lambda rng, dt: ((_normal(rng, FEATURES, dt), _normal(rng, (64, 64, 3, 3), dt, 0.05)), {"padding": 1}),
        _conv_torch,
        flops=lambda a, k: 2.0 * a[0].size * 64 * 9,
    ),
    BenchCase(
        "attention (8,4,196,32)", "attention",
        lambda rng, dt: (tuple(_normal(rng, (8, 4, 196, 32), dt) for _ in range(3)), {}),
        _attention_torch,
        flops=lambda a, k: 4.0 * a[0].shape[0] * a[0].shape[1] * a[0].shape[2] * a[1].shape[2] * a[0].shape[3],
    ),
    BenchCase("max_pool2d 3x3/2 (8,56,56,64)", "max_pool2d",
              lambda rng, dt: ((_normal(rng, FEATURES, dt),), {"kernel_size": 3, "stride": 2, "padding": 1}),
              _pool_torch("max")),
    BenchCase("avg_pool2d 2x2/2 (8,56,56,64)", "avg_pool2d",
              lambda rng, dt: ((_normal(rng, FEATURES, dt),), {"kernel_size": 2, "stride": 2}),
              _pool_torch("avg")),
]
