"""CSWin branch geometry and module contracts: head layout, cross-shaped receptive field, padding,
backends, stem and merge shapes, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refvit import ops
from refvit.autograd import Tensor
from refvit.models.cswin import CSWinTransformer
from refvit.nn.cswin import CSWinBlock, LePEAttention, MergeBlock, conv_embed
from refvit.testing import assert_close
from refvit.testing.strategies import seeds
from tests.conftest import tolerance


def test_branch_is_the_op_on_heads_first_channels(rng):
    """Channel head*d + j of the (B, H, W, C) map is [head, ..., j] of the op's (B, heads, H, W, d)."""
    branch = LePEAttention(12, 3, "horizontal", split_size=2, dtype=np.float64)
    q, k, v = (rng.standard_normal((2, 4, 3, 12)) for _ in range(3))
    heads_first = [x.reshape(2, 4, 3, 3, 4).transpose(0, 3, 1, 2, 4) for x in (q, k, v)]
    expected, _ = ops.stripe_attention.forward(*heads_first, (2, 3), lepe_weight=branch.get_v.weight.data,
                                               lepe_bias=branch.get_v.bias.data, backend="numpy")
    assert_close(branch(q, k, v).data, expected.transpose(0, 2, 3, 1, 4).reshape(2, 4, 3, 12))
    assert branch.scale == pytest.approx(4 ** -0.5)
    assert LePEAttention(12, 3, "full", qk_scale=0.0).scale == 0.0  # an explicit zero is kept


@st.composite
def cross_problems(draw):
    split = draw(st.integers(1, 2))
    return split, split * draw(st.integers(1, 3)), split * draw(st.integers(1, 3)), draw(seeds())


@given(cross_problems())
def test_block_output_sees_the_cross_through_its_token(problem):
    """d out[y, x] / d input is nonzero exactly on the vertical stripe and the horizontal stripe of (y, x)."""
    split, height, width, seed = problem
    rng = np.random.default_rng(seed)
    block = CSWinBlock(8, 2, split_size=split, qkv_bias=True, dtype=np.float64)
    x = Tensor(rng.standard_normal((1, height, width, 8)), requires_grad=True)
    out = block(x)
    y0, x0 = int(rng.integers(height)), int(rng.integers(width))
    upstream = np.zeros(out.shape)
    upstream[0, y0, x0] = rng.standard_normal(8)
    out.backward(upstream)
    reached = np.abs(x.grad[0]).sum(axis=-1) > 0
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    same_column_stripe = cols // split == x0 // split
    same_row_stripe = rows // split == y0 // split
    np.testing.assert_array_equal(reached, same_column_stripe | same_row_stripe)


def test_padding_is_a_no_op_on_divisible_maps(rng):
    plain = CSWinBlock(8, 2, split_size=2, qkv_bias=True, dtype=np.float64)
    padded = CSWinBlock(8, 2, split_size=2, qkv_bias=True, pad_to_stripes=True, dtype=np.float64)
    padded.load_state_dict(plain.state_dict())
    x = rng.standard_normal((2, 4, 6, 8))
    assert_close(padded(x).data, plain(x).data)


def test_padded_branch_is_pad_attend_crop(rng):
    """Zero q, k, v around the map (pad // 2 before, the rest after), attend without a mask, crop."""
    branch = LePEAttention(4, 2, "vertical", split_size=4, pad_to_stripes=True, dtype=np.float64)
    q, k, v = (rng.standard_normal((1, 3, 5, 4)) for _ in range(3))  # width 5 -> 8: 1 column left, 2 right
    padded = [np.pad(a, ((0, 0), (0, 0), (1, 2), (0, 0))).reshape(1, 3, 8, 2, 2).transpose(0, 3, 1, 2, 4)
              for a in (q, k, v)]
    full, _ = ops.stripe_attention.forward(*padded, (3, 4), lepe_weight=branch.get_v.weight.data,
                                           lepe_bias=branch.get_v.bias.data, backend="numpy")
    expected = full.transpose(0, 2, 3, 1, 4).reshape(1, 3, 8, 4)[:, :, 1:6]
    assert_close(branch(q, k, v).data, expected)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_block_backends_agree(rng, dtype, backend):
    block = CSWinBlock(8, 2, split_size=2, qkv_bias=True, dtype=dtype)
    x = rng.standard_normal((1, 2, 4, 8)).astype(dtype)
    upstream = rng.standard_normal(x.shape).astype(dtype)
    results = []
    for name in ("cpu", backend):
        block.to(name).zero_grad()
        x_tensor = Tensor(x.copy(), requires_grad=True)
        out = block(x_tensor)
        out.backward(upstream)
        results.append((out.data, x_tensor.grad, block.attns[1].get_v.weight.grad, block.qkv.weight.grad))
    for got, expected, what in zip(results[1], results[0], ("output", "dx", "dget_v", "dqkv")):
        assert got.dtype == dtype
        assert_close(got, expected, **tolerance(dtype), name=f"{backend} vs cpu: {what}")


def test_stem_and_merge_shapes(rng):
    stem = conv_embed(3, 8, dtype=np.float64)
    assert list(stem.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert stem(rng.standard_normal((1, 32, 28, 3))).shape == (1, 8, 7, 8)
    merge = MergeBlock(8, 16, dtype=np.float64)
    assert list(merge.state_dict()) == ["conv.weight", "conv.bias", "norm.weight", "norm.bias"]
    out = merge(rng.standard_normal((2, 5, 4, 8))).data
    assert out.shape == (2, 3, 2, 16)
    assert_close(out.mean(axis=-1), np.zeros((2, 3, 2)), atol=1e-12)  # LayerNorm with unit weight, zero bias


def test_single_branch_rule():
    assert CSWinBlock(8, 2, split_size=7, reso=7).branch_num == 1  # resolution equals split size (official rule)
    assert CSWinBlock(8, 2, split_size=7, reso=14).branch_num == 2
    assert CSWinBlock(9, 3, split_size=7, last_stage=True).branch_num == 1  # odd heads are fine with one branch
    block = CSWinBlock(8, 2, split_size=2)
    assert [b.orientation for b in block.attns] == ["vertical", "horizontal"]
    assert [b.num_heads for b in block.attns] == [1, 1] and [b.dim for b in block.attns] == [4, 4]


def test_bad_input_raises(rng):
    block = CSWinBlock(8, 2, split_size=3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"LePEAttention: 'q' must be a map whose stripes \(4, 3\) divide it"):
        block(rng.standard_normal((1, 4, 4, 8)))
    with pytest.raises(ValueError, match=r"CSWinBlock: 'x' must be a \(B, H, W, 8\) map; got shape \(1, 3, 3, 6\)"):
        block(rng.standard_normal((1, 3, 3, 6)))
    with pytest.raises(ValueError, match="CSWinBlock: 'num_heads' must be even"):
        CSWinBlock(12, 3, split_size=2)
    with pytest.raises(ValueError, match="CSWinBlock: 'num_heads' must be positive and divide dim"):
        CSWinBlock(8, 3, split_size=2)
    with pytest.raises(ValueError, match="LePEAttention: 'orientation' must be one of"):
        LePEAttention(8, 2, "diagonal")
    with pytest.raises(ValueError, match="LePEAttention: 'split_size' must be a positive integer"):
        LePEAttention(8, 2, "vertical", split_size=0)
    with pytest.raises(ValueError, match="CSWinTransformer: 'depth', 'split_size', 'num_heads' must have 4 entries"):
        CSWinTransformer(depth=(1, 1, 1))
