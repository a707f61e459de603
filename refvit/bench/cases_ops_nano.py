"""Benchmark cases for gelu, layer_norm, linear and linear_gelu at the shapes the ``*_nano`` models run them.

Batch 64 of 32x32 images, as in the ``train step`` rows and ``refvit bench --profile``: the first
stages of coatnet_nano and dinat_nano (16x16 and 8x8 maps of 32 channels, their MLPs' 96 hidden
channels) and a late stage (4x4 maps of 256 channels); linear_gelu at the first MLP layer of nat_nano and
dinat_nano (what ``nn.Mlp`` runs there). Each case has its PyTorch equivalent.
They are small and many, so they are tagged :data:`refvit.bench.ON_REQUEST`: a run without
``--filter`` leaves them out, ``--filter "nano op"`` runs them all.
"""
from __future__ import annotations

from refvit.bench import ON_REQUEST, BenchCase
from refvit.bench.cases_core import _gelu_torch, _layer_norm_torch, _linear_torch, _normal

PREFIX = "nano op"
GELU_SHAPES = ((64, 16, 16, 32), (64, 8, 8, 96), (64, 4, 4, 256))
LAYER_NORM_SHAPES = ((64, 8, 8, 32), (64, 16, 16, 32))
LINEAR_SHAPES = (((64, 8, 8, 32), 96), ((64, 8, 8, 96), 32))
LINEAR_GELU_SHAPES = (((64, 8, 8, 32), 96),)


def _shape(shape):
    return "(" + ",".join(str(n) for n in shape) + ")"


def _gelu_inputs(shape):
    return lambda rng, dt: ((_normal(rng, shape, dt),), {})


def _layer_norm_inputs(shape):
    return lambda rng, dt: ((_normal(rng, shape, dt), _normal(rng, shape[-1:], dt), _normal(rng, shape[-1:], dt)), {})


def _linear_inputs(shape, out_features):
    def make(rng, dt):
        scale = shape[-1] ** -0.5
        return (_normal(rng, shape, dt), _normal(rng, (out_features, shape[-1]), dt, scale),
                _normal(rng, (out_features,), dt)), {}

    return make


def _linear_gelu_torch(args, kwargs):
    import torch.nn.functional as F

    forward = _linear_torch(args, kwargs)
    return lambda: F.gelu(forward())


def _linear_flops(args, kwargs):
    return 2.0 * args[0].size * args[1].shape[0]


CASES = (
    [BenchCase(f"{PREFIX} gelu {_shape(s)}", "gelu", _gelu_inputs(s), _gelu_torch, tags=(ON_REQUEST,))
     for s in GELU_SHAPES]
    + [BenchCase(f"{PREFIX} layer_norm {_shape(s)}", "layer_norm", _layer_norm_inputs(s), _layer_norm_torch,
                 tags=(ON_REQUEST,)) for s in LAYER_NORM_SHAPES]
    + [BenchCase(f"{PREFIX} linear {_shape(s)}->{n}", "linear", _linear_inputs(s, n), _linear_torch,
                 flops=_linear_flops, tags=(ON_REQUEST,)) for s, n in LINEAR_SHAPES]
    + [BenchCase(f"{PREFIX} linear_gelu {_shape(s)}->{n}", "linear_gelu", _linear_inputs(s, n), _linear_gelu_torch,
                 flops=_linear_flops, tags=(ON_REQUEST,)) for s, n in LINEAR_GELU_SHAPES]
)
