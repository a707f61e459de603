"""Check anyone's implementation of a refvit op against refvit: one ``check_*`` per op family.

    from refvit.testing.conformance import check_na2d
    report = check_na2d(my_na2d, layout="natten", framework="torch", cases="standard+random")
    print(report)               # a table: every case, the failing outputs and gradients
    report.failures[0].save("repro/")   # the case's inputs, expected values and a short script

The expected values come from refvit's ``numpy`` backend. See ``docs/testing.md``.
"""
from refvit.testing.conformance.cases import TOLERANCES, Case
from refvit.testing.conformance.attention import (
    ATTENTION, RELATIVE_POSITION_BIAS, STRIPE_ATTENTION, check_attention, check_relative_position_bias,
    check_stripe_attention,
)
from refvit.testing.conformance.conv import CONV2D, MULTISCALE_DWCONV, check_conv2d, check_multiscale_dwconv
from refvit.testing.conformance.na import NA1D, NA2D, check_na1d, check_na2d
from refvit.testing.conformance.norm import BATCH_NORM, LAYER_NORM, check_batch_norm, check_layer_norm
from refvit.testing.conformance.report import ConformanceError, Failure, Mismatch, Report

__all__ = [
    "TOLERANCES",
    "Case",
    "ConformanceError",
    "Failure",
    "Mismatch",
    "Report",
    "check_attention",
    "check_batch_norm",
    "check_conv2d",
    "check_layer_norm",
    "check_multiscale_dwconv",
    "check_na1d",
    "check_na2d",
    "check_relative_position_bias",
    "check_stripe_attention",
]

CHECKS = {
    "na1d": check_na1d,
    "na2d": check_na2d,
    "attention": check_attention,
    "stripe_attention": check_stripe_attention,
    "relative_position_bias": check_relative_position_bias,
    "conv2d": check_conv2d,
    "multiscale_dwconv": check_multiscale_dwconv,
    "layer_norm": check_layer_norm,
    "batch_norm": check_batch_norm,
}

# op -> its Family (catalogue, layouts): what ``refvit conform`` lists and defaults from
FAMILIES = {family.op: family for family in (NA1D, NA2D, ATTENTION, STRIPE_ATTENTION, RELATIVE_POSITION_BIAS,
                                             CONV2D, MULTISCALE_DWCONV, LAYER_NORM, BATCH_NORM)}
