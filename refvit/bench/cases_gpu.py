"""Benchmark cases sized for a GPU, run only when ``--filter`` names them (tag ``ON_REQUEST``).

``na2d 7x7 (8,4,56,56,32) rpb``: DiNAT-Mini's first level at 224x224 for a batch of 8 (the
``cases_dinat`` case is one image). Its PyTorch side is the same dense masked attention through
``scaled_dot_product_attention`` (:func:`refvit.bench.cases_dinat._na2d_torch`): 8 x 4 maps of
3136 x 3136 logits, about 1.3 GB in float32, which is what ``refvit bench --torch-device cuda``
compares the ``cuda`` kernels with (``.ci/gpu_check``). The ``numpy`` reference is left out (it would
take minutes at this size); the ``cpu`` kernels stay for scale.
"""
from __future__ import annotations

import numpy as np

from refvit.bench import ON_REQUEST, BenchCase
from refvit.bench.cases_dinat import KERNEL, _flops, _na2d_torch

SHAPE = (8, 4, 56, 56, 32)


def _na2d_inputs(rng, dtype):
    q, k, v = (rng.standard_normal(SHAPE).astype(dtype) for _ in range(3))
    rpb = (0.02 * rng.standard_normal((SHAPE[1], 2 * KERNEL - 1, 2 * KERNEL - 1))).astype(dtype)
    return (q, k, v, KERNEL), {"rpb": rpb}


CASES = [
    BenchCase(f"na2d {KERNEL}x{KERNEL} (8,4,56,56,32) rpb", "na2d", _na2d_inputs, _na2d_torch, _flops,
              backends=("cpu", "cuda"), tags=(ON_REQUEST,)),
]
