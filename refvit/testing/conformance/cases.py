"""Cases and families: what one conformance check runs.

A :class:`Case` is one call: a name, the op's options (``params``), a dtype and a seed from which
every input is drawn. A :class:`Family` says how to build the inputs of a case, how refvit computes
the expected values (the ``numpy`` backend of :mod:`refvit.ops`), and how a user's function is
called in each supported layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# (rtol, atol) by dtype: float64 allows a different summation order, float32 a float32 accumulation.
TOLERANCES = {"float64": (1e-7, 1e-9), "float32": (1e-4, 2e-5)}


@dataclass(frozen=True)
class Case:
    """One call of the op. ``features`` names what the case exercises (``"rpb"``, ``"stride"``,
    ``"causal"``, ...): ``exclude=`` drops every case with one of them."""

    name: str
    params: dict = field(compare=False)
    dtype: str = "float64"
    seed: int = 0
    features: frozenset = frozenset()

    def describe(self):
        options = " ".join(f"{key}={_short(value)}" for key, value in self.params.items())
        return f"{options} {self.dtype} seed={self.seed}"


def case(name, dtype="float64", seed=0, features=(), **params):
    """Shorthand for the catalogues: ``case("k1", shape=(4, 4), kernel_size=1)``."""
    return Case(name, params, dtype, seed, frozenset(features))


@dataclass(frozen=True)
class Layout:
    """How a user's function sees the inputs: the name of each input (``names``: refvit name ->
    user name) and the axis order of each array (``axes``: refvit name -> permutation taking the
    refvit array to the user's; ``"out"`` for the output). Names and arrays left out are as in refvit."""

    names: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)

    def user_name(self, name):
        base, _, rest = name.partition("[")
        return self.names.get(base, base) + (f"[{rest}" if rest else "")

    def permutation(self, name):
        return self.axes.get(name.partition("[")[0])


@dataclass(frozen=True)
class Family:
    """One op family. ``inputs(case) -> {refvit name: array}`` (in ``case.dtype``); ``reference(inputs,
    params) -> (out, backward, changed)`` with ``backward(dout) -> {name: gradient}`` and ``changed``
    the expected values of the inputs the call updates in place (``{}`` for most ops); ``arguments(inputs, params,
    layout_name) -> (args, kwargs)`` builds the user's call from the user-layout inputs (keyed by refvit
    name); ``differentiable(case)`` the names that get gradients; ``strategy()`` a Hypothesis strategy of
    cases."""

    op: str
    catalogue: tuple
    layouts: dict
    inputs: Callable
    reference: Callable
    arguments: Callable
    differentiable: Callable
    strategy: Callable


def composite(draw_case):
    """``draw_case(draw, st) -> Case`` as a zero-argument function returning a Hypothesis strategy;
    Hypothesis is imported only when random cases are drawn."""
    def strategy():
        from hypothesis import strategies as st

        return st.composite(lambda draw: draw_case(draw, st))()
    return strategy


def random_inputs(seed, dtype, shapes):
    """``{name: standard normal array}`` drawn in the order of ``shapes`` (a dict name -> shape)."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def upstream_gradient(seed, shape, dtype):
    """The ``dout`` of a case: standard normal from ``seed + 1``."""
    return np.random.default_rng(seed + 1).standard_normal(shape).astype(dtype)


def _short(value):
    return repr(value) if isinstance(value, str) else f"{value}".replace(" ", "")
