"""Check anyone's implementation of a refvit op against refvit: one ``check_*`` per op family.

    from refvit.testing.conformance import check_na2d
    report = check_na2d(my_na2d, layout="natten", framework="torch", cases="standard+random")
    print(report)               # a table: every case, the failing outputs and gradients
    report.failures[0].save("repro/")   # the case's inputs, expected values and a short script

The expected values come from refvit's ``numpy`` backend. See ``docs/testing.md``.
"""
from refvit.testing.conformance.cases import TOLERANCES, Case
from refvit.testing.conformance.na import check_na1d, check_na2d
from refvit.testing.conformance.report import ConformanceError, Failure, Mismatch, Report

__all__ = [
    "TOLERANCES",
    "Case",
    "ConformanceError",
    "Failure",
    "Mismatch",
    "Report",
    "check_na1d",
    "check_na2d",
]
