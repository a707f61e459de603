"""``check_attention`` (with a bias), ``check_stripe_attention`` (CSWin, with LePE) and
``check_relative_position_bias`` (the table gather of Swin / CoAtNet).

Calls: ``fn(q, k, v[, bias=], scale=)``; ``fn(q, k, v, stripe_size[, lepe_weight=][, lepe_bias=], scale=)``;
``fn(table, window)``. Layouts: ``"refvit"`` heads-first ``(B, heads, ..., d)``; ``"heads_last"``
``(B, ..., heads, d)`` for ``q, k, v`` and the output (biases, LePE weights and tables as in refvit).
"""
from __future__ import annotations

from refvit.testing.conformance.cases import Family, Layout, case, composite, random_inputs
from refvit.testing.conformance.runner import check

ATTENTION_CASES = (
    case("self", tokens=(5, 5), dims=(4, 4), bias="none"),
    case("cross", tokens=(3, 7), dims=(4, 4), bias="none", seed=1),
    case("value-dim", tokens=(4, 6), dims=(3, 5), bias="none", seed=2),
    case("bias-per-head", tokens=(5, 5), dims=(4, 4), bias="per-head", seed=3, features=("bias",)),
    case("bias-broadcast", tokens=(3, 6), dims=(4, 4), bias="shared", seed=4, features=("bias",)),
    case("one-key", tokens=(4, 1), dims=(2, 2), bias="per-head", seed=5, features=("bias",)),
    case("float32", dtype="float32", tokens=(6, 6), dims=(8, 8), bias="per-head", seed=6, features=("bias",)),
)

STRIPE_CASES = (
    case("vertical-stripes", shape=(4, 6), stripe=(4, 2), lepe="weight+bias"),
    case("horizontal-stripes", shape=(6, 4), stripe=(2, 4), lepe="weight+bias", seed=1),
    case("whole-map", shape=(3, 4), stripe=(3, 4), lepe="weight+bias", seed=2),
    case("stripe-1", shape=(4, 3), stripe=(4, 1), lepe="weight+bias", seed=3),
    case("no-lepe", shape=(4, 4), stripe=(4, 2), lepe="none", seed=4),
    case("lepe-without-bias", shape=(6, 4), stripe=(2, 4), lepe="weight", seed=5),
    case("float32", dtype="float32", shape=(4, 6), stripe=(4, 3), lepe="weight+bias", seed=6),
)

RPB_CASES = (
    case("square", window=(3, 3)),
    case("rectangular-wide", window=(2, 3), seed=1),
    case("rectangular-tall", window=(4, 2), seed=2),
    case("one-row", window=(1, 4), seed=3),
    case("one-token", window=(1, 1), seed=4),
    case("float32", dtype="float32", window=(3, 4), seed=5),
)

HEADS = 2
HEADS_LAST_4D = (0, 2, 1, 3)
HEADS_LAST_5D = (0, 2, 3, 1, 4)


def _attention_inputs(case):
    (queries, keys), (d, dv), batch = case.params["tokens"], case.params["dims"], 2
    shapes = {"q": (batch, HEADS, queries, d), "k": (batch, HEADS, keys, d), "v": (batch, HEADS, keys, dv)}
    if case.params["bias"] != "none":
        shapes["bias"] = (HEADS, queries, keys) if case.params["bias"] == "per-head" else (queries, keys)
    return random_inputs(case.seed, case.dtype, shapes)


def _attention_reference(inputs, params):
    from refvit.ops import attention

    scale = params.get("scale", params["dims"][0] ** -0.5)
    out, cache = attention.forward(inputs["q"], inputs["k"], inputs["v"], inputs.get("bias"), scale, backend="numpy")
    return out, lambda dout: dict(zip(("q", "k", "v", "bias"), attention.backward(dout, cache))), {}


def _attention_arguments(inputs, params, layout):
    kwargs = {"bias": inputs["bias"]} if "bias" in inputs else {}
    return (inputs["q"], inputs["k"], inputs["v"]), {**kwargs, "scale": params.get("scale", params["dims"][0] ** -0.5)}


@composite
def _attention_strategy(draw, st):
    tokens = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    dims = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return case("random", tokens=tokens, dims=dims, bias=draw(st.sampled_from(("none", "per-head", "shared"))),
                seed=draw(st.integers(0, 2**16)))


def _stripe_inputs(case):
    (height, width), d = case.params["shape"], 3
    shape = (1, HEADS, height, width, d)
    shapes = {"q": shape, "k": shape, "v": shape}
    if case.params["lepe"] != "none":
        shapes["lepe_weight"] = (HEADS * d, 1, 3, 3)
    if case.params["lepe"] == "weight+bias":
        shapes["lepe_bias"] = (HEADS * d,)
    return random_inputs(case.seed, case.dtype, shapes)


def _stripe_reference(inputs, params):
    from refvit.ops import stripe_attention

    out, cache = stripe_attention.forward(inputs["q"], inputs["k"], inputs["v"], params["stripe"],
                                          inputs.get("lepe_weight"), inputs.get("lepe_bias"), 3 ** -0.5,
                                          backend="numpy")
    names = ("q", "k", "v", "lepe_weight", "lepe_bias")
    return out, lambda dout: dict(zip(names, stripe_attention.backward(dout, cache))), {}


def _stripe_arguments(inputs, params, layout):
    kwargs = {name: inputs[name] for name in ("lepe_weight", "lepe_bias") if name in inputs}
    return (inputs["q"], inputs["k"], inputs["v"], params["stripe"]), {**kwargs, "scale": 3 ** -0.5}


@composite
def _stripe_strategy(draw, st):
    stripe = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    shape = (stripe[0] * draw(st.integers(1, 2)), stripe[1] * draw(st.integers(1, 2)))
    return case("random", shape=shape, stripe=stripe, lepe=draw(st.sampled_from(("none", "weight", "weight+bias"))),
                seed=draw(st.integers(0, 2**16)))


def _rpb_inputs(case):
    height, width = case.params["window"]
    return random_inputs(case.seed, case.dtype, {"table": ((2 * height - 1) * (2 * width - 1), 3)})


def _rpb_reference(inputs, params):
    from refvit.ops import relative_position_bias

    out, cache = relative_position_bias.forward(inputs["table"], params["window"], backend="numpy")
    return out, lambda dout: {"table": relative_position_bias.backward(dout, cache)[0]}, {}


def _rpb_arguments(inputs, params, layout):
    return (inputs["table"], params["window"]), {}


@composite
def _rpb_strategy(draw, st):
    return case("random", window=(draw(st.integers(1, 5)), draw(st.integers(1, 5))), seed=draw(st.integers(0, 2**16)))


ATTENTION = Family("attention", ATTENTION_CASES,
                   {"refvit": Layout(),
                    "heads_last": Layout(axes=dict.fromkeys(("q", "k", "v", "out"), HEADS_LAST_4D))},
                   _attention_inputs, _attention_reference, _attention_arguments,
                   lambda case: ["q", "k", "v"] + (["bias"] if case.params["bias"] != "none" else []),
                   _attention_strategy)
STRIPE_ATTENTION = Family(
    "stripe_attention", STRIPE_CASES,
    {"refvit": Layout(), "heads_last": Layout(axes=dict.fromkeys(("q", "k", "v", "out"), HEADS_LAST_5D))},
    _stripe_inputs, _stripe_reference, _stripe_arguments,
    lambda case: ["q", "k", "v"] + {"none": [], "weight": ["lepe_weight"],
                                    "weight+bias": ["lepe_weight", "lepe_bias"]}[case.params["lepe"]],
    _stripe_strategy)
RELATIVE_POSITION_BIAS = Family("relative_position_bias", RPB_CASES, {"refvit": Layout()}, _rpb_inputs,
                                _rpb_reference, _rpb_arguments,
                                lambda case: ["table"], _rpb_strategy)


def check_attention(fn, layout="refvit", framework="numpy", backward=True, cases="standard", **options):
    """Check ``fn(q, k, v[, bias=], scale=)`` against ``refvit.ops.attention``; ``backward_fn`` returns
    ``(dq, dk, dv[, dbias])``. Options as :func:`refvit.testing.conformance.check_na2d`."""
    return check(ATTENTION, fn, layout, framework, backward, cases, **options)


def check_stripe_attention(fn, layout="refvit", framework="numpy", backward=True, cases="standard", **options):
    """Check ``fn(q, k, v, stripe_size[, lepe_weight=][, lepe_bias=], scale=)`` against
    ``refvit.ops.stripe_attention``; ``backward_fn`` returns ``(dq, dk, dv[, dlepe_weight[, dlepe_bias]])``."""
    return check(STRIPE_ATTENTION, fn, layout, framework, backward, cases, **options)


def check_relative_position_bias(fn, layout="refvit", framework="numpy", backward=True, cases="standard", **options):
    """Check ``fn(table ((2Wh-1)(2Ww-1), heads), window (Wh, Ww)) -> (heads, N, N)`` against
    ``refvit.ops.relative_position_bias``; ``backward_fn`` returns ``(dtable,)``."""
    return check(RELATIVE_POSITION_BIAS, fn, layout, framework, backward, cases, **options)
