"""Layers against PyTorch: state_dict keys and shapes, outputs and gradients after loading torch's weights."""
import numpy as np
import pytest
import torch

from refvit import nn
from refvit.autograd import Tensor
from refvit.testing import assert_close, numerical_vjp


def torch_state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def assert_same_state_layout(ours, theirs):
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert [tuple(v.shape) for v in ours_sd.values()] == [tuple(v.shape) for v in theirs_sd.values()]


def nchw(x):
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def compare(ours, theirs, x, upstream, to_torch=lambda a: a, from_torch=lambda a: a, load=True):
    """Outputs, input gradients and parameter gradients of ours and torch's module."""
    if load:
        ours.load_state_dict(torch_state(theirs))
    x_ours = Tensor(x, requires_grad=True)
    out = ours(x_ours)
    out.backward(upstream)
    x_torch = torch.tensor(to_torch(x), requires_grad=True)
    expected = theirs(x_torch)
    expected.backward(torch.tensor(to_torch(upstream)))
    assert_close(out.data, from_torch(expected.detach().numpy()), name="output")
    assert_close(x_ours.grad, from_torch(x_torch.grad.numpy()), name="input gradient")
    theirs_params = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad, theirs_params[name].grad.numpy(), name=f"d{name}")


def test_linear_matches_torch(rng):
    theirs = torch.nn.Linear(5, 3).double()
    ours = nn.Linear(5, 3, dtype=np.float64)
    assert_same_state_layout(ours, theirs)
    compare(ours, theirs, rng.standard_normal((2, 4, 5)), rng.standard_normal((2, 4, 3)))
    no_bias = nn.Linear(5, 3, bias=False)
    assert list(no_bias.state_dict()) == ["weight"] and no_bias.bias is None


def test_layer_norm_matches_torch(rng):
    theirs = torch.nn.LayerNorm(6, eps=1e-6).double()
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = nn.LayerNorm(6, eps=1e-6, dtype=np.float64)
    assert_same_state_layout(ours, theirs)
    compare(ours, theirs, rng.standard_normal((3, 6)), rng.standard_normal((3, 6)))


def test_layer_norm_without_affine(rng):
    ours = nn.LayerNorm((4,), elementwise_affine=False, dtype=np.float64)
    assert ours.state_dict() == {}
    x = rng.standard_normal((2, 4))
    out = ours(x).data
    assert_close(out, (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5))
    with pytest.raises(ValueError, match="LayerNorm: 'normalized_shape'"):
        nn.LayerNorm((2, 4))


@pytest.mark.parametrize("options", [
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=4, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=(1, 2), groups=2)])
def test_conv2d_matches_torch_channels_last(options, rng):
    theirs = torch.nn.Conv2d(**options).double()
    ours = nn.Conv2d(**options, dtype=np.float64)
    assert_same_state_layout(ours, theirs)
    x = rng.standard_normal((2, 5, 6, options["in_channels"]))
    out_shape = nhwc(theirs(torch.tensor(nchw(x))).detach().numpy()).shape
    compare(ours, theirs, x, rng.standard_normal(out_shape), to_torch=nchw, from_torch=nhwc)


def test_conv2d_bad_arguments():
    with pytest.raises(ValueError, match="Conv2d: 'groups'"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="Conv2d: 'kernel_size'"):
        nn.Conv2d(2, 2, (1, 2, 3))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_train_and_eval_match_torch(momentum, rng):
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum).double()
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = nn.BatchNorm2d(3, momentum=momentum, dtype=np.float64)
    assert_same_state_layout(ours, theirs)
    assert list(ours.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    ours.load_state_dict(torch_state(theirs))
    for step in range(2):
        x = rng.standard_normal((2, 3, 4, 3)) * (step + 1) + step
        upstream = rng.standard_normal(x.shape)
        compare(ours, theirs, x, upstream, to_torch=nchw, from_torch=nhwc, load=False)
        theirs.zero_grad()
        ours.zero_grad()
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 2
    assert ours.num_batches_tracked.dtype == np.int64
    for name in ("running_mean", "running_var"):
        assert_close(getattr(ours, name), getattr(theirs, name).numpy(), name=name)
    ours.eval()
    theirs.eval()
    compare(ours, theirs, rng.standard_normal((1, 2, 2, 3)), rng.standard_normal((1, 2, 2, 3)),
            to_torch=nchw, from_torch=nhwc, load=False)
    assert int(ours.num_batches_tracked) == 2  # evaluation leaves the statistics alone


def test_batch_norm_counts_batches_and_rejects_bad_rank(rng):
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    x = rng.standard_normal((2, 3, 3, 2)) + 4.0
    bn(x)
    bn(x)
    assert int(bn.num_batches_tracked) == 2
    mean = bn.running_mean.copy()
    bn.eval()
    bn(x)
    assert int(bn.num_batches_tracked) == 2 and np.array_equal(bn.running_mean, mean)
    with pytest.raises(ValueError, match="BatchNorm2d: 'x'"):
        bn(np.zeros((2, 3)))


def test_mlp_matches_torch_and_timm_names(rng):

    class TorchMlp(torch.nn.Module):  # timm's layout: fc1, act, drop1, norm, fc2, drop2
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = torch.nn.Linear(4, 7), torch.nn.GELU(), torch.nn.Linear(7, 3)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    theirs = TorchMlp().double()
    ours = nn.Mlp(4, 7, 3, dtype=np.float64)
    assert_same_state_layout(ours, theirs)
    assert [name for name, _ in ours.named_children()] == ["fc1", "act", "drop1", "norm", "fc2", "drop2"]
    compare(ours, theirs, rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3)))
    assert nn.Mlp(4).fc2.out_features == 4


def test_sequential_matches_torch(rng):
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2), torch.nn.GELU(),
                                 torch.nn.Identity()).double()
    ours = nn.Sequential(nn.Linear(3, 5, dtype=np.float64), nn.ReLU(), nn.Linear(5, 2, dtype=np.float64), nn.GELU(),
                         nn.Identity())
    assert_same_state_layout(ours, theirs)
    compare(ours, theirs, rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))


@pytest.mark.parametrize("name", ["ReLU", "SiLU", "Sigmoid", "Tanh", "Softmax", "GELU"])
def test_activations_match_torch(name, rng):
    theirs = getattr(torch.nn, name)(dim=-1) if name == "Softmax" else getattr(torch.nn, name)()
    compare(getattr(nn, name)(), theirs, rng.standard_normal((2, 5)), rng.standard_normal((2, 5)))


@pytest.mark.parametrize("name", ["AvgPool2d", "MaxPool2d"])
def test_pools_match_torch(name, rng):
    theirs = getattr(torch.nn, name)(3, stride=2, padding=1)
    ours = getattr(nn, name)(3, stride=2, padding=1)
    x = rng.standard_normal((1, 5, 6, 2))
    out_shape = nhwc(theirs(torch.tensor(nchw(x))).detach().numpy()).shape
    compare(ours, theirs, x, rng.standard_normal(out_shape), to_torch=nchw, from_torch=nhwc)


def test_module_gradients_match_numerical_vjp(rng):
    block = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.LayerNorm(4, dtype=np.float64), nn.GELU())
    x = rng.standard_normal((2, 3))
    upstream = rng.standard_normal((2, 4))
    weight = block[0].weight

    def fn(x_value, w_value):
        saved = weight.data
        weight.data = w_value
        try:
            return block(x_value).data
        finally:
            weight.data = saved

    x_tensor = Tensor(x, requires_grad=True)
    block(x_tensor).backward(upstream)
    dx, dw = numerical_vjp(fn, [x, weight.data], upstream)
    assert_close(x_tensor.grad, dx, rtol=1e-6, atol=1e-8)
    assert_close(weight.grad, dw, rtol=1e-6, atol=1e-8)
