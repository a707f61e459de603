"""What a conformance check returns: a :class:`Report` of :class:`Failure` records.

Every failure names its case, the outputs or gradients that differ (:class:`Mismatch`: the largest
error and its index, in the user's layout), and carries a reproducer: a few lines that load the
case's inputs and expected values from ``<case>.npz`` (written by :meth:`Failure.save`) and call
the user's function with NumPy (and torch, for a torch function) only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np


class ConformanceError(AssertionError):
    """A failing report under ``strict=True``; ``error.report`` is the :class:`Report`."""

    def __init__(self, report):
        super().__init__(str(report))
        self.report = report


@dataclass(frozen=True)
class Mismatch:
    """One output (``"out"``) or gradient (``"grad query"``) that differs beyond its tolerance; ``index``
    is in the user's layout. ``max_error`` is ``inf`` for a NaN or infinity where a number was expected."""

    what: str
    max_error: float
    index: tuple
    actual: float
    expected: float
    bad: int
    size: int
    rtol: float
    atol: float

    def __str__(self):
        return (f"{self.what}: {self.bad} of {self.size} differ; largest error {self.max_error:.3g} at "
                f"{self.index} (got {self.actual:.6g}, expected {self.expected:.6g}; "
                f"rtol {self.rtol:g}, atol {self.atol:g})")


@dataclass
class Failure:
    """A failing case: ``mismatches`` (one per differing output or gradient), or ``error`` (the
    exception the call raised, or a wrong shape). ``reproducer`` is Python source; ``arrays`` are the
    inputs and expected values it loads, which :meth:`save` writes next to it."""

    case: object
    mismatches: list = field(default_factory=list)
    error: str = None
    reproducer: str = ""
    arrays: dict = field(default_factory=dict, repr=False)

    @property
    def name(self):
        return self.case.name

    @property
    def what(self):
        """The names of the differing outputs and gradients (``["out", "grad rpb"]``), or ``["error"]``."""
        return ["error"] if self.error else [m.what for m in self.mismatches]

    def save(self, folder):
        """Write ``<case>.npz`` and ``<case>.py`` into ``folder``; return the path of the script."""
        os.makedirs(folder, exist_ok=True)
        np.savez(os.path.join(folder, f"{self.case.name}.npz"), **self.arrays)
        script = os.path.join(folder, f"{self.case.name}.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(self.reproducer)
        return script

    def __str__(self):
        lines = [f"{self.case.name} ({self.case.describe()})"]
        lines += [f"  {self.error}"] if self.error else [f"  {m}" for m in self.mismatches]
        return "\n".join(lines)


@dataclass
class Report:
    """``passed``; ``failures``; ``results`` (case name -> ``"ok"`` or the failing outputs); ``str()`` a table."""

    op: str
    layout: str
    framework: str
    backward: bool
    results: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    random_examples: int = 0

    @property
    def passed(self):
        return not self.failures

    def failure(self, name):
        """The failure of the case ``name`` (``KeyError`` when it passed or did not run)."""
        for failure in self.failures:
            if failure.case.name == name:
                return failure
        raise KeyError(name)

    def save_reproducers(self, folder):
        """Write every failure's reproducer and arrays into ``folder``; return the script paths."""
        return [failure.save(folder) for failure in self.failures]

    def summary(self):
        steps = "forward and backward" if self.backward else "forward only"
        ran = len(self.results)
        random = f", {self.random_examples} random cases drawn" if self.random_examples else ""
        verdict = "PASS" if self.passed else f"FAIL: {len(self.failures)} failing case(s)"
        return (f"{self.op} (layout {self.layout}, {self.framework}, {steps}): {ran} cases{random}; {verdict}")

    def table(self):
        rows = [("case", "dtype", "result", "largest error", "at index")]
        failures = {failure.case.name: failure for failure in self.failures}
        for name, case in self.results.items():
            failure = failures.get(name)
            if failure is None:
                rows.append((name, case.dtype, "ok", "", ""))
            elif failure.error:
                rows.append((name, case.dtype, "error", _clip(failure.error, 60), ""))
            else:
                for i, m in enumerate(failure.mismatches):
                    rows.append((name if i == 0 else "", case.dtype if i == 0 else "", f"FAIL {m.what}",
                                 f"{m.max_error:.3g}", str(m.index)))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join(("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4])
                         .rstrip() for row in rows)

    def __str__(self):
        parts = [self.summary(), self.table().rstrip()]
        if self.failures:
            parts.append("failing cases:")
            parts += [str(failure) for failure in self.failures]
        return "\n".join(parts)


def _clip(text, width):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."
