"""Module constructor arguments are checked as the ops' are (issue 13, item 10): a wrong value
is refused when the module is built, naming the module and the argument; nothing is truncated."""
import numpy as np
import pytest

from refvit import nn
from refvit.nn.coatnet import Attention2d
from refvit.nn.cswin import CSWinBlock
from refvit.nn.cswin.attention import LePEAttention
from refvit.nn.dualvit.block import Attention as DualViTAttention
from refvit.nn.nat import NATLayer, NeighborhoodAttention2D
from refvit.nn.smt import ConvSelfAttention, ScaleAwareModulation


@pytest.mark.parametrize("build, error, message", [
    (lambda: nn.Linear(4, 2.5), TypeError, "Linear: 'out_features' must be an integer; got float 2.5"),
    (lambda: nn.Linear(4.9, 2), TypeError, "Linear: 'in_features' must be an integer; got float 4.9"),
    (lambda: nn.Linear(4, -1), ValueError, "Linear: 'out_features' must be an integer >= 0; got -1"),
    (lambda: nn.Linear(True, 2), TypeError, "Linear: 'in_features' must be an integer; got bool True"),
    (lambda: nn.Linear("4", 2), TypeError, "Linear: 'in_features' must be an integer; got str '4'"),
    (lambda: nn.LayerNorm(4.5), TypeError, "LayerNorm: 'normalized_shape' must be an integer; got float 4.5"),
    (lambda: nn.LayerNorm((4, 2)), ValueError, "LayerNorm: 'normalized_shape' must be one size"),
    (lambda: nn.LayerNorm(0), ValueError, "LayerNorm: 'normalized_shape' must be an integer >= 1; got 0"),
    (lambda: nn.LayerNorm(4, eps=-1e-5), ValueError, "LayerNorm: 'eps' must be a finite number >= 0"),
    (lambda: nn.LayerNorm(4, eps=float("nan")), ValueError, "LayerNorm: 'eps' must be a finite number >= 0"),
    (lambda: nn.Conv2d(3, 4, 0), ValueError, "Conv2d: 'kernel_size' must be an integer >= 1; got 0"),
    (lambda: nn.Conv2d(3, 4, (3, 0)), ValueError, "Conv2d: 'kernel_size' must be an integer >= 1; got 0"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, "Conv2d: 'stride' must be an integer >= 1; got 0"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, "Conv2d: 'padding' must be an integer >= 0; got -1"),
    (lambda: nn.Conv2d(3, 4, 3, dilation=0), ValueError, "Conv2d: 'dilation' must be an integer >= 1; got 0"),
    (lambda: nn.Conv2d(3, 4.0, 3), TypeError, "Conv2d: 'out_channels' must be an integer; got float 4.0"),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, "Conv2d: 'in_channels' must be an integer >= 1; got 0"),
    (lambda: nn.Conv2d(3, 4, 2.5), TypeError, "Conv2d: 'kernel_size' must be an integer or a pair"),
    (lambda: nn.Conv2d(4, 4, 3, groups=1.0), TypeError, "Conv2d: 'groups' must be an integer"),
    (lambda: nn.BatchNorm2d(3.0), TypeError, "BatchNorm2d: 'num_features' must be an integer; got float 3.0"),
    (lambda: nn.BatchNorm2d(0), ValueError, "BatchNorm2d: 'num_features' must be an integer >= 1; got 0"),
    (lambda: nn.BatchNorm2d(3, momentum=2.0), ValueError, "BatchNorm2d: 'momentum' must be a number in"),
    (lambda: nn.Dropout("0.1"), TypeError, "Dropout: 'p' must be a probability in \\[0, 1\\]; got str"),
    (lambda: nn.Dropout(True), TypeError, "Dropout: 'p' must be a probability"),
    (lambda: nn.DropPath(1.14), ValueError, "DropPath: 'drop_prob' must be a probability in \\[0, 1\\]; got 1.14"),
    (lambda: nn.AvgPool2d(0), ValueError, "AvgPool2d: 'kernel_size' must be an integer >= 1; got 0"),
    (lambda: nn.MaxPool2d(2.5), TypeError, "MaxPool2d: 'kernel_size' must be an integer; got float 2.5"),
    (lambda: nn.MaxPool2d(3, stride=0), ValueError, "MaxPool2d: 'stride' must be an integer >= 1; got 0"),
    (lambda: nn.AvgPool2d(3, padding=2), ValueError, r"AvgPool2d: 'padding' must be at most half the kernel"),
    (lambda: nn.GELU("erf"), ValueError, "GELU: 'approximate' must be one of 'none', 'tanh'; got 'erf'"),
    (lambda: nn.Softmax(dim=1.0), TypeError, "Softmax: 'dim' must be an integer"),
    (lambda: NeighborhoodAttention2D(8.0, 2, 3), TypeError, "NeighborhoodAttention2D: 'dim' must be an integer"),
    (lambda: NeighborhoodAttention2D(8, 2, 3.0), TypeError, "NeighborhoodAttention2D: 'kernel_size' must be an"),
    (lambda: NeighborhoodAttention2D(8, 0, 3), ValueError, "NeighborhoodAttention2D: 'num_heads' must be an "
                                                           "integer >= 1; got 0"),
    (lambda: NATLayer(8, 2.0, kernel_size=3), TypeError, "NATLayer: 'num_heads' must be an integer"),
    (lambda: NATLayer(8, 3, kernel_size=3), ValueError, "NATLayer: 'num_heads' must be a positive divisor"),
    (lambda: LePEAttention(8, 2.0, "horizontal"), TypeError, "LePEAttention: 'num_heads' must be an integer"),
    (lambda: LePEAttention(8, 2, "horizontal", split_size=1.5), TypeError, "LePEAttention: 'split_size'"),
    (lambda: CSWinBlock(8.5, 2), TypeError, "CSWinBlock: 'dim' must be an integer"),
    (lambda: ScaleAwareModulation(8, ca_num_heads=2.0), TypeError, "ScaleAwareModulation: 'ca_num_heads'"),
    (lambda: ConvSelfAttention(8, sa_num_heads=0), ValueError, "ConvSelfAttention: 'sa_num_heads'"),
    (lambda: DualViTAttention(8, 2.0), TypeError, "Attention: 'num_heads' must be an integer"),
    (lambda: Attention2d(8, dim_head=2.0), TypeError, "Attention2d: 'dim_head' must be an integer"),
])
def test_bad_constructor_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_numpy_integers_are_accepted_and_become_ints():
    linear = nn.Linear(np.int64(4), np.int32(2))
    assert linear.weight.shape == (2, 4) and type(linear.in_features) is int and type(linear.out_features) is int
    conv = nn.Conv2d(np.int64(3), 4, np.int8(3), stride=(np.int64(1), 2))
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 2) and type(conv.in_channels) is int
    assert nn.LayerNorm(np.int64(4)).normalized_shape == (4,) and nn.LayerNorm([4]).normalized_shape == (4,)
    assert nn.BatchNorm2d(np.int64(3)).num_features == 3
    assert nn.Dropout(np.float32(0.25)).p == 0.25 and nn.DropPath(1).drop_prob == 1.0


def test_zero_features_are_allowed_as_in_pytorch():
    assert nn.Linear(0, 3).weight.shape == (3, 0) and nn.Linear(3, 0).weight.shape == (0, 3)
