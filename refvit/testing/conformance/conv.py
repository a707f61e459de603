"""``check_conv2d`` (dense, grouped, depthwise, strided, dilated) and ``check_multiscale_dwconv`` (SMT).

Calls: ``fn(x, weight, bias, stride=, padding=, dilation=, groups=)`` and ``fn(x, weights, biases, heads)``
(``weights``, ``biases``: lists, one array per head; ``biases`` may be ``None``). Layouts:
``"channels_last"`` (refvit: ``x (B, H, W, C)``) and ``"nchw"`` (PyTorch: ``x (B, C, H, W)``, so
``torch.nn.functional.conv2d`` itself passes). Weights are in PyTorch's layout in both.
"""
from __future__ import annotations

from refvit.testing.conformance.cases import Family, Layout, case, composite, random_inputs
from refvit.testing.conformance.runner import check

NCHW = (0, 3, 1, 2)


def _conv(name, seed, channels=(4, 4), kernel=(3, 3), groups=1, stride=1, padding=1, dilation=1, bias=True,
          shape=(5, 6), dtype="float64"):
    features = {dtype} | ({"depthwise"} if groups == channels[0] else {"grouped"} if groups > 1 else set())
    return case(name, dtype=dtype, seed=seed, features=features, shape=shape, channels=channels, kernel=kernel,
                groups=groups, stride=stride, padding=padding, dilation=dilation, bias=bias)


CONV2D_CASES = (
    _conv("dense", 0),
    _conv("no-bias", 1, bias=False),
    _conv("no-padding", 2, padding=0),
    _conv("rectangular-kernel", 3, kernel=(1, 3), padding=(0, 1)),
    _conv("pointwise", 4, kernel=(1, 1), padding=0, channels=(3, 5)),
    _conv("grouped", 5, channels=(4, 6), groups=2),
    _conv("depthwise", 6, groups=4),
    _conv("depthwise-multiplier", 7, channels=(2, 4), groups=2),
    _conv("strided", 8, stride=2, shape=(7, 6)),
    _conv("stride-per-axis", 9, stride=(2, 1), padding=(0, 1)),
    _conv("dilated", 10, dilation=2, padding=2, shape=(6, 7)),
    _conv("depthwise-dilated", 11, groups=4, dilation=2, padding=2, shape=(6, 6)),
    _conv("depthwise-large-kernel", 12, groups=4, kernel=(5, 5), padding=2),
    _conv("kernel-equals-map", 13, kernel=(3, 3), padding=0, shape=(3, 3)),
    _conv("float32", 14, dtype="float32", groups=2, stride=2, dilation=(1, 2), padding=(1, 2), shape=(6, 7)),
)

MSDW_CASES = (
    case("one-head", shape=(4, 5), heads=1, per_head=2, bias=True),
    case("two-heads", shape=(5, 5), heads=2, per_head=2, bias=True, seed=1),
    case("three-heads-small-map", shape=(3, 4), heads=3, per_head=1, bias=True, seed=2),
    case("no-bias", shape=(4, 4), heads=2, per_head=3, bias=False, seed=3),
    case("float32", dtype="float32", shape=(6, 5), heads=2, per_head=2, bias=True, seed=4),
)


def _conv_inputs(case):
    p = case.params
    (c_in, c_out), (kh, kw) = p["channels"], p["kernel"]
    shapes = {"x": (2,) + tuple(p["shape"]) + (c_in,), "weight": (c_out, c_in // p["groups"], kh, kw)}
    if p["bias"]:
        shapes["bias"] = (c_out,)
    return random_inputs(case.seed, case.dtype, shapes)


def _conv_options(params):
    return {key: params[key] for key in ("stride", "padding", "dilation", "groups")}


def _conv_reference(inputs, params):
    from refvit.ops import conv2d

    out, cache = conv2d.forward(inputs["x"], inputs["weight"], inputs.get("bias"), backend="numpy",
                                **_conv_options(params))
    return out, lambda dout: dict(zip(("x", "weight", "bias"), conv2d.backward(dout, cache))), {}


def _conv_arguments(inputs, params, layout):
    return (inputs["x"], inputs["weight"], inputs.get("bias")), _conv_options(params)


@composite
def _conv_strategy(draw, st):
    groups = draw(st.integers(1, 3))
    channels = (groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2)))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation, padding, stride = draw(st.integers(1, 2)), draw(st.integers(0, 2)), draw(st.integers(1, 2))
    low = [max(1, dilation * (k - 1) + 1 - 2 * padding) for k in kernel]
    shape = (draw(st.integers(low[0], low[0] + 3)), draw(st.integers(low[1], low[1] + 3)))
    return _conv("random", draw(st.integers(0, 2**16)), channels, kernel, groups, stride, padding, dilation,
                 draw(st.booleans()), shape)


def _msdw_inputs(case):
    p = case.params
    shapes = {"x": (2,) + tuple(p["shape"]) + (p["heads"] * p["per_head"],)}
    for head in range(p["heads"]):
        shapes[f"weights[{head}]"] = (p["per_head"], 1, 3 + 2 * head, 3 + 2 * head)
    if p["bias"]:
        for head in range(p["heads"]):
            shapes[f"biases[{head}]"] = (p["per_head"],)
    return random_inputs(case.seed, case.dtype, shapes)


def _listed(inputs, name, heads):
    return [inputs[f"{name}[{head}]"] for head in range(heads)] if f"{name}[0]" in inputs else None


def _msdw_reference(inputs, params):
    from refvit.ops import multiscale_dwconv

    heads = params["heads"]
    weights, biases = _listed(inputs, "weights", heads), _listed(inputs, "biases", heads)
    out, cache = multiscale_dwconv.forward(inputs["x"], weights, biases, heads, backend="numpy")

    def backward(dout):
        dx, dweights, dbiases = multiscale_dwconv.backward(dout, cache)
        grads = {"x": dx, **{f"weights[{i}]": g for i, g in enumerate(dweights)}}
        return {**grads, **{f"biases[{i}]": g for i, g in enumerate(dbiases or ())}}

    return out, backward, {}


def _msdw_arguments(inputs, params, layout):
    heads = params["heads"]
    return (inputs["x"], _listed(inputs, "weights", heads), _listed(inputs, "biases", heads), heads), {}


def _msdw_differentiable(case):
    heads = range(case.params["heads"])
    return (["x"] + [f"weights[{h}]" for h in heads] + ([f"biases[{h}]" for h in heads] if case.params["bias"] else []))


@composite
def _msdw_strategy(draw, st):
    return case("random", shape=(draw(st.integers(1, 6)), draw(st.integers(1, 6))), heads=draw(st.integers(1, 3)),
                per_head=draw(st.integers(1, 2)), bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


_LAYOUTS = {"channels_last": Layout(), "nchw": Layout(axes={"x": NCHW, "out": NCHW})}
CONV2D = Family("conv2d", CONV2D_CASES, _LAYOUTS, _conv_inputs, _conv_reference, _conv_arguments,
                lambda case: ["x", "weight"] + (["bias"] if case.params["bias"] else []), _conv_strategy)
MULTISCALE_DWCONV = Family("multiscale_dwconv", MSDW_CASES, _LAYOUTS, _msdw_inputs, _msdw_reference,
                           _msdw_arguments, _msdw_differentiable, _msdw_strategy)


def check_conv2d(fn, layout="channels_last", framework="numpy", backward=True, cases="standard", **options):
    """Check ``fn(x, weight, bias, stride=, padding=, dilation=, groups=)`` against ``refvit.ops.conv2d``;
    ``backward_fn`` returns ``(dx, dweight[, dbias])``. ``layout="nchw", framework="torch"`` takes
    ``torch.nn.functional.conv2d`` as it is."""
    return check(CONV2D, fn, layout, framework, backward, cases, **options)


def check_multiscale_dwconv(fn, layout="channels_last", framework="numpy", backward=True, cases="standard",
                            **options):
    """Check ``fn(x, weights, biases, heads)`` against ``refvit.ops.multiscale_dwconv``; ``backward_fn``
    returns ``(dx, dweights, dbiases)`` (sequences per head are flattened)."""
    return check(MULTISCALE_DWCONV, fn, layout, framework, backward, cases, **options)
