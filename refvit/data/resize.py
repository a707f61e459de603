r"""Bilinear resizing of channels-last images, as ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` without anti-aliasing.

Along one axis of length :math:`n` resized to :math:`m`, output pixel :math:`i` reads the
input at :math:`s = \max\bigl(0, (i + \tfrac12)\,\tfrac{n}{m} - \tfrac12\bigr)` and blends its
two neighbours :math:`\lfloor s\rfloor` and :math:`\min(\lfloor s\rfloor + 1, n - 1)` with
weights :math:`1 - (s - \lfloor s\rfloor)` and :math:`s - \lfloor s\rfloor`. Both axes do
this independently, so the resize is two small matrix products:
:math:`Y = R_h\, X\, R_w^\top` per image and channel.
"""
from __future__ import annotations

import numpy as np


def interpolation_matrix(in_size, out_size):
    """``(out_size, in_size)`` matrix whose row ``i`` holds the two bilinear weights of output ``i``."""
    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        source = max(0.0, (i + 0.5) * in_size / out_size - 0.5)
        low = min(int(np.floor(source)), in_size - 1)
        high = min(low + 1, in_size - 1)
        weight_high = source - low
        matrix[i, low] += 1.0 - weight_high
        matrix[i, high] += weight_high
    return matrix


def resize_bilinear(images, size):
    """``images (N, H, W, C)`` -> ``(N, size, size, C)`` (or ``size = (height, width)``), same dtype."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"resize_bilinear: 'images' must be a 4-D array (N, H, W, C); got shape {images.shape}")
    height, width = (size, size) if np.isscalar(size) else size
    rows = interpolation_matrix(images.shape[1], int(height))
    cols = interpolation_matrix(images.shape[2], int(width))
    out = np.einsum("oh,nhwc,pw->nopc", rows, images.astype(np.float64), cols, optimize=True)
    return out.astype(images.dtype if images.dtype.kind == "f" else np.float64)
