"""An op-like wrapper around one training step of a model, so ``refvit bench`` times whole steps.

``forward(images, labels, model, backend=None) -> (loss, cache)`` runs the named model (built once
per name and dtype, seeded, training mode) on the tape and the cross-entropy of its logits;
``backward(dout, cache) -> (None,)`` runs the tape's backward from the loss (scaled by ``dout``)
and one AdamW step (weight decay 0.05 on weights, none on norms, biases and tables), the rest of
a step of :func:`refvit.train.fit`. Timed "forward+backward" is therefore one whole training
step, and the ``vs numpy`` column of the table is the training-throughput ratio of a backend.
The images are constants (their gradient is ``None``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refvit import functional as F
from refvit.backend import resolve_backend, use_backend
from refvit.bench._seeded import built_once
from refvit.models import create_model
from refvit.optim import AdamW, param_groups_weight_decay

OP = "train_step"
DIFFERENTIABLE = ("images",)
_TRAINERS = {}


class Cache(NamedTuple):
    loss: object
    optimizer: AdamW
    backend: str


def trainer_for(model, dtype):
    """The (cached) seeded model and its optimizer for this name and dtype."""
    def build():
        network = create_model(model, dtype=dtype).train()
        return network, AdamW(param_groups_weight_decay(network, 0.05), lr=1e-4)

    return built_once(_TRAINERS, (model, np.dtype(dtype)), build)


def forward(images, labels, model, backend=None):
    """``images (B, H, W, 3)``, ``labels (B,)`` int -> the mean cross-entropy ``()`` and the cache."""
    backend = resolve_backend(backend, OP)
    network, optimizer = trainer_for(model, images.dtype)
    network.zero_grad()
    with use_backend(backend):
        loss = F.cross_entropy(network(images), labels)
    return loss.data, Cache(loss, optimizer, backend)


def backward(dout, cache):
    """The tape's backward from the loss and one optimizer step -> ``(None,)``."""
    with use_backend(cache.backend):
        cache.loss.backward(np.asarray(dout, cache.loss.data.dtype))
        cache.optimizer.step()
    return (None,)
