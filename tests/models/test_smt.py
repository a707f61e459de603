"""SMT modules and models: state_dict layout of SMT-T, the modulation's structure, gradients, nano runs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refvit import nn
from refvit.autograd import Tensor, no_grad
from refvit.models import create_model, list_models, model_info
from refvit.models.smt import SMT, block_uses_modulation, rename_dw_conv
from refvit.nn.smt import (
    ConvSelfAttention, ConvStem, DWConvMlp, OverlapPatchEmbed, ScaleAwareModulation, SMTBlock, regroup_heads,
    ungroup_heads,
)
from refvit.testing import assert_close, numerical_vjp, relative_error


# ---- expected state_dict of the official smt_t, written from the official class structure
def official_smt_keys(embed_dims, ca_heads, sa_heads, mlp_ratios, depths, ca_attentions, expand_ratio=2,
                      num_classes=1000, in_chans=3, head_conv=3):
    keys = {}

    def linear(name, n_in, n_out, bias=True):
        keys[f"{name}.weight"] = (n_out, n_in)
        if bias:
            keys[f"{name}.bias"] = (n_out,)

    def conv(name, n_in, n_out, kernel, groups=1, bias=True):
        keys[f"{name}.weight"] = (n_out, n_in // groups, kernel, kernel)
        if bias:
            keys[f"{name}.bias"] = (n_out,)

    def norm(name, width):
        keys[f"{name}.weight"] = keys[f"{name}.bias"] = (width,)

    def batch_norm(name, width):
        norm(name, width)
        keys[f"{name}.running_mean"] = keys[f"{name}.running_var"] = (width,)
        keys[f"{name}.num_batches_tracked"] = ()

    conv("patch_embed1.conv.0", in_chans, embed_dims[0], head_conv, bias=False)
    batch_norm("patch_embed1.conv.1", embed_dims[0])
    conv("patch_embed1.conv.3", embed_dims[0], embed_dims[0], 2)
    norm("patch_embed1.norm", embed_dims[0])
    for i, dim in enumerate(embed_dims):
        if i > 0:
            conv(f"patch_embed{i + 1}.proj", embed_dims[i - 1], dim, 3)
            norm(f"patch_embed{i + 1}.norm", dim)
        for j in range(depths[i]):
            p = f"block{i + 1}.{j}."
            norm(p + "norm1", dim)
            norm(p + "norm2", dim)
            linear(p + "attn.proj", dim, dim)
            if (0 if i == 2 and j % 2 != 0 else ca_attentions[i]) == 1:
                heads = ca_heads[i]
                linear(p + "attn.v", dim, dim)
                linear(p + "attn.s", dim, dim)
                for h in range(heads):
                    conv(f"{p}attn.local_conv_{h + 1}", dim // heads, dim // heads, 3 + 2 * h, groups=dim // heads)
                conv(p + "attn.proj0", dim, dim * expand_ratio, 1, groups=dim // heads)
                batch_norm(p + "attn.bn", dim * expand_ratio)
                conv(p + "attn.proj1", dim * expand_ratio, dim, 1)
            else:
                assert dim % sa_heads[i] == 0
                linear(p + "attn.q", dim, dim)
                linear(p + "attn.kv", dim, 2 * dim)
                conv(p + "attn.local_conv", dim, dim, 3, groups=dim)
            hidden = int(dim * mlp_ratios[i])
            linear(p + "mlp.fc1", dim, hidden)
            conv(p + "mlp.dwconv.dwconv", hidden, hidden, 3, groups=hidden)
            linear(p + "mlp.fc2", hidden, dim)
        norm(f"norm{i + 1}", dim)
    linear("head", embed_dims[-1], num_classes)
    return keys


def test_smt_tiny_state_dict_equals_official_smt_t():
    model = create_model("smt_tiny")
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    expected = official_smt_keys((64, 128, 256, 512), (4, 4, 4, -1), (-1, -1, 8, 16), (4, 4, 4, 2), (2, 2, 8, 1),
                                 (1, 1, 1, 0))
    assert set(ours) == set(expected), (sorted(set(ours) - set(expected)), sorted(set(expected) - set(ours)))
    assert ours == expected
    parameters = sum(p.size for p in model.parameters())
    assert 11.4e6 < parameters < 11.6e6  # SMT-T: 11.5M
    assert model.state_dict()["block3.0.attn.bn.num_batches_tracked"].dtype == np.int64


def test_smt_nano_state_dict_and_size():
    model = create_model("smt_nano")
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert ours == official_smt_keys((32, 64, 96, 128), (4, 4, 4, -1), (-1, -1, 4, 8), (4, 4, 4, 2), (1, 1, 2, 1),
                                     (1, 1, 1, 0), num_classes=10)
    assert 0.3e6 < sum(p.size for p in model.parameters()) < 2e6
    kinds = [type(b.attn) for stage in range(1, 5) for b in getattr(model, f"block{stage}")]
    assert kinds == [ScaleAwareModulation, ScaleAwareModulation, ScaleAwareModulation, ConvSelfAttention,
                     ConvSelfAttention]


def test_registry_and_mixed_stage_rule():
    assert {"smt_nano", "smt_tiny"} <= set(list_models("smt"))
    assert model_info("smt_nano").img_size == 32 and model_info("smt_tiny").img_size == 224
    rule = [block_uses_modulation(2, j, (1, 1, 1, 0)) for j in range(8)]
    assert rule == [True, False] * 4
    assert not block_uses_modulation(3, 0, (1, 1, 1, 0)) and block_uses_modulation(1, 1, (1, 1, 1, 0))


def test_rename_dw_conv_maps_the_later_revision_names():
    renamed = rename_dw_conv({"block3.1.attn.dw_conv.weight": 1, "block1.0.attn.local_conv_2.bias": 2})
    assert renamed == {"block3.1.attn.local_conv.weight": 1, "block1.0.attn.local_conv_2.bias": 2}


# ---- structure of the scale-aware modulation
def official_regroup(x_nchw, heads):
    """The official order: each head's output (B, C_h, H, W) reshaped to (B, C_h, 1, H, W), concatenated on axis 2."""
    batch, channels, height, width = x_nchw.shape
    per_head = channels // heads
    pieces = [x_nchw[:, i * per_head:(i + 1) * per_head].reshape(batch, per_head, 1, height, width)
              for i in range(heads)]
    return np.concatenate(pieces, axis=2).reshape(batch, channels, height, width)


@given(heads=st.integers(1, 4), per_head=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_regroup_matches_official_order_and_inverse_is_identity(heads, per_head, seed):
    x = np.random.default_rng(seed).standard_normal((2, 3, 2, heads * per_head))
    regrouped = regroup_heads(Tensor(x), heads).data
    expected = official_regroup(x.transpose(0, 3, 1, 2), heads).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(regrouped, expected)
    np.testing.assert_array_equal(ungroup_heads(Tensor(regrouped), heads).data, x)


def test_modulation_with_unit_modulator_is_proj_of_v(rng):
    sam = ScaleAwareModulation(8, ca_num_heads=2, qkv_bias=True, dtype=np.float64)
    sam.proj1.weight.data[...] = 0.0
    sam.proj1.bias.data[...] = 1.0  # modulator == 1 whatever s, the convolutions and BN do
    x = rng.standard_normal((2, 4, 3, 8))
    with no_grad():
        out = sam(x).data
        expected = sam.proj(sam.v(x)).data
    assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_modulation_is_the_mixed_scale_pipeline(rng):
    """The forward equals the documented composition of the ops, one step at a time."""
    from refvit import ops

    sam = ScaleAwareModulation(8, ca_num_heads=4, qkv_bias=True, dtype=np.float64).eval()
    sam.bn.running_mean[...] = rng.standard_normal(16)
    sam.bn.running_var[...] = rng.uniform(0.5, 2.0, 16)
    x = rng.standard_normal((1, 5, 4, 8))
    s = x @ sam.s.weight.data.T + sam.s.bias.data
    convs = sam.local_convs()
    s, _ = ops.multiscale_dwconv.forward(s, [c.weight.data for c in convs], [c.bias.data for c in convs], 4,
                                         backend="numpy")
    s = official_regroup(s.transpose(0, 3, 1, 2), 4).transpose(0, 2, 3, 1)
    s, _ = ops.conv2d.forward(s, sam.proj0.weight.data, sam.proj0.bias.data, groups=2, backend="numpy")
    s = (s - sam.bn.running_mean) / np.sqrt(sam.bn.running_var + 1e-5)
    s, _ = ops.gelu.forward(s, backend="numpy")
    m = s @ sam.proj1.weight.data[:, :, 0, 0].T + sam.proj1.bias.data
    v = x @ sam.v.weight.data.T + sam.v.bias.data
    expected = (m * v) @ sam.proj.weight.data.T + sam.proj.bias.data
    with no_grad():
        assert_close(sam.to("numpy")(x).data, expected, rtol=1e-10, atol=1e-12)


# ---- gradients by central differences (float64)
def selected_vjp_check(module, x, picks, seed=0, tol=1e-6):
    """Compare ``Tensor.backward`` with central differences on chosen elements.

    ``picks``: ``{"input" or parameter name: flat indices}``; every other value stays fixed.
    """
    params = dict(module.named_parameters())
    rng = np.random.default_rng(seed)
    x_tensor = Tensor(x, requires_grad=True)
    module.zero_grad()
    out = module(x_tensor)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    arrays = {name: (x if name == "input" else params[name].data) for name in picks}
    grads = {name: (x_tensor.grad if name == "input" else params[name].grad) for name in picks}

    def forward(*values):
        saved = {name: arrays[name].copy() for name in picks}
        try:
            for name, value in zip(picks, values):
                arrays[name].reshape(-1)[picks[name]] = value
            with no_grad():
                return module(x).data
        finally:
            for name in picks:
                arrays[name][...] = saved[name]

    values = [arrays[name].reshape(-1)[picks[name]].copy() for name in picks]
    numeric = numerical_vjp(forward, values, upstream)
    for name, estimate in zip(picks, numeric):
        analytic = grads[name].reshape(-1)[picks[name]]
        error = relative_error(analytic, estimate)
        assert error < tol, f"{name}: relative error {error:.2e}"


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_modulation_gradients_with_batch_norm(training, rng):
    sam = ScaleAwareModulation(8, ca_num_heads=2, qkv_bias=True, dtype=np.float64).to("numpy")
    sam.bn.running_mean[...] = rng.standard_normal(16) * 0.1
    sam.bn.running_var[...] = rng.uniform(0.5, 2.0, 16)
    sam.bn.weight.data[...] = rng.uniform(0.5, 1.5, 16)
    sam.bn.bias.data[...] = rng.standard_normal(16) * 0.1
    sam.train(training)
    x = rng.standard_normal((2, 3, 4, 8))
    picks = {"input": np.arange(0, x.size, 3), "s.weight": np.arange(64), "s.bias": np.arange(8),
             "local_conv_2.weight": np.arange(50), "proj0.weight": np.arange(32), "bn.weight": np.arange(16),
             "bn.bias": np.arange(16), "proj1.weight": np.arange(0, 128, 5), "v.bias": np.arange(8)}
    if not training:  # in training these are per-channel shifts that BatchNorm's batch mean removes
        picks.update({"local_conv_1.bias": np.arange(4), "proj0.bias": np.arange(16)})
    selected_vjp_check(sam, x, picks)
    if training:
        assert np.abs(sam.local_conv_1.bias.grad).max() < 1e-12 and np.abs(sam.proj0.bias.grad).max() < 1e-12


def test_self_attention_block_gradients(rng):
    block = SMTBlock(8, -1, 2, mlp_ratio=2.0, qkv_bias=True, ca_attention=0, dtype=np.float64).to("numpy")
    for parameter in block.parameters():  # break the symmetry of ones/zeros norms
        parameter.data += 0.1 * rng.standard_normal(parameter.shape)
    x = rng.standard_normal((2, 3, 2, 8))
    picks = {"input": np.arange(0, x.size, 2), "attn.q.weight": np.arange(0, 64, 3),
             "attn.kv.weight": np.arange(0, 128, 4), "attn.local_conv.weight": np.arange(72),
             "mlp.dwconv.dwconv.weight": np.arange(0, 144, 3), "norm1.weight": np.arange(8)}
    selected_vjp_check(block, x, picks)


def test_smt_nano_gradients_on_a_tiny_input(rng):
    nn.random.seed(3)
    model = create_model("smt_nano", dtype=np.float64).to("numpy").eval()
    for name, buffer in model.named_buffers():
        if name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)
    for parameter in model.parameters():  # unit-scale weights: the init's std .02 leaves gradients near noise
        if parameter.ndim >= 2:
            parameter.data[...] = rng.standard_normal(parameter.shape) / np.sqrt(parameter.size // parameter.shape[0])
    x = rng.standard_normal((2, 16, 16, 3))
    picks = {"input": np.arange(0, x.size, 97), "patch_embed1.conv.0.weight": np.arange(0, 96, 11),
             "block1.0.attn.local_conv_4.weight": np.arange(0, 648, 61), "block1.0.attn.bn.weight": np.arange(0, 64, 7),
             "block3.1.attn.kv.weight": np.arange(0, 96 * 192, 1999), "head.weight": np.arange(0, 1280, 131)}
    selected_vjp_check(model, x, picks)


# ---- nano model runs
def test_smt_nano_forward_backward_float32():
    model = create_model("smt_nano")
    x = Tensor(np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32), requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    logits.backward(np.ones((2, 10), np.float32))
    assert x.grad.shape == (2, 32, 32, 3)
    assert all(p.grad is not None and np.all(np.isfinite(p.grad)) for p in model.parameters())
    assert int(model.block1[0].attn.bn.num_batches_tracked) == 1


def test_features_without_classifier():
    model = SMT(num_classes=0, embed_dims=(8, 16, 16, 16), ca_num_heads=(2, 2, 2, -1), sa_num_heads=(-1, -1, 2, 2),
                mlp_ratios=(1, 1, 1, 1), depths=(1, 1, 2, 1), dtype=np.float64).eval()
    with no_grad():
        features = model(np.random.default_rng(1).standard_normal((1, 16, 16, 3)))
    assert features.shape == (1, 16)


def test_modules_keep_channels_last_shapes(rng):
    x = rng.standard_normal((1, 5, 3, 8)).astype(np.float32)
    with no_grad():
        assert DWConvMlp(8, 16)(x).shape == (1, 5, 3, 8)
        assert OverlapPatchEmbed(3, 2, 8, 12)(x).shape == (1, 3, 2, 12)
        assert ConvStem(7, 4)(rng.standard_normal((1, 8, 8, 3)).astype(np.float32)).shape == (1, 2, 2, 4)
        assert ConvSelfAttention(8, 4)(x).shape == (1, 5, 3, 8)


@pytest.mark.cuda
def test_blocks_on_cuda_equal_numpy(rng):
    for ca_attention in (1, 0):
        block = SMTBlock(4, 2, 2, mlp_ratio=1.0, qkv_bias=True, ca_attention=ca_attention, dtype=np.float64).eval()
        x = rng.standard_normal((1, 3, 2, 4))
        results = []
        for backend in ("numpy", "cuda"):
            block.to(backend).zero_grad()
            x_tensor = Tensor(x, requires_grad=True)
            out = block(x_tensor)
            out.backward(np.ones(out.shape))
            results.append((out.data, x_tensor.grad, block.attn.proj.weight.grad.copy()))
        for expected, got in zip(*results):
            assert_close(got, expected, rtol=1e-9, atol=1e-11)


def test_cpu_backend_equals_numpy(rng):
    model = SMT(num_classes=3, embed_dims=(8, 8, 8, 8), ca_num_heads=(2, 2, 2, -1), sa_num_heads=(-1, -1, 2, 2),
                mlp_ratios=(1, 1, 1, 1), depths=(1, 1, 2, 1), dtype=np.float64)
    x = rng.standard_normal((2, 16, 16, 3))
    results = []
    for backend in ("numpy", "cpu"):
        state = {k: v.copy() for k, v in model.state_dict().items()}
        model.to(backend).zero_grad()
        x_tensor = Tensor(x, requires_grad=True)
        out = model(x_tensor)
        out.backward(np.ones(out.shape))
        results.append((out.data, x_tensor.grad, model.block1[0].attn.local_conv_2.weight.grad.copy(),
                        model.block1[0].attn.bn.running_var.copy()))
        model.load_state_dict(state)  # undo the running-statistics update
    for expected, got in zip(*results):
        assert_close(got, expected, rtol=1e-9, atol=1e-11)


# ---- bad arguments
@pytest.mark.parametrize("build, message", [
    (lambda: ScaleAwareModulation(10, ca_num_heads=4), "ScaleAwareModulation: 'ca_num_heads'"),
    (lambda: ScaleAwareModulation(8, ca_num_heads=2, expand_ratio=0), "ScaleAwareModulation: 'expand_ratio'"),
    (lambda: ConvSelfAttention(8, sa_num_heads=3), "ConvSelfAttention: 'sa_num_heads'"),
    (lambda: ConvSelfAttention(8, sa_num_heads=2, attn_drop=0.1), "ConvSelfAttention: 'attn_drop'"),
    (lambda: SMTBlock(8, 2, 2, ca_attention=2), "SMTBlock: 'ca_attention'"),
    (lambda: ConvStem(5, 8), "ConvStem: 'head_conv'"),
    (lambda: SMT(depths=(1, 1)), "SMT: 'depths'"),
])
def test_bad_arguments_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_mixed_dtypes_raise():
    sam = ScaleAwareModulation(8, ca_num_heads=2, dtype=np.float64)
    with pytest.raises(TypeError, match="linear: "):
        sam(np.zeros((1, 3, 3, 8), np.float32))
