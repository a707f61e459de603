"""DualViT modules and models: official state_dict layout, numerics against a PyTorch DualViT written
from the official semantics (refvit/torch_ports/dualvit.py), gradients, training mode."""
import numpy as np
import pytest
import torch

import refvit
from refvit.autograd import Tensor
from refvit.models import create_model, list_models, model_info
from refvit.models.dualvit import DualViT
from refvit.nn.dualvit import ClassBlock, DualBlock, MergeBlock, SemanticTokenInit, bicubic_matrix
from refvit.testing import assert_close, check_module_gradients

SMALL = dict(stem_hidden_dim=32, embed_dims=(64, 128, 320, 448), num_heads=(2, 4, 10, 14), mlp_ratios=(8, 8, 4, 3, 2),
             depths=(3, 4, 6, 3))
NANO = dict(stem_hidden_dim=16, embed_dims=(32, 64, 96, 128), num_heads=(1, 2, 3, 4), mlp_ratios=(4, 4, 3, 2, 2),
            depths=(1, 1, 2, 1))


def _linear(shapes, key, fan_in, fan_out):
    shapes[key + ".weight"], shapes[key + ".bias"] = (fan_out, fan_in), (fan_out,)


def _norm(shapes, key, dim):
    shapes[key + ".weight"], shapes[key + ".bias"] = (dim,), (dim,)


def official_shapes(num_classes, stem_hidden_dim, embed_dims, num_heads, mlp_ratios, depths, tokens=64,
                    token_label=True):
    """Keys and shapes of the official DualViT, from its structure (classification/dualvit.py)."""
    dim0, shapes = embed_dims[0], {"q": (tokens, embed_dims[0])}
    _norm(shapes, "q_embed.0", dim0)
    _linear(shapes, "q_embed.1", dim0, dim0)
    _linear(shapes, "kv", dim0, 2 * dim0)
    _norm(shapes, "proxy_ln", dim0)
    _linear(shapes, "se.0", dim0, dim0)
    _linear(shapes, "se.2", dim0, 2 * dim0)
    for stage, dim in enumerate(embed_dims):
        if stage == 0:
            stem = "patch_embed1."
            shapes[stem + "conv.0.weight"] = (stem_hidden_dim, 3, 7, 7)
            for conv in (3, 6):
                shapes[f"{stem}conv.{conv}.weight"] = (stem_hidden_dim, stem_hidden_dim, 3, 3)
            for bn in (1, 4, 7):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{stem}conv.{bn}.{name}"] = (stem_hidden_dim,)
                shapes[f"{stem}conv.{bn}.num_batches_tracked"] = ()
            shapes[stem + "proj.weight"], shapes[stem + "proj.bias"] = (dim, stem_hidden_dim, 3, 3), (dim,)
            _norm(shapes, stem + "norm", dim)
        else:
            previous = embed_dims[stage - 1]
            _linear(shapes, f"proxy_embed{stage + 1}.proj_proxy.0", previous, dim)
            _norm(shapes, f"proxy_embed{stage + 1}.proj_proxy.1", dim)
            down = f"patch_embed{stage + 1}."
            shapes[down + "proj.weight"], shapes[down + "proj.bias"] = (dim, previous, 3, 3), (dim,)
            _norm(shapes, down + "norm", dim)
        for index in range(depths[stage]):
            block = f"block{stage + 1}.{index}."
            ratio = mlp_ratios[stage] - 1 if stage == 2 and index % 2 else mlp_ratios[stage]
            hidden = int(dim * ratio)
            shapes[block + "gamma1"] = shapes[block + "gamma2"] = (dim,)
            _norm(shapes, block + "norm1", dim)
            _norm(shapes, block + "norm2", dim)
            _linear(shapes, block + "attn.q", dim, dim)
            _linear(shapes, block + "attn.kv", dim, 2 * dim)
            _linear(shapes, block + "attn.proj", dim, dim)
            _linear(shapes, block + "mlp.fc1", dim, hidden)
            shapes[block + "mlp.dwconv.dwconv.weight"] = (hidden, 1, 3, 3)
            shapes[block + "mlp.dwconv.dwconv.bias"] = (hidden,)
            _linear(shapes, block + "mlp.fc2", hidden, dim)
            if stage < 2:
                attn = block + "attn."
                for gamma in ("gamma1", "gamma2", "gamma3"):
                    shapes[attn + gamma] = (dim,)
                _linear(shapes, attn + "q_proxy", dim, dim)
                _linear(shapes, attn + "kv_proxy", dim, 2 * dim)
                for norm in ("q_proxy_ln", "p_ln", "proxy_ln", "qkv_proxy.0"):
                    _norm(shapes, attn + norm, dim)
                _linear(shapes, attn + "mlp_proxy.0", dim, 4 * dim)
                _linear(shapes, attn + "mlp_proxy.2", 4 * dim, dim)
                _linear(shapes, attn + "qkv_proxy.1", dim, 3 * dim)
            else:
                _linear(shapes, block + "mlp.fc_proxy.0", dim, 2 * dim)
                _linear(shapes, block + "mlp.fc_proxy.2", 2 * dim, dim)
        _norm(shapes, f"norm{stage + 1}", dim)
        if stage < 3:
            _norm(shapes, f"norm_proxy{stage + 1}", dim)
    dim = embed_dims[-1]
    head = "post_network.0."
    _norm(shapes, head + "norm1", dim)
    _norm(shapes, head + "norm2", dim)
    _linear(shapes, head + "attn.kv", dim, 2 * dim)
    _linear(shapes, head + "attn.q", dim, dim)
    _linear(shapes, head + "attn.proj", dim, dim)
    _linear(shapes, head + "mlp.fc1", dim, int(dim * mlp_ratios[-1]))
    _linear(shapes, head + "mlp.fc2", int(dim * mlp_ratios[-1]), dim)
    _linear(shapes, "head", dim, num_classes)
    if token_label:
        _linear(shapes, "aux_head", dim, num_classes)
    return shapes


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- layout

def test_dualvit_s_state_dict_equals_official_layout():
    model = create_model("dualvit_s")
    expected = official_shapes(1000, **SMALL)
    got = _shapes(model)
    assert set(got) == set(expected)
    assert got == expected
    assert list(got)[:3] == ["q", "q_embed.0.weight", "q_embed.0.bias"]
    parameters = sum(p.size for p in model.parameters())
    assert parameters == sum(int(np.prod(s)) for k, s in expected.items()
                             if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert 25.0e6 < parameters < 25.2e6  # the paper's 25.1M (aux_head included)


def test_registry_nano_layout_and_size():
    assert {"dualvit_s", "dualvit_nano"} <= set(list_models("dualvit"))
    assert model_info("dualvit_s").img_size == 224 and model_info("dualvit_nano").img_size == 32
    model = create_model("dualvit_nano")
    assert _shapes(model) == official_shapes(10, tokens=4, **NANO)
    assert 3e5 < sum(p.size for p in model.parameters()) < 2e6
    plain = create_model("dualvit_nano", token_label=False)
    assert "aux_head.weight" not in plain.state_dict()


def test_initialisation_follows_official():
    model = create_model("dualvit_nano")
    block = model.block1[0]
    weight = block.attn.kv_proxy.weight.data
    assert abs(float(weight.std()) - 0.02) < 0.004 and np.abs(weight).max() <= 2.0
    assert not block.attn.kv_proxy.bias.data.any()
    for gamma in (block.gamma1, block.gamma2, block.attn.gamma1, block.attn.gamma2, block.attn.gamma3,
                  model.block3[1].gamma2):
        assert (gamma.data == np.float32(1e-6)).all()
    conv = model.block2[0].mlp.dwconv.dwconv  # depthwise: fan_out = 9 * C_out / groups = 9
    assert abs(float(conv.weight.data.std()) - (2.0 / 9) ** 0.5) < 0.1 and not conv.bias.data.any()
    assert abs(float(model.q.data.std()) - 0.02) < 0.015
    assert (model.norm1.weight.data == 1).all() and model.norm1.eps == 1e-6
    assert model.proxy_ln.eps == 1e-5 and block.attn.p_ln.eps == 1e-5 and model.patch_embed1.norm.eps == 1e-5


# ---------------------------------------------------------------- numerics against torch

def _compare_params(ours, theirs_params, keys, label):
    ours_params = dict(ours.named_parameters())
    for key in keys:
        assert_close(ours_params[key].grad, theirs_params[key].grad.numpy(), name=f"{label}: d{key}")


def test_dual_block_matches_torch(rng):
    from refvit.torch_ports import dualvit as ref

    theirs = ref.randomise(ref.DualBlock(8, 2, 2.0), seed=1)
    ours = DualBlock(8, 2, 2.0, dtype=np.float64)
    assert _shapes(ours) == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    ours.load_state_dict(ref.state_numpy(theirs.state_dict()))
    x, sem = rng.standard_normal((2, 12, 8)), rng.standard_normal((2, 3, 8))
    up_x, up_sem = rng.standard_normal(x.shape), rng.standard_normal(sem.shape)
    x_ours, sem_ours = Tensor(x, requires_grad=True), Tensor(sem, requires_grad=True)
    out, sem_out = ours(x_ours, 3, 4, sem_ours)
    ((out * up_x).sum() + (sem_out * up_sem).sum()).backward()
    x_t, sem_t = torch.tensor(x, requires_grad=True), torch.tensor(sem, requires_grad=True)
    out_t, sem_out_t = theirs(x_t, 3, 4, sem_t)
    ((out_t * torch.tensor(up_x)).sum() + (sem_out_t * torch.tensor(up_sem)).sum()).backward()
    assert_close(out.data, out_t.detach().numpy(), name="pixel tokens")
    assert_close(sem_out.data, sem_out_t.detach().numpy(), name="semantic tokens")
    assert_close(x_ours.grad, x_t.grad.numpy(), name="d pixels")
    assert_close(sem_ours.grad, sem_t.grad.numpy(), name="d semantics")
    _compare_params(ours, dict(theirs.named_parameters()), [k for k, _ in ours.named_parameters()], "DualBlock")


def test_merge_block_and_class_block_match_torch(rng):
    from refvit.torch_ports import dualvit as ref

    for ours, theirs, args in ((MergeBlock(12, 3, 2.0, dtype=np.float64), ref.MergeBlock(12, 3, 2.0), (2, 3)),
                               (ClassBlock(12, 3, 2.0, dtype=np.float64), ref.ClassBlock(12, 3, 2.0), ())):
        label = type(ours).__name__
        theirs = ref.randomise(theirs, seed=2)
        ours.load_state_dict(ref.state_numpy(theirs.state_dict()))
        z = rng.standard_normal((2, 6 + 4, 12))
        upstream = rng.standard_normal(z.shape)
        z_ours = Tensor(z, requires_grad=True)
        out = ours(z_ours, *args)
        out.backward(upstream)
        z_t = torch.tensor(z, requires_grad=True)
        out_t = theirs(z_t, *args)
        out_t.backward(torch.tensor(upstream))
        assert_close(out.data, out_t.detach().numpy(), name=f"{label} output")
        assert_close(z_ours.grad, z_t.grad.numpy(), name=f"{label} input gradient")
        _compare_params(ours, dict(theirs.named_parameters()), [k for k, _ in ours.named_parameters()], label)


@pytest.mark.parametrize("size, tokens, pool", [(8, 4, 4), (12, 64, 4)])  # grid 2x2 = 4; 3x3 from 8x8 (bicubic)
def test_semantic_token_init_matches_torch(rng, size, tokens, pool):
    from refvit.torch_ports import dualvit as ref

    theirs = ref.randomise(ref.SemanticInit(8, tokens, pool), seed=3)
    ours = SemanticTokenInit(8, tokens, pool, dtype=np.float64)
    ours.load_state_dict(ref.state_numpy(theirs.state_dict()))
    x = rng.standard_normal((2, size, size, 8))
    x_ours = Tensor(x, requires_grad=True)
    out = ours(x_ours)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    x_t = torch.tensor(x.reshape(2, size * size, 8), requires_grad=True)
    out_t = theirs(x_t, size, size)
    out_t.backward(torch.tensor(upstream))
    assert_close(out.data, out_t.detach().numpy(), name="semantic tokens")
    assert_close(x_ours.grad, x_t.grad.numpy().reshape(x.shape), name="d stem output")
    _compare_params(ours, dict(theirs.named_parameters()), ["q", "q_embed.1.weight", "kv.weight", "se.2.bias"],
                    "SemanticTokenInit")


def test_bicubic_matrix_matches_torch_interpolate(rng):
    image = rng.standard_normal((8, 8))
    for size_h, size_w in ((1, 1), (3, 5), (8, 8), (13, 6)):
        ours = bicubic_matrix(8, size_h) @ image @ bicubic_matrix(8, size_w).T
        theirs = torch.nn.functional.interpolate(torch.tensor(image)[None, None], size=(size_h, size_w),
                                                 mode="bicubic")[0, 0].numpy()
        assert_close(ours, theirs, name=f"bicubic {size_h}x{size_w}")


def _torch_nano(seed, token_label=True):
    from refvit.torch_ports import dualvit as ref

    theirs = ref.randomise(ref.DualViT(10, NANO["stem_hidden_dim"], NANO["embed_dims"], NANO["num_heads"],
                                       NANO["mlp_ratios"], NANO["depths"], tokens=4, pool=4,
                                       token_label=token_label), seed=seed, scale=0.15)
    return theirs


@pytest.mark.parametrize("token_label, backend", [(True, "cpu"), (False, "numpy")])
def test_nano_model_matches_torch(rng, token_label, backend):
    from refvit.torch_ports import dualvit as ref

    theirs = _torch_nano(4, token_label)
    ours = create_model("dualvit_nano", dtype=np.float64, token_label=token_label).eval().to(backend)
    ours.load_state_dict(ref.state_numpy(theirs.official_state_dict()))
    images = rng.standard_normal((2, 32, 32, 3))
    upstream = rng.standard_normal((2, 10))
    x_ours = Tensor(images, requires_grad=True)
    logits = ours(x_ours)
    logits.backward(upstream)
    x_t = ref.nchw(images)
    expected = theirs(x_t)
    expected.backward(torch.tensor(upstream))
    assert_close(logits.data, expected.detach().numpy(), name="logits")
    assert_close(x_ours.grad, x_t.grad.numpy().transpose(0, 2, 3, 1), name="image gradient")
    theirs_params = {k.replace("semantic_init.", ""): v for k, v in theirs.named_parameters()}
    keys = ["q", "se.0.weight", "patch_embed1.conv.0.weight", "block1.0.attn.gamma2", "block1.0.attn.q_proxy.weight",
            "block2.0.mlp.dwconv.dwconv.weight", "proxy_embed3.proj_proxy.0.weight", "block3.1.mlp.fc_proxy.2.bias",
            "block4.0.attn.kv.weight", "post_network.0.attn.q.weight", "norm4.weight", "head.weight"]
    _compare_params(ours, theirs_params, keys + (["aux_head.weight"] if token_label else []), "nano")


# ---------------------------------------------------------------- gradients and training mode

def test_nano_gradients_match_central_differences(rng):
    """Tensor.backward through the whole nano model against central differences (refvit.testing.check_module_gradients, float64)."""
    model = create_model("dualvit_nano", dtype=np.float64).eval().to("numpy")  # the reference path: many forwards
    for name, parameter in model.named_parameters():  # layer scales of 1e-6 would hide the blocks
        if "gamma" in name:
            parameter.data[...] = 0.5
    images = rng.standard_normal((1, 32, 32, 3))
    upstream = rng.standard_normal((1, 10))
    probes = [("input", (0, 5, 9, 1)), ("q", (1, 3)), ("se.2.weight", (40, 7)),
              ("block1.0.attn.qkv_proxy.1.weight", (50, 5)), ("block2.0.attn.gamma3", (7,)),
              ("block3.1.mlp.fc_proxy.0.weight", (3, 4)), ("post_network.0.attn.kv.weight", (200, 9))]
    check_module_gradients(model, images, probes, upstream)


def test_nano_forward_backward_float32():
    model = create_model("dualvit_nano").train()
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    x = Tensor(images, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    logits.backward(np.ones((2, 10), np.float32))
    assert x.grad.shape == images.shape and np.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())
    class_logits, pixel_logits = model.forward_dense(images)
    assert class_logits.shape == (2, 10) and pixel_logits.shape == (2, 1, 10)


def test_drop_path_rates_and_training_mode():
    model = create_model("dualvit_nano", drop_path_rate=0.4, dtype=np.float64)
    blocks = [block for stage in range(1, 5) for block in getattr(model, f"block{stage}")]
    assert type(blocks[0].drop_path).__name__ == "Identity" and type(blocks[0].attn.drop_path).__name__ == "Identity"
    assert [block.drop_path.drop_prob for block in blocks[1:]] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert blocks[1].attn.drop_path.drop_prob == pytest.approx(0.1)
    block = model.block2[0]
    x, sem = np.random.default_rng(0).random((8, 16, 64)), np.random.default_rng(1).random((8, 4, 64))
    for parameter in (block.gamma1, block.gamma2):
        parameter.data[...] = 1.0
    block.eval()
    assert_close(block(x, 4, 4, sem)[0].data, block(x, 4, 4, sem)[0].data)
    block.train()
    refvit.nn.random.seed(0)
    first = block(x, 4, 4, sem)[0].data
    refvit.nn.random.seed(1)
    assert not np.allclose(first, block(x, 4, 4, sem)[0].data)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="DualViT: 'embed_dims'"):
        DualViT(embed_dims=(32, 64, 96))
    with pytest.raises(ValueError, match="DualAttention: 'num_heads'"):
        DualBlock(10, 3, 2.0)
    with pytest.raises(ValueError, match="SemanticTokenInit: 'q'"):
        SemanticTokenInit(8, num_tokens=6, pool_size=2)(np.zeros((1, 4, 4, 8), np.float32))
    with pytest.raises(ValueError, match="DualViT.forward_dense"):
        create_model("dualvit_nano", token_label=False).forward_dense(np.zeros((1, 32, 32, 3), np.float32))
