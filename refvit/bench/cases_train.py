"""Benchmark cases for whole training steps of the ``*_nano`` models (batch 64 of 32x32 images).

Each row's forward is the model and its loss, its forward+backward one whole training step
(backward through the tape and an AdamW step, see :mod:`refvit.bench._train_step`), so its
``vs numpy`` column is the training-throughput ratio of the backend over the NumPy reference.
Images are random (the timing does not depend on them), labels drawn from 10 classes.
"""
from __future__ import annotations

from refvit.bench import BenchCase, _train_step
from refvit.models import list_models

BATCH = 64
SIZE = 32


def _step_inputs(model):
    def make(rng, dtype):
        images = rng.standard_normal((BATCH, SIZE, SIZE, 3)).astype(dtype)
        return (images, rng.integers(0, 10, BATCH), model), {}

    return make


CASES = [BenchCase(f"train step {name} ({BATCH},{SIZE},{SIZE},3)", _train_step, _step_inputs(name),
                   backends=("numpy", "cpu"), tags=("train",))
         for name in list_models() if name.endswith("_nano")]
