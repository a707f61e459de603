"""Dropout and DropPath (seeded, identity in eval), the random stream, and initialisation."""
import math

import numpy as np
import pytest

from refvit import nn
from refvit.autograd import Tensor
from refvit.nn import init
from refvit.testing import assert_close

@pytest.mark.parametrize("module", [nn.Dropout(0.5), nn.DropPath(0.5)])
def test_identity_in_eval(module):
    x = Tensor(np.ones((4, 3)), requires_grad=True)
    module.eval()
    assert module(x) is x


def test_dropout_in_training_is_seeded_scaled_and_differentiable():
    drop = nn.Dropout(0.25)
    x = Tensor(np.ones((50, 40)), requires_grad=True)
    nn.random.seed(7)
    first = drop(x)
    nn.random.seed(7)
    second = drop(x)
    assert np.array_equal(first.data, second.data)
    assert set(np.unique(first.data)) <= {0.0, 1.0 / 0.75}
    assert 0.2 < np.mean(first.data == 0.0) < 0.3
    first.backward(np.ones(x.shape))
    assert_close(x.grad, first.data)  # the gradient is the same scaled mask
    assert np.all(nn.Dropout(1.0)(x).data == 0.0)


def test_drop_path_drops_whole_samples():
    nn.random.seed(3)
    out = nn.DropPath(0.5)(Tensor(np.ones((64, 2, 3), np.float32))).data
    assert out.dtype == np.float32
    per_sample = out.reshape(64, -1)
    assert np.all(per_sample == per_sample[:, :1])  # one decision per sample
    assert set(np.unique(per_sample)) == {0.0, 2.0}
    unscaled = nn.DropPath(0.5, scale_by_keep=False)(Tensor(np.ones((8, 2)))).data
    assert set(np.unique(unscaled)) <= {0.0, 1.0}


def test_state_round_trip_resumes_bit_identically():
    drop = nn.Dropout(0.5)
    x = np.ones(100)
    nn.random.seed(11)
    drop(x)
    state = nn.random.get_state()
    expected = drop(x).data
    drop(x)
    nn.random.set_state(state)
    assert np.array_equal(drop(x).data, expected)


def test_bad_probabilities():
    with pytest.raises(ValueError, match="Dropout: 'p'"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="DropPath: 'drop_prob'"):
        nn.DropPath(-0.1)


def test_default_initialisation_bounds_follow_pytorch():
    nn.random.seed(0)
    layer = nn.Linear(16, 300)
    bound = 1.0 / math.sqrt(16)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.weight.data).max() > 0.9 * bound
    assert np.abs(layer.bias.data).max() <= bound
    conv = nn.Conv2d(4, 8, 3, groups=2)
    conv_bound = 1.0 / math.sqrt(2 * 9)
    assert np.abs(conv.weight.data).max() <= conv_bound and np.abs(conv.bias.data).max() <= conv_bound
    assert conv.weight.dtype == np.float32


def test_initialisation_is_seeded():
    nn.random.seed(5)
    a = nn.Linear(3, 3).weight.data.copy()
    nn.random.seed(5)
    assert np.array_equal(nn.Linear(3, 3).weight.data, a)


def test_init_functions():
    nn.random.seed(1)
    weight = nn.Parameter(np.empty((200, 100)))
    assert init.trunc_normal_(weight, std=0.02) is weight
    assert np.abs(weight.data).max() <= 2.0  # a, b are absolute bounds, as in PyTorch
    assert abs(weight.data.std() - 0.02) < 0.002
    clipped = init.trunc_normal_(np.empty(1000), mean=0.0, std=1.0, a=-0.5, b=0.5)
    assert clipped.min() >= -0.5 and clipped.max() <= 0.5 and clipped.std() > 0.2
    assert np.all(init.zeros_(np.ones(3)) == 0.0) and np.all(init.ones_(np.zeros(3)) == 1.0)
    assert np.all(init.constant_(np.zeros(2), 0.5) == 0.5)
    assert abs(init.normal_(np.empty(5000), 1.0, 2.0).std() - 2.0) < 0.1
    assert init.calculate_fan_in_and_fan_out((8, 4, 3, 3)) == (36, 72)
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    xavier = init.xavier_uniform_(np.empty((10, 20)))
    assert np.abs(xavier).max() <= math.sqrt(6 / 30)
    with pytest.raises(ValueError, match="init: fan in"):
        init.kaiming_uniform_(np.empty(3))


def test_shapes_only_builds_the_same_shapes_without_drawing():
    """``refvit models`` counts parameters inside ``init.shapes_only()``: the shapes are the model's, no
    value is drawn and the random stream is where it was."""
    from refvit.models import create_model
    from refvit.nn import random as nn_random
    from refvit.nn.init import shapes_only

    nn_random.seed(0)
    drawn = create_model("nat_nano").state_dict()
    nn_random.seed(0)
    with shapes_only():
        counted = create_model("nat_nano").state_dict()
    again = create_model("nat_nano").state_dict()
    assert {k: v.shape for k, v in counted.items()} == {k: v.shape for k, v in drawn.items()}
    assert all(np.array_equal(again[k], drawn[k]) for k in drawn)  # the stream did not move
