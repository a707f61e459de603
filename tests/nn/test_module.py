"""Module: registration, traversal order, state_dict, load_state_dict, modes, zero_grad, to, apply, repr."""
from collections import OrderedDict

import numpy as np
import pytest

import refvit
from refvit import nn
from refvit.autograd import Tensor
from refvit.testing import assert_close


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(3))
        self.register_buffer("counter", np.zeros(2))
        self.register_buffer("scratch", np.zeros(1), persistent=False)
        self.inner = nn.Linear(3, 2, dtype=np.float64)
        self.norm = nn.LayerNorm(2, dtype=np.float64)
        self.note = "plain attribute"

    def forward(self, x):
        return self.norm(self.inner(x))


def test_registration_and_traversal_order():
    block = Block()
    assert list(dict(block.named_parameters())) == ["scale", "inner.weight", "inner.bias", "norm.weight", "norm.bias"]
    assert [name for name, _ in block.named_modules()] == ["", "inner", "norm"]
    assert [type(m).__name__ for m in block.children()] == ["Linear", "LayerNorm"]
    assert [name for name, _ in block.named_buffers()] == ["counter", "scratch"]
    assert list(block.state_dict()) == ["scale", "counter", "inner.weight", "inner.bias", "norm.weight", "norm.bias"]
    assert block.note == "plain attribute" and "note" not in block.state_dict()
    assert len(list(block.parameters(recurse=False))) == 1


def test_shared_parameters_are_listed_once():
    a = nn.Linear(2, 2)
    model = nn.Sequential(a, a)
    assert len(list(model.parameters())) == 2
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_reassigning_and_deleting():
    block = Block()
    block.inner = nn.Identity()
    assert "inner.weight" not in block.state_dict()
    block.scale = None
    assert "scale" not in block.state_dict()
    with pytest.raises(TypeError, match="'scale' is a Parameter"):
        block.scale = np.ones(3)
    block.counter = np.full(2, 5.0)
    assert_close(block.state_dict()["counter"], np.full(2, 5.0))
    del block.norm
    assert not hasattr(block, "norm")


def test_init_must_come_first():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="call super\\(\\).__init__\\(\\) before assigning 'layer'"):
        Broken()


def test_state_dict_holds_the_live_arrays():
    layer = nn.Linear(3, 2)
    assert layer.state_dict()["weight"] is layer.weight.data


def test_load_state_dict_copies_and_casts():
    source, target = Block(), Block()
    sd = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in source.state_dict().items()}
    weight_array = target.inner.weight.data
    result = target.load_state_dict(sd)
    assert result == ([], []) and result.missing_keys == []
    assert target.inner.weight.data is weight_array and weight_array.dtype == np.float64
    assert_close(target.inner.weight.data, source.inner.weight.data.astype(np.float32).astype(np.float64))
    sd["counter"] = np.array([1, 2])  # integers into a float buffer
    target.load_state_dict(sd)
    assert_close(target.counter, np.array([1.0, 2.0]))


def test_load_state_dict_lists_every_problem_in_one_error():
    block = Block()
    sd = dict(block.state_dict())
    del sd["inner.bias"]
    sd["extra.weight"] = np.zeros(1)
    sd["norm.weight"] = np.zeros(3)
    before = block.scale.data.copy()
    sd["scale"] = before + 1.0
    with pytest.raises(ValueError) as info:
        block.load_state_dict(sd)
    message = str(info.value)
    assert message.startswith("load_state_dict: 'state_dict' does not fit Block")
    assert "missing keys: inner.bias" in message and "unexpected keys: extra.weight" in message
    assert "norm.weight: expected shape (2,); got shape (3,)" in message
    assert_close(block.scale.data, before)  # nothing copied by a failed load


def test_load_state_dict_not_strict_returns_missing_and_unexpected():
    block = Block()
    sd = dict(block.state_dict())
    del sd["inner.bias"]
    sd["extra"] = np.zeros(1)
    missing, unexpected = block.load_state_dict(sd, strict=False)
    assert missing == ["inner.bias"] and unexpected == ["extra"]
    sd["scale"] = np.zeros(4)
    with pytest.raises(ValueError, match="scale: expected shape \\(3,\\); got shape \\(4,\\)"):
        block.load_state_dict(sd, strict=False)
    with pytest.raises(TypeError, match="load_state_dict: 'state_dict'"):
        block.load_state_dict([1, 2])


def test_train_eval_and_zero_grad():
    block = Block()
    assert all(m.training for m in block.modules())
    assert block.eval() is block and not any(m.training for m in block.modules())
    block.train()
    assert block.inner.training
    x = Tensor(np.ones((4, 3)))
    block(x).backward(np.ones((4, 2)))
    assert block.inner.weight.grad is not None
    block.zero_grad()
    assert all(p.grad is None for p in block.parameters())


def test_to_backend_runs_the_module_ops_there(rng):
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = rng.standard_normal((4, 3))
    reference = layer(x).data
    assert layer.to("numpy") is layer and layer.backend == "numpy"
    assert_close(layer(x).data, reference)
    with pytest.raises(ValueError, match="Module.to: 'target'"):
        layer.to("tpu")

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(refvit.get_backend())
            return x

    seen = []
    model = nn.Sequential(nn.Identity(), Probe())
    model(x)
    model.to("numpy")(x)
    assert seen == [refvit.get_backend(), "numpy"] and refvit.get_backend() != "numpy"


def test_to_dtype_casts_parameters_and_float_buffers():
    block = nn.BatchNorm2d(3, dtype=np.float64).float()
    assert block.weight.dtype == np.float32 and block.running_var.dtype == np.float32
    assert block.num_batches_tracked.dtype == np.int64
    assert block.double().weight.dtype == np.float64
    with pytest.raises(TypeError, match="Module.to: 'dtype'"):
        block.to(np.int32)


def test_default_dtype():
    assert nn.get_default_dtype() == np.float32 and nn.Linear(2, 2).weight.dtype == np.float32
    nn.set_default_dtype(np.float64)
    try:
        assert nn.Linear(2, 2).weight.dtype == np.float64
    finally:
        nn.set_default_dtype(np.float32)
    with pytest.raises(TypeError, match="set_default_dtype: 'dtype'"):
        nn.set_default_dtype(np.float16)


def test_apply_visits_children_first():
    visited = []
    Block().apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "LayerNorm", "Block"]


def test_repr_is_pytorch_like():
    text = repr(nn.Sequential(nn.Linear(3, 4), nn.GELU()))
    assert text == ("Sequential(\n  (0): Linear(in_features=3, out_features=4, bias=True)\n"
                    "  (1): GELU(approximate='none')\n)")


def test_containers():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    layers.append(nn.Tanh())
    assert len(layers) == 3 and isinstance(layers[-1], nn.Tanh) and isinstance(layers[1:], nn.ModuleList)
    assert list(layers.state_dict()) == ["0.weight", "0.bias"]
    with pytest.raises(IndexError, match="ModuleList: index 3"):
        layers[3]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 3)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and isinstance(named[1], nn.ReLU)
    assert len(named[:1]) == 1
    with pytest.raises(NotImplementedError):
        nn.Module()(1)


def test_module_given_numpy_treats_it_as_a_constant(rng):
    layer = nn.Linear(3, 2, dtype=np.float64)
    out = layer(rng.standard_normal((1, 3)))
    assert isinstance(out, refvit.Tensor) and out.requires_grad
    out.backward(np.ones((1, 2)))
    assert layer.weight.grad.shape == (2, 3)


@pytest.mark.cuda
def test_to_cuda_runs_the_module_on_the_cuda_backend(rng):
    layer = nn.Sequential(nn.GELU()).to("cuda")
    assert all(m.backend == "cuda" for m in layer.modules())
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    out = layer(x)
    assert isinstance(out.data, np.ndarray)
    assert_close(out.data, nn.GELU()(x.data).data, rtol=1e-9, atol=1e-11)
    out.backward(np.ones((2, 3)))
    assert x.grad.shape == (2, 3)


def test_family_modules_are_exported_from_nn():
    from refvit import nn as refvit_nn

    assert refvit_nn.NeighborhoodAttention2D is refvit_nn.nat.NeighborhoodAttention2D
    for name in ("CSWinBlock", "LePEAttention", "MbConvBlock", "TransformerBlock2d", "ScaleAwareModulation",
                 "SMTBlock", "NATLayer", "DualBlock", "MergeBlock", "DualAttention"):
        assert issubclass(getattr(refvit_nn, name), refvit_nn.Module)
