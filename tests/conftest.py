"""Shared fixtures: backends, dtypes, tolerances and Hypothesis profiles.

* ``kernel_backend``: ``"cpu"`` and ``"cuda"`` (the latter marked ``cuda``; it runs on a
  GPU or under ``NUMBA_ENABLE_CUDASIM=1`` and is skipped otherwise).
* ``dtype``: float32 and float64. ``tolerance(dtype)`` gives rtol/atol for backend comparisons.
* Hypothesis profiles: ``ci`` (default, few examples), ``thorough`` (``HYPOTHESIS_PROFILE=thorough``).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import refvit

settings.register_profile(
    "ci", max_examples=8, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOLERANCES = {
    np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
    np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11),
}


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype)]


def pytest_collection_modifyitems(config, items):
    if refvit.cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def kernel_backend(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
