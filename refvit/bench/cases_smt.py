"""Benchmark cases for SMT's ``multiscale_dwconv`` at the shapes of SMT-T at 224x224.

Stage 1 (56x56 map, C = 64) and stage 2 (28x28, C = 128), 4 heads each, so kernels 3, 5, 7
and 9 on C/4 channels apiece. The PyTorch equivalent runs one depthwise ``conv2d`` per head
(``groups = C/4``) on its slice of the channels and concatenates the results, which is how the
official code computes it (``local_conv_1 ... local_conv_4``).
"""
from __future__ import annotations

import numpy as np

from refvit.bench import BenchCase
from refvit.ops.multiscale_dwconv import kernel_size


def _mixed_conv_inputs(batch, size, channels, heads):
    def make(rng, dtype):
        per_head = channels // heads
        x = rng.standard_normal((batch, size, size, channels)).astype(dtype)
        weights = tuple((0.1 * rng.standard_normal((per_head, 1, kernel_size(i), kernel_size(i)))).astype(dtype)
                        for i in range(heads))
        biases = tuple((0.1 * rng.standard_normal(per_head)).astype(dtype) for _ in range(heads))
        return (x, weights, biases, heads), {}

    return make


def _mixed_conv_torch(args, kwargs):
    import torch
    import torch.nn.functional as F

    x, weights, biases, heads = args
    per_head = x.shape[3] // heads

    def leaf(a):
        return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True)

    x = leaf(x.transpose(0, 3, 1, 2))
    weights, biases = [leaf(w) for w in weights], [leaf(b) for b in biases]

    def run():
        pieces = [F.conv2d(x[:, i * per_head:(i + 1) * per_head], weights[i], biases[i], padding=1 + i,
                           groups=per_head) for i in range(heads)]
        return torch.cat(pieces, dim=1)

    return run


def _flops(args, kwargs):
    x, weights, _, _ = args
    pixels = x.shape[0] * x.shape[1] * x.shape[2]
    return 2.0 * pixels * sum(w.shape[0] * w.shape[2] * w.shape[3] for w in weights)


CASES = [
    BenchCase("multiscale_dwconv SMT-T s1 (1,56,56,64) h4", "multiscale_dwconv",
              _mixed_conv_inputs(1, 56, 64, 4), _mixed_conv_torch, flops=_flops, tags=("smt",)),
    BenchCase("multiscale_dwconv SMT-T s2 (1,28,28,128) h4", "multiscale_dwconv",
              _mixed_conv_inputs(1, 28, 128, 4), _mixed_conv_torch, flops=_flops, tags=("smt",)),
]
