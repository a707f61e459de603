"""Test helpers shared by the broadcasting ops (add, mul)."""
import numpy as np
from hypothesis.extra.numpy import mutually_broadcastable_shapes


def shape_pairs():
    """Two shapes that broadcast together (0-d to 4-D, sides up to 4)."""
    return mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4)


def scatter_sum(values, shape):
    """Sum ``values`` into an array of ``shape``: each position adds to the element it was broadcast from."""
    source = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), values.shape)
    return np.bincount(source.ravel(), weights=values.ravel(), minlength=int(np.prod(shape))).reshape(shape)
