"""``check_layer_norm`` and ``check_batch_norm``.

Layouts: ``"refvit"`` calls ``fn(x, weight, bias, eps=)`` (layer norm over the last axis) and
``fn(x, weight, bias, running_mean, running_var, training, momentum=, eps=)`` (batch norm,
channels last); ``"torch"`` calls ``fn(x, (C,), weight, bias, eps)`` (``torch.nn.functional.layer_norm``)
and ``fn(x, running_mean, running_var, weight, bias, training, momentum, eps)`` on ``x (B, C, H, W)``
(``torch.nn.functional.batch_norm``). Batch norm also compares the running statistics the call
updates in place.
"""
from __future__ import annotations

import numpy as np
from refvit.testing.conformance.cases import Family, Layout, case, composite, random_inputs
from refvit.testing.conformance.runner import check

LAYER_NORM_CASES = (
    case("basic", shape=(2, 3, 5), affine=True, eps=1e-5),
    case("no-affine", shape=(4, 6), affine=False, eps=1e-5, seed=1),
    case("one-channel", shape=(3, 1), affine=True, eps=1e-5, seed=2),
    case("large-offset", shape=(3, 8), affine=True, eps=1e-5, offset=1e3, seed=3),
    case("large-eps", shape=(2, 2, 4), affine=True, eps=0.5, seed=4),
    case("float32", dtype="float32", shape=(4, 16), affine=True, eps=1e-5, seed=5),
)

BATCH_NORM_CASES = (
    case("training", shape=(2, 3, 3, 4), training=True, stats=True, affine=True),
    case("training-no-stats", shape=(3, 2, 2, 3), training=True, stats=False, affine=True, seed=1),
    case("training-no-affine", shape=(2, 2, 3, 2), training=True, stats=True, affine=False, seed=2),
    case("evaluation", shape=(2, 3, 2, 4), training=False, stats=True, affine=True, seed=3),
    case("two-values-per-channel", shape=(2, 1, 1, 3), training=True, stats=True, affine=True, seed=4),
    case("float32", dtype="float32", shape=(4, 3, 3, 5), training=True, stats=True, affine=True, seed=5),
)

NCHW = (0, 3, 1, 2)


def _ln_inputs(case):
    shape = case.params["shape"]
    shapes = {"x": shape, **({"weight": shape[-1:], "bias": shape[-1:]} if case.params["affine"] else {})}
    inputs = random_inputs(case.seed, case.dtype, shapes)
    inputs["x"] = (inputs["x"] + case.params.get("offset", 0.0)).astype(case.dtype)
    return inputs


def _ln_reference(inputs, params):
    from refvit.ops import layer_norm

    out, cache = layer_norm.forward(inputs["x"], inputs.get("weight"), inputs.get("bias"), params["eps"],
                                    backend="numpy")
    return out, lambda dout: dict(zip(("x", "weight", "bias"), layer_norm.backward(dout, cache))), {}


def _ln_arguments(inputs, params, layout):
    x, weight, bias = inputs["x"], inputs.get("weight"), inputs.get("bias")
    if layout == "torch":
        return (x, tuple(params["shape"][-1:]), weight, bias, params["eps"]), {}
    return (x, weight, bias), {"eps": params["eps"]}


@composite
def _ln_strategy(draw, st):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    return case("random", shape=shape, affine=draw(st.booleans()), eps=1e-5, seed=draw(st.integers(0, 2**16)))


def _bn_inputs(case):
    p = case.params
    channels = p["shape"][-1]
    shapes = {"x": p["shape"], **({"weight": (channels,), "bias": (channels,)} if p["affine"] else {})}
    if p["stats"]:
        shapes.update(running_mean=(channels,), running_var=(channels,))
    inputs = random_inputs(case.seed, case.dtype, shapes)
    if p["stats"]:
        inputs["running_var"] = (np.abs(inputs["running_var"]) + 0.5).astype(case.dtype)
    return inputs


def _bn_reference(inputs, params):
    from refvit.ops import batch_norm

    mean, var = inputs.get("running_mean"), inputs.get("running_var")
    mean, var = (None, None) if mean is None else (mean.copy(), var.copy())
    out, cache = batch_norm.forward(inputs["x"], inputs.get("weight"), inputs.get("bias"), mean, var,
                                    params["training"], 0.1, 1e-5, backend="numpy")
    changed = {"running_mean": mean, "running_var": var} if mean is not None and params["training"] else {}
    return out, lambda dout: dict(zip(("x", "weight", "bias"), batch_norm.backward(dout, cache))), changed


def _bn_arguments(inputs, params, layout):
    x, weight, bias = inputs["x"], inputs.get("weight"), inputs.get("bias")
    mean, var = inputs.get("running_mean"), inputs.get("running_var")
    if layout == "torch":
        return (x, mean, var, weight, bias, params["training"], 0.1, 1e-5), {}
    return (x, weight, bias, mean, var, params["training"]), {"momentum": 0.1, "eps": 1e-5}


@composite
def _bn_strategy(draw, st):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 3)), draw(st.integers(1, 4)))
    training = draw(st.booleans())
    return case("random", shape=shape, training=training, stats=(not training) or draw(st.booleans()),
                affine=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def _affine(case):
    return ["x"] + (["weight", "bias"] if case.params["affine"] else [])


LAYER_NORM = Family("layer_norm", LAYER_NORM_CASES, {"refvit": Layout(), "torch": Layout()}, _ln_inputs,
                    _ln_reference, _ln_arguments, _affine, _ln_strategy)
BATCH_NORM = Family("batch_norm", BATCH_NORM_CASES,
                    {"refvit": Layout(), "torch": Layout(axes={"x": NCHW, "out": NCHW})}, _bn_inputs,
                    _bn_reference, _bn_arguments, _affine, _bn_strategy)


def check_layer_norm(fn, layout="refvit", framework="numpy", backward=True, cases="standard", **options):
    """Check a layer norm over the last axis against ``refvit.ops.layer_norm``; ``backward_fn`` returns
    ``(dx[, dweight, dbias])``. ``layout="torch", framework="torch"`` takes ``torch.nn.functional.layer_norm``."""
    return check(LAYER_NORM, fn, layout, framework, backward, cases, **options)


def check_batch_norm(fn, layout="refvit", framework="numpy", backward=True, cases="standard", **options):
    """Check a batch norm against ``refvit.ops.batch_norm``, output, gradients and updated running
    statistics; ``backward_fn`` returns ``(dx[, dweight, dbias])``. ``layout="torch", framework="torch"``
    takes ``torch.nn.functional.batch_norm``."""
    return check(BATCH_NORM, fn, layout, framework, backward, cases, **options)
