"""Hypothesis strategies for refvit tests (and users' own).

The rule: draw shapes and a seed, not every element. Arrays are then made from
the seed, which keeps shrinking fast and examples reproducible::

    @given(shape=shapes(min_dims=2, max_dims=4), seed=seeds())
    def test_something(shape, seed):
        x = random_array(shape, seed)

``layouts()`` draws how an array is laid out in memory (C order, Fortran order,
a strided view, a negative-stride view) so kernels are also fed non-contiguous
inputs; ``LAYOUTS`` names them all, for tests that go through every one.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

FLOAT_DTYPES = (np.float32, np.float64)


def seeds():
    return st.integers(min_value=0, max_value=2**32 - 1)


def dims(min_value=1, max_value=6):
    return st.integers(min_value=min_value, max_value=max_value)


def shapes(min_dims=1, max_dims=4, min_side=1, max_side=6):
    return st.lists(dims(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def dtypes():
    return st.sampled_from(FLOAT_DTYPES)


LAYOUTS = ("C", "F", "strided", "reversed")


def layouts():
    return st.sampled_from(LAYOUTS)


def random_array(shape, seed, dtype=np.float64, scale=1.0, layout="C"):
    """Standard normal values times ``scale`` with the given memory ``layout``."""
    rng = np.random.default_rng(seed)
    values = (scale * rng.standard_normal(shape)).astype(dtype)
    return with_layout(values, layout)


def with_layout(a, layout):
    """The same values as ``a`` laid out as ``"C"``, ``"F"``, ``"strided"`` or ``"reversed"``."""
    if np.ndim(a) == 0:  # one element has one layout; keep it a 0-d array
        return np.array(a)
    if layout == "C":
        return np.asarray(a, order="C")
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        flipped = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in a.shape)]
    raise ValueError(f"with_layout: 'layout' must be 'C', 'F', 'strided' or 'reversed'; got {layout!r}")


def with_layouts(value, layout):
    """:func:`with_layout` applied to an array, or to each array of a tuple or list of arrays
    (``None`` items kept); any other value (an int, a tuple of ints, ``None``) is returned as it is."""
    if isinstance(value, np.ndarray):
        return with_layout(value, layout)
    if isinstance(value, (tuple, list)) and any(isinstance(a, np.ndarray) for a in value):
        return type(value)(None if a is None else with_layout(a, layout) for a in value)
    return value


@st.composite
def feature_maps(draw, max_batch=2, max_side=6, max_channels=6, channel_multiple=1):
    """Shapes ``(B, H, W, C)`` with ``C`` a multiple of ``channel_multiple``."""
    batch = draw(dims(1, max_batch))
    height = draw(dims(1, max_side))
    width = draw(dims(1, max_side))
    channels = channel_multiple * draw(dims(1, max(1, max_channels // channel_multiple)))
    return (batch, height, width, channels)
