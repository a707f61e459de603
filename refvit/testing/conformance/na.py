"""``check_na1d``, ``check_na2d``: neighbourhood attention (NA, DiNA, strided, causal, with rpb).

Layouts: ``"refvit"`` calls ``fn(q, k, v, kernel_size, dilation=, is_causal=, scale=[, stride=][, rpb=])``
on heads-first ``(B, heads, *spatial, d)`` arrays; ``"natten"`` calls NATTEN's functional API
``fn(query, key, value, kernel_size=, dilation=, is_causal=, scale=[, stride=][, rpb=])`` on
heads-last ``(B, *spatial, heads, d)`` arrays. ``stride`` and ``rpb`` are passed only by the cases
that use them, so ``exclude=("rpb",)`` checks an implementation without a bias (NATTEN >= 0.20)
and ``exclude=("stride",)`` one without strides (NATTEN < 0.20).
"""
from __future__ import annotations

from refvit.testing.conformance.cases import Family, Layout, case, composite, random_inputs
from refvit.testing.conformance.runner import check

HEADS, HEAD_DIM = 2, 3


def _features(params):
    found = set()
    dims = len(params["shape"])
    kernel, dilation = _per_axis(params["kernel_size"], dims), _per_axis(params.get("dilation", 1), dims)
    if any(d > 1 for d in dilation):
        found.add("dilation")
    if any(s > 1 for s in _per_axis(params.get("stride", 1), dims)):
        found.add("stride")
    if any(_per_axis(params.get("is_causal", False), dims)):
        found.add("causal")
    if params.get("rpb"):
        found.add("rpb")
    if len(set(kernel)) > 1:
        found.add("rectangular-kernel")
    if 1 in kernel:  # NATTEN accepts kernels of 2 or more only
        found.add("kernel-1")
    return found


def _case(name, dtype="float64", seed=0, **params):
    return case(name, dtype=dtype, seed=seed, features=_features(params) | {dtype}, **params)


def _per_axis(value, dims):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


NA2D_CASES = (
    _case("basic", shape=(5, 5), kernel_size=3),
    _case("border-rectangular-map", shape=(6, 7), kernel_size=3, seed=1),
    _case("rectangular-kernel", shape=(5, 7), kernel_size=(3, 5), seed=2),
    _case("kernel-equals-map", shape=(5, 5), kernel_size=5, seed=3),
    _case("kernel-1", shape=(4, 3), kernel_size=1, seed=4),
    _case("dilation-uneven-groups", shape=(7, 9), kernel_size=3, dilation=2, seed=5),
    _case("dilation-per-axis", shape=(9, 7), kernel_size=3, dilation=(3, 2), seed=6),
    _case("dilation-kernel-fills-map", shape=(6, 6), kernel_size=3, dilation=2, seed=7),
    _case("stride", shape=(6, 6), kernel_size=3, stride=2, seed=8),
    _case("stride-equals-kernel", shape=(7, 6), kernel_size=3, stride=3, seed=9),
    _case("stride-dilation", shape=(9, 8), kernel_size=3, dilation=2, stride=2, seed=10),
    _case("causal", shape=(5, 5), kernel_size=3, is_causal=True, seed=11),
    _case("causal-one-axis", shape=(5, 6), kernel_size=3, is_causal=(True, False), seed=12),
    _case("causal-dilation", shape=(7, 6), kernel_size=3, dilation=2, is_causal=(True, False), seed=13),
    _case("causal-stride", shape=(6, 6), kernel_size=3, stride=2, is_causal=(False, True), seed=14),
    _case("rpb", shape=(6, 6), kernel_size=3, rpb=True, seed=15),
    _case("rpb-dilation", shape=(7, 8), kernel_size=3, dilation=2, rpb=True, seed=16),
    _case("rpb-kernel-equals-map", shape=(5, 5), kernel_size=5, rpb=True, seed=17),
    _case("tiny-map", shape=(3, 1), kernel_size=(3, 1), seed=18),
    _case("odd-map-batch", shape=(3, 5), kernel_size=3, batch=2, seed=19),
    _case("float32", dtype="float32", shape=(5, 6), kernel_size=3, dilation=(1, 2), seed=20),
    _case("float32-rpb", dtype="float32", shape=(5, 7), kernel_size=3, dilation=(1, 2), rpb=True, seed=21),
)

NA1D_CASES = (
    _case("basic", shape=(7,), kernel_size=3),
    _case("kernel-equals-length", shape=(5,), kernel_size=5, seed=1),
    _case("kernel-1", shape=(4,), kernel_size=1, seed=2),
    _case("dilation-uneven-groups", shape=(9,), kernel_size=3, dilation=2, seed=3),
    _case("dilation-3", shape=(10,), kernel_size=3, dilation=3, seed=4),
    _case("stride", shape=(8,), kernel_size=3, stride=2, seed=5),
    _case("stride-equals-kernel", shape=(10,), kernel_size=5, stride=5, seed=6),
    _case("causal", shape=(7,), kernel_size=3, is_causal=True, seed=7),
    _case("causal-dilation", shape=(9,), kernel_size=3, dilation=2, is_causal=True, seed=8),
    _case("causal-stride", shape=(8,), kernel_size=3, stride=2, is_causal=True, seed=9),
    _case("rpb", shape=(7,), kernel_size=5, rpb=True, seed=10),
    _case("rpb-dilation", shape=(11,), kernel_size=3, dilation=3, rpb=True, seed=11),
    _case("tiny", shape=(1,), kernel_size=1, seed=12),
    _case("float32", dtype="float32", shape=(9,), kernel_size=3, dilation=2, rpb=True, seed=13),
)


def _inputs(case):
    params = case.params
    kernel = _per_axis(params["kernel_size"], len(params["shape"]))
    shape = (params.get("batch", 1), HEADS) + tuple(params["shape"]) + (params.get("head_dim", HEAD_DIM),)
    shapes = {"q": shape, "k": shape, "v": shape}
    if params.get("rpb"):
        shapes["rpb"] = (HEADS,) + tuple(2 * k - 1 for k in kernel)
    return random_inputs(case.seed, case.dtype, shapes)


def _options(params):
    options = {"dilation": params.get("dilation", 1), "is_causal": params.get("is_causal", False),
               "scale": params.get("scale", params.get("head_dim", HEAD_DIM) ** -0.5)}
    if "stride" in params:
        options["stride"] = params["stride"]
    return options


def _reference(op):
    def reference(inputs, params):
        from refvit import ops

        module = getattr(ops, op)
        out, cache = module.forward(inputs["q"], inputs["k"], inputs["v"], params["kernel_size"],
                                    rpb=inputs.get("rpb"), backend="numpy", **_options(params))

        def backward(dout):
            grads = module.backward(dout, cache)
            return dict(zip(("q", "k", "v", "rpb"), grads))

        return out, backward, {}
    return reference


def _arguments(inputs, params, layout):
    options = _options(params)
    if "rpb" in inputs:
        options["rpb"] = inputs["rpb"]
    if layout == "natten":
        return (inputs["q"], inputs["k"], inputs["v"]), {"kernel_size": params["kernel_size"], **options}
    return (inputs["q"], inputs["k"], inputs["v"], params["kernel_size"]), options


def _differentiable(case):
    return ["q", "k", "v"] + (["rpb"] if case.params.get("rpb") else [])


def _draw_axis(draw, st):
    kernel = draw(st.sampled_from((1, 3, 5)))
    dilation = draw(st.integers(1, 3))
    length = draw(st.integers(kernel * dilation, kernel * dilation + 4))
    return length, kernel, dilation, draw(st.integers(1, kernel)), draw(st.booleans())


def _strategy(dims):
    @composite
    def cases(draw, st):
        axes = [_draw_axis(draw, st) for _ in range(dims)]
        params = {"shape": tuple(a[0] for a in axes), "kernel_size": tuple(a[1] for a in axes),
                  "dilation": tuple(a[2] for a in axes), "stride": tuple(a[3] for a in axes),
                  "is_causal": tuple(a[4] for a in axes), "rpb": draw(st.booleans())}
        if params["stride"] == (1,) * dims:  # passed only when used (NATTEN < 0.20 has no stride)
            del params["stride"]
        return _case("random", seed=draw(st.integers(0, 2**16)), **params)
    return cases


def _family(op, catalogue, dims):
    heads_last = (0,) + tuple(range(2, 2 + dims)) + (1, dims + 2)
    natten = Layout(names={"q": "query", "k": "key", "v": "value"},
                    axes={"q": heads_last, "k": heads_last, "v": heads_last, "out": heads_last})
    return Family(op, catalogue, {"refvit": Layout(), "natten": natten}, _inputs, _reference(op), _arguments,
                  _differentiable, _strategy(dims))


NA1D = _family("na1d", NA1D_CASES, 1)
NA2D = _family("na2d", NA2D_CASES, 2)


def check_na2d(fn, layout="refvit", framework="numpy", backward=True, cases="standard", head_dim=None, **options):
    """Check a 2-D neighbourhood attention ``fn`` against ``refvit.ops.na2d``; returns a :class:`Report`.

    ``head_dim``: the size of each head (default 3; fused kernels often take only 32, 64, ...).
    ``options``: ``backward_fn=`` (``backward_fn(dout, *args, **kwargs) -> (dq, dk, dv[, drpb])``, called
    with the arguments ``fn`` got), ``random=N``, ``exclude=("rpb", ...)``, ``dtype=``, ``strict=True``,
    ``tolerances={"float32": (rtol, atol)}``."""
    overrides = {} if head_dim is None else {"head_dim": int(head_dim)}
    return check(NA2D, fn, layout, framework, backward, cases, overrides=overrides, **options)


def check_na1d(fn, layout="refvit", framework="numpy", backward=True, cases="standard", head_dim=None, **options):
    """Check a 1-D neighbourhood attention ``fn`` against ``refvit.ops.na1d``; options as :func:`check_na2d`."""
    overrides = {} if head_dim is None else {"head_dim": int(head_dim)}
    return check(NA1D, fn, layout, framework, backward, cases, overrides=overrides, **options)
