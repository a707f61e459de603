"""The engine behind every ``check_*``: run the cases of a family on the user's function.

For each case: draw the inputs, compute the expected output and gradients with refvit's ``numpy``
backend in float64 (from the case's inputs, so a float32 case is compared with the exact answer to
its own inputs), call the user's function on the inputs in the user's layout and framework, then
compare output and gradients in the user's layout. ``cases`` is ``"standard"`` (the family's named
catalogue), ``"random"`` (Hypothesis draws ``random`` cases, default 25, and shrinks the first
failing one to a minimal case, reported as ``random-shrunk``), ``"standard+random"``, or a list of
case names from the catalogue.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from refvit.testing.conformance import frameworks as fw
from refvit.testing.conformance.cases import TOLERANCES, upstream_gradient
from refvit.testing.conformance.reproducer import render_call, script
from refvit.testing.conformance.report import ConformanceError, Failure, Mismatch, Report

DEFAULT_RANDOM = 25


def check(family, fn, layout, framework="numpy", backward=True, cases="standard", *, backward_fn=None,
          random=None, exclude=(), dtype=None, strict=False, tolerances=None, overrides=None):
    """Run ``family``'s cases on ``fn``; return a :class:`Report` (raise :class:`ConformanceError` when
    ``strict`` and a case fails). ``dtype="float32"`` runs every case in that dtype (for kernels without
    float64); ``overrides`` is merged into every case's ``params`` (``check_na2d``'s ``head_dim``).
    See the module docstring and ``docs/testing.md``."""
    if layout not in family.layouts:
        raise ValueError(f"{family.op}: layout must be one of {tuple(family.layouts)}; got {layout!r}")
    fw.check_framework(framework)
    if backward and framework == "numpy" and backward_fn is None:
        raise ValueError(f"{family.op}: backward=True with framework='numpy' needs backward_fn "
                         "(or framework='torch' for torch autograd, or backward=False)")
    tolerances = {**TOLERANCES, **(tolerances or {})}
    catalogue, draw = _select(family, cases, random, exclude)
    if dtype is not None and dtype not in tolerances:
        raise ValueError(f"dtype must be one of {tuple(tolerances)}; got {dtype!r}")
    if dtype is not None or overrides:
        catalogue = [_changed(case, dtype, overrides) for case in catalogue]
        strategy = family.strategy
        family = dataclasses.replace(family, strategy=lambda: strategy().map(lambda c: _changed(c, dtype, overrides)))
    report = Report(family.op, layout, framework, backward)
    run = _Runner(family, fn, layout, framework, backward, backward_fn, tolerances)
    for case in catalogue:
        report.results[case.name] = case
        failure = run(case)
        if failure is not None:
            report.failures.append(failure)
    if draw:
        _random(family, run, draw, exclude, report)
    if strict and not report.passed:
        raise ConformanceError(report)
    return report


def _changed(case, dtype, overrides):
    """``case`` in ``dtype`` (``None``: its own) with ``overrides`` merged into its params."""
    dtype = dtype or case.dtype
    return dataclasses.replace(case, params={**case.params, **(overrides or {})}, dtype=dtype,
                               features=case.features - set(TOLERANCES) | {dtype})


def _select(family, cases, random, exclude):
    names = {case.name: case for case in family.catalogue}
    if isinstance(cases, str):
        parts = set(cases.split("+"))
        unknown = parts - {"standard", "random"}
        if unknown:
            raise ValueError(f"cases must be 'standard', 'random', 'standard+random' or a list of case names; "
                             f"got {cases!r}")
        chosen = list(family.catalogue) if "standard" in parts else []
        draw = (random or DEFAULT_RANDOM) if "random" in parts else (random or 0)
    else:
        missing = [name for name in cases if name not in names]
        if missing:
            raise ValueError(f"{family.op}: no case named {missing}; cases are {', '.join(names)}")
        chosen, draw = [names[name] for name in cases], random or 0
    return [case for case in chosen if not case.features & set(exclude)], draw


def _random(family, run, draw, exclude, report):
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    strategy = family.strategy().filter(lambda case: not case.features & set(exclude))
    options = settings(max_examples=draw, database=None, deadline=None, derandomize=True,
                       phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    report.random_examples = draw
    try:
        shrunk = find(strategy, lambda case: run(case) is not None, settings=options)
    except NoSuchExample:
        return
    shrunk = dataclasses.replace(shrunk, name="random-shrunk")
    report.results[shrunk.name] = shrunk
    report.failures.append(run(shrunk))


class _Runner:
    """One case -> ``None`` (it passes) or its :class:`Failure`."""

    def __init__(self, family, fn, layout, framework, backward, backward_fn, tolerances):
        self.family, self.fn, self.layout_name = family, fn, layout
        self.layout = family.layouts[layout]
        self.framework, self.backward, self.backward_fn, self.tolerances = framework, backward, backward_fn, tolerances

    def __call__(self, case):
        differentiable = self.family.differentiable(case) if self.backward else []
        call, expected, failure = self._prepare(case, differentiable)
        args, kwargs, user_inputs, dout_user, changed = call
        try:
            actual = self._call(args, kwargs, user_inputs, differentiable, dout_user)
        except _WrongShape as error:
            failure.error = str(error)
            return failure
        except Exception as error:  # noqa: BLE001 - the user's function failing is a result to report
            failure.error = f"{type(error).__name__}: {error}"
            return failure
        for name, value in changed.items():  # inputs the call updates in place (running statistics)
            expected[self.layout.user_name(name)] = fw.permute(value, self.layout.permutation(name))
            actual[self.layout.user_name(name)] = fw.to_numpy(user_inputs[name])
        return self._verdict(case, expected, actual, failure)

    def _prepare(self, case, differentiable):
        """The user's call, the expected values (user layout) and the :class:`Failure` to fill in, whose
        reproducer and arrays are ready."""
        layout = self.layout
        inputs = self.family.inputs(case)
        out64, reference_backward, changed = self.family.reference(
            {name: a.astype(np.float64) for name, a in inputs.items()}, case.params)
        user_arrays = {name: np.ascontiguousarray(fw.permute(a, layout.permutation(name)))
                       for name, a in inputs.items()}
        user_inputs = {name: fw.to_user(a, self.framework, name in differentiable and self.backward_fn is None)
                       for name, a in user_arrays.items()}
        args, kwargs = self.family.arguments(user_inputs, case.params, self.layout_name)
        expected = {"out": fw.permute(out64, layout.permutation("out"))}
        dout = upstream_gradient(case.seed, out64.shape, case.dtype)
        if differentiable:
            grads = reference_backward(dout.astype(np.float64))
            for name in differentiable:
                expected[f"grad {layout.user_name(name)}"] = fw.permute(grads[name], layout.permutation(name))
        dout_user = np.ascontiguousarray(fw.permute(dout, layout.permutation("out")))
        arrays = {layout.user_name(name): a for name, a in user_arrays.items()}
        arrays["dout"] = dout_user
        arrays.update({"expected_" + key.replace("grad ", "grad_"): value for key, value in expected.items()})
        names = {layout.user_name(name): value for name, value in user_inputs.items()}
        reproducer = script(self.fn, case, render_call(args, kwargs, names, "t"), self.framework,
                            [layout.user_name(name) for name in differentiable], self.backward_fn is not None)
        failure = Failure(case, arrays=arrays, reproducer=reproducer)
        return (args, kwargs, user_inputs, dout_user, changed), expected, failure

    def _verdict(self, case, expected, actual, failure):
        rtol, atol = self.tolerances[case.dtype]
        for what, value in expected.items():
            got = actual.get(what)
            if got is None or got.shape != value.shape:
                found = "missing" if got is None else f"shape {got.shape}, expected {value.shape}"
                failure.error = f"{what}: {found}"
                return failure
            mismatch = compare(what, got, value, rtol, atol)
            if mismatch is not None:
                failure.mismatches.append(mismatch)
        return failure if failure.mismatches else None

    def _call(self, args, kwargs, user_inputs, differentiable, dout_user):
        """``{"out": ..., "grad <name>": ...}`` as NumPy arrays in the user's layout."""
        out = self.fn(*args, **kwargs)
        actual = {"out": fw.to_numpy(out)}
        if actual["out"].shape != dout_user.shape:
            raise _WrongShape(f"out: shape {actual['out'].shape}, expected {dout_user.shape}")
        if not differentiable:
            return actual
        names = [self.layout.user_name(name) for name in differentiable]
        if self.backward_fn is not None:
            grads = fw.flatten(self.backward_fn(dout_user, *args, **kwargs))
            if len(grads) != len(names):
                raise ValueError(f"backward_fn returned {len(grads)} gradients; expected {len(names)} ({names})")
        else:
            leaves = {name: user_inputs[name] for name in differentiable}
            grads = list(fw.autograd(out, dout_user, leaves).values())
        for name, grad in zip(names, grads):
            actual[f"grad {name}"] = fw.to_numpy(grad)
        return actual


class _WrongShape(Exception):
    """The output's shape is not the expected one: reported as the case's error, before any backward."""


def compare(what, actual, expected, rtol, atol):
    """``None`` when ``|actual - expected| <= atol + rtol |expected|`` everywhere, else a :class:`Mismatch`."""
    actual64 = actual.astype(np.float64)
    with np.errstate(invalid="ignore"):
        error = np.abs(actual64 - expected)
    error = np.where(np.isfinite(error), error, np.inf)
    bad = error > atol + rtol * np.abs(expected)
    if not bad.any():
        return None
    index = np.unravel_index(int(np.argmax(np.where(bad, error, -1.0))), expected.shape)
    index = tuple(int(i) for i in index)
    return Mismatch(what, float(error[index]), index, float(actual64[index]), float(expected[index]),
                    int(bad.sum()), int(bad.size), rtol, atol)
