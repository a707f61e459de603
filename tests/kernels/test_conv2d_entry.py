"""The conv2d kernel entries pick the algorithm: a depthwise convolution goes to the depthwise kernels, and on
cpu a dense convolution with non-overlapping windows to the merge path."""
import numpy as np
import pytest

from refvit import kernels, ops


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("groups, out_channels, depthwise", [(4, 4, True), (2, 4, False), (4, 8, False), (1, 4, False)])
def test_entry_hands_depthwise_calls_to_the_depthwise_kernels(monkeypatch, rng, backend, groups, out_channels,
                                                               depthwise):
    module = kernels.load(backend, "depthwise_conv2d")
    calls = []
    for step in ("forward", "backward"):
        original = getattr(module, step)
        monkeypatch.setattr(module, step, lambda *a, _o=original, _s=step: calls.append(_s) or _o(*a))
    x = rng.standard_normal((1, 5, 6, 4))
    weight = rng.standard_normal((out_channels, 4 // groups, 3, 3))
    out, cache = ops.conv2d.forward(x, weight, None, padding=1, groups=groups, backend=backend)
    ops.conv2d.backward(np.ones(out.shape), cache)
    assert calls == (["forward", "backward"] if depthwise else [])
    want, _ = ops.conv2d.forward(x, weight, None, padding=1, groups=groups, backend="numpy")
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("in_channels, out_channels, groups, path", [
    (16, 16, 16, "depthwise_conv2d"), (32, 64, 8, "conv2d_direct"), (8, 16, 8, "conv2d_direct"),
    (3, 16, 1, "conv2d_gemm"), (16, 16, 1, "conv2d_gemm")])
def test_cpu_entry_rule(in_channels, out_channels, groups, path):
    from refvit.kernels.cpu import conv2d

    assert conv2d.choose(in_channels, out_channels, groups).__name__.rsplit(".", 1)[1] == path


@pytest.mark.parametrize("window, groups, path", [
    (((2, 2), (2, 2), (0, 0), (1, 1)), 1, "conv2d_merge"), (((4, 4), (4, 4), (0, 0), (1, 1)), 1, "conv2d_merge"),
    (((2, 2), (2, 2), (0, 0), (1, 1)), 4, "conv2d_direct"), (((2, 2), (2, 2), (1, 1), (1, 1)), 1, "conv2d_rows"),
    (((3, 3), (2, 2), (1, 1), (1, 1)), 1, "conv2d_rows"), (((1, 1), (1, 1), (0, 0), (1, 1)), 1, "conv2d_gemm"),
    (((2, 2), (1, 1), (0, 0), (1, 1)), 1, "conv2d_rows"), (((2, 2), (2, 2), (0, 0), (2, 2)), 1, "conv2d_gemm")])
def test_cpu_entry_rule_for_windows(window, groups, path):
    from refvit.kernels.cpu import conv2d
    from refvit.ops._conv_geometry import Window

    assert conv2d.choose(8, 8, groups, Window(*window)).__name__.rsplit(".", 1)[1] == path


def test_cpu_entry_runs_the_merge_path_for_a_patch_merge(monkeypatch, rng):
    from refvit.kernels.cpu import conv2d_merge

    calls = []
    original = conv2d_merge.backward
    monkeypatch.setattr(conv2d_merge, "backward", lambda *a: calls.append("backward") or original(*a))
    x = rng.standard_normal((2, 5, 6, 4))
    weight = rng.standard_normal((3, 4, 2, 2))
    out, cache = ops.conv2d.forward(x, weight, None, stride=2, backend="cpu")
    grads = ops.conv2d.backward(np.ones(out.shape), cache)
    assert calls == ["backward"]
    want, want_cache = ops.conv2d.forward(x, weight, None, stride=2, backend="numpy")
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
    for got, expected in zip(grads[:2], ops.conv2d.backward(np.ones(out.shape), want_cache)[:2]):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
