"""``refvit bench``: time ops on each backend, forward and forward+backward.

A benchmark case names an op, a function that builds its inputs, and optionally
the same computation in PyTorch (timed on the CPU when ``torch`` is installed).
Cases live in ``refvit/bench/cases_*.py`` modules, each exporting ``CASES``;
:func:`collect_cases` gathers them all. Whole models against their PyTorch ports are the
``vs torch`` rows of :mod:`refvit.bench.compare`.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Optional

ON_REQUEST = "on request"
"""A case tag: the case runs only when ``--filter`` selects it, never in a run without a filter."""


@dataclass
class BenchCase:
    """One row group of the table.

    ``op`` is the name of an op in :mod:`refvit.ops`, or any object with the op contract
    (``forward(..., backend=None) -> (out, cache)``, ``backward(dout, cache)``), e.g. a
    small wrapper that runs a whole module and its tape backward.
    ``make(rng, dtype) -> (args, kwargs)`` builds the op's inputs.
    ``torch_forward(args, kwargs) -> callable`` (optional) returns a function of no
    arguments that runs the same computation in PyTorch and returns the output
    tensor (inputs with ``requires_grad`` set, so backward can be timed too).
    ``flops(args, kwargs) -> float`` (optional) counts the forward's floating point
    operations, to report GFLOP/s.
    """

    name: str
    op: object
    make: Callable
    torch_forward: Optional[Callable] = None
    flops: Optional[Callable] = None
    backends: tuple = ("numpy", "cpu", "cuda")
    tags: tuple = field(default_factory=tuple)


def collect_cases():
    """All cases from ``refvit.bench.cases_*`` modules whose op exists, in module order."""
    from refvit.ops import list_ops

    available = set(list_ops())
    cases = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            cases.extend(c for c in module.CASES if not isinstance(c.op, str) or c.op in available)
    return cases
