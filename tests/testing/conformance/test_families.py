"""The conformance kit on attention, stripe attention, the relative-position table, convolutions
and norms: PyTorch's own functions and correct user code pass; planted mistakes fail pointedly."""
from __future__ import annotations

import functools

import torch

from refvit.testing.conformance import (
    check_attention,
    check_batch_norm,
    check_conv2d,
    check_layer_norm,
    check_multiscale_dwconv,
    check_relative_position_bias,
    check_stripe_attention,
)
from tests.testing.conformance import other_impls

F = torch.nn.functional


def failing(report):
    return {failure.name for failure in report.failures}


def test_torch_functions_pass_their_families():
    def sdpa(q, k, v, bias=None, scale=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

    def sdpa_heads_last(q, k, v, bias=None, scale=None):
        return sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), bias, scale).transpose(1, 2)

    for report in (check_attention(sdpa, framework="torch", cases="standard+random", random=5),
                   check_attention(sdpa_heads_last, layout="heads_last", framework="torch"),
                   check_conv2d(F.conv2d, layout="nchw", framework="torch", cases="standard+random", random=5),
                   check_layer_norm(F.layer_norm, layout="torch", framework="torch"),
                   check_batch_norm(F.batch_norm, layout="torch", framework="torch", cases="standard+random",
                                    random=5)):
        assert report.passed, str(report)


def test_correct_user_implementations_pass():
    assert check_stripe_attention(other_impls.stripe_attention_torch, framework="torch").passed
    assert check_multiscale_dwconv(other_impls.multiscale_dwconv_torch, layout="nchw", framework="torch").passed
    report = check_relative_position_bias(other_impls.relative_position_bias_numpy, cases="standard+random", random=5,
                                          backward_fn=other_impls.relative_position_bias_numpy_backward)
    assert report.passed, str(report)


def test_lepe_without_the_window_border_zero_fails_where_a_window_has_a_neighbour():
    fn = functools.partial(other_impls.stripe_attention_torch, bug="lepe-across-windows")
    report = check_stripe_attention(fn, framework="torch")
    assert {"whole-map", "no-lepe"}.isdisjoint(failing(report))  # one window, or no LePE: nothing to leak
    assert {"vertical-stripes", "horizontal-stripes", "stripe-1", "lepe-without-bias"} <= failing(report)
    assert report.failure("vertical-stripes").what == ["out", "grad v", "grad lepe_weight"]


def test_transposed_relative_position_table_fails_every_window_with_two_offsets_per_axis():
    fn = functools.partial(other_impls.relative_position_bias_numpy, bug="transposed-table")
    report = check_relative_position_bias(fn, backward=False, cases="standard+random", random=10)
    assert {"square", "rectangular-wide", "rectangular-tall", "random-shrunk"} <= failing(report)
    assert "one-token" not in failing(report)
    assert report.failure("square").what == ["out"]
    shrunk = report.failure("random-shrunk").case.params["window"]
    assert shrunk[0] * shrunk[1] <= 4


def test_depthwise_conv_with_the_wrong_padding_fails_the_dilated_cases():
    fn = functools.partial(other_impls.conv2d_nchw_torch, bug="kernel-half-padding")
    report = check_conv2d(fn, layout="nchw", framework="torch")
    assert {"depthwise", "depthwise-large-kernel", "dense"}.isdisjoint(failing(report))  # 'same' padding is right
    assert "depthwise-dilated" in failing(report)
    assert report.failure("depthwise-dilated").error == "out: shape (2, 4, 4, 4), expected (2, 4, 6, 6)"


def test_batch_norm_compares_the_running_statistics():
    report = check_batch_norm(other_impls.batch_norm_momentum_flipped_torch, layout="torch", framework="torch")
    assert failing(report) == {"training", "training-no-affine", "two-values-per-channel", "float32"}
    assert report.failure("training").what == ["running_mean", "running_var"]


def test_numpy_backward_fn_may_return_nested_gradients():
    def msdw(x, weights, biases, heads):
        with torch.no_grad():
            tensors = [torch.tensor(w) for w in weights]
            bias_tensors = None if biases is None else [torch.tensor(b) for b in biases]
            out = other_impls.multiscale_dwconv_torch(torch.tensor(x).permute(0, 3, 1, 2), tensors, bias_tensors, heads)
            return out.permute(0, 2, 3, 1).numpy()

    def msdw_backward(dout, x, weights, biases, heads):
        leaves = [torch.tensor(a, requires_grad=True) for a in [x, *weights, *(biases or [])]]
        count = len(weights)
        bias_leaves = leaves[1 + count:] or None
        x = leaves[0].permute(0, 3, 1, 2)
        out = other_impls.multiscale_dwconv_torch(x, leaves[1:1 + count], bias_leaves, heads)
        out.permute(0, 2, 3, 1).backward(torch.tensor(dout))
        grads = [leaf.grad.numpy() for leaf in leaves]
        return grads[0], tuple(grads[1:1 + count]), tuple(grads[1 + count:]) or None

    report = check_multiscale_dwconv(msdw, backward_fn=msdw_backward)
    assert report.passed, str(report)
