"""Cross-entropy on the GPU: one thread per row writes that row's probabilities and loss
(float64); a single thread then averages the row losses in a fixed order (the batch is small).
The backward pass is one thread per logit of ``dout / B * (p - q)``.
"""
import math

import numpy as np
from numba import cuda

from refvit.kernels.cuda._device import any_device, empty, grid_1d, to_device, to_host_unless


@cuda.jit
def _row_losses_kernel(logits, target, label_smoothing, probs, row_loss):
    batch, classes = logits.shape
    row = cuda.grid(1)
    if row < batch:
        row_max = -math.inf
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


@cuda.jit
def _mean_kernel(row_loss, out):
    if cuda.grid(1) == 0:
        total = 0.0
        for row in range(row_loss.size):
            total += row_loss[row]
        out[0] = total / row_loss.size


def forward(logits, target, label_smoothing):
    """-> ``(loss (), probs (B, K))``; ``loss`` is a device array iff ``logits`` was one."""
    on_device = any_device(logits)
    logits, target = to_device(logits, target)
    batch = logits.shape[0]
    probs = empty(logits.shape, logits.dtype)
    row_loss = empty((batch,), np.float64)
    _row_losses_kernel[grid_1d(batch)](logits, target, label_smoothing, probs, row_loss)
    loss = empty((1,), logits.dtype)
    _mean_kernel[1, 1](row_loss, loss)
    loss = to_host_unless(on_device, loss)
    return loss.reshape(()), probs


@cuda.jit
def _backward_kernel(dout, probs, target, label_smoothing, dlogits):
    batch, classes = probs.shape
    index = cuda.grid(1)
    if index < batch * classes:
        row = index // classes
        k = index - row * classes
        q = label_smoothing / classes
        if k == target[row]:
            q += 1.0 - label_smoothing
        dlogits[row, k] = dout[0] / batch * (probs[row, k] - q)


def backward(dout, probs, target, label_smoothing):
    on_device = any_device(dout)
    dout, target = to_device(dout, target)
    dlogits = empty(probs.shape, probs.dtype)
    _backward_kernel[grid_1d(probs.size)](dout.reshape(1), probs, target, label_smoothing, dlogits)
    return to_host_unless(on_device, dlogits)
