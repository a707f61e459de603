"""Cross-entropy on the CPU: one ``prange`` iteration per row writes that row's probabilities
and loss (float64); the row losses are then averaged in a fixed order. The backward pass is one
``prange`` iteration per row of ``dout / B * (p - q)``.
"""
import math

import numpy as np
from numba import njit, prange



@njit(cache=True, parallel=True)
def _row_losses(logits, target, label_smoothing, probs, row_loss):
    batch, classes = logits.shape
    for row in prange(batch):
        row_max = -np.inf
        for k in range(classes):
            row_max = max(row_max, logits[row, k])
        total = 0.0
        for k in range(classes):
            total += math.exp(logits[row, k] - row_max)
        log_total = math.log(total)
        sum_log_probs = 0.0
        for k in range(classes):
            log_prob = logits[row, k] - row_max - log_total
            probs[row, k] = math.exp(log_prob)
            sum_log_probs += log_prob
        loss = -(1.0 - label_smoothing) * (logits[row, target[row]] - row_max - log_total)
        if label_smoothing > 0.0:
            loss -= label_smoothing * sum_log_probs / classes
        row_loss[row] = loss


@njit(cache=True, parallel=True)
def _backward(dout, probs, target, label_smoothing, dlogits):
    batch, classes = probs.shape
    scale = dout / batch
    off_target = label_smoothing / classes
    for row in prange(batch):
        for k in range(classes):
            q = off_target + (1.0 - label_smoothing if k == target[row] else 0.0)
            dlogits[row, k] = scale * (probs[row, k] - q)


def forward(logits, target, label_smoothing):
    """-> ``(loss (), probs (B, K))``."""
    logits = np.ascontiguousarray(logits)
    probs = np.empty_like(logits)
    row_loss = np.empty(logits.shape[0])
    _row_losses(logits, target, label_smoothing, probs, row_loss)
    return np.asarray(row_loss.sum() / logits.shape[0], dtype=logits.dtype), probs


def backward(dout, probs, target, label_smoothing):
    dlogits = np.empty_like(probs)
    _backward(float(dout), probs, target, label_smoothing, dlogits)
    return dlogits
