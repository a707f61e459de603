"""SMT's forward written with PyTorch functional ops, in the official layouts, for cross-checks.

The official code keeps tokens as ``(B, N, C)`` and runs its convolutions on ``(B, C, H, W)``
maps; this file does the same (so every layout change of refvit's channels-last modules is
checked against an independent path). Parameters come from a ``state_dict`` of torch
tensors with the official key names. Importing this module needs torch.
"""
import torch
import torch.nn.functional as TF

BLOCK_EPS = 1e-6  # block and stage norms
EMBED_EPS = 1e-5  # patch-embedding norms (plain nn.LayerNorm)


def _linear(sd, name, x):
    return TF.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def _conv(sd, name, x, stride=1, padding=0, groups=1):
    return TF.conv2d(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), stride, padding, 1, groups)


def _layer_norm(sd, name, x, eps):
    return TF.layer_norm(x, (x.shape[-1],), sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def _batch_norm(sd, name, x, training):
    return TF.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                         sd[f"{name}.bias"], training, 0.1, 1e-5)


def modulation(sd, p, x, height, width, training):
    """Official ``Attention`` with ``ca_attention=1`` on tokens ``x (B, N, C)``; ``p`` ends with '.'."""
    batch, tokens, channels = x.shape
    heads = sum(1 for key in sd if key.startswith(f"{p}local_conv_") and key.endswith(".weight"))
    per_head = channels // heads
    v = _linear(sd, f"{p}v", x)
    s = _linear(sd, f"{p}s", x).reshape(batch, height, width, heads, per_head).permute(3, 0, 4, 1, 2)
    pieces = []
    for i in range(heads):
        s_i = _conv(sd, f"{p}local_conv_{i + 1}", s[i], padding=1 + i, groups=per_head)
        pieces.append(s_i.reshape(batch, per_head, -1, height, width))
    s_out = torch.cat(pieces, 2).reshape(batch, channels, height, width)
    s_out = TF.gelu(_batch_norm(sd, f"{p}bn", _conv(sd, f"{p}proj0", s_out, groups=per_head), training))
    s_out = _conv(sd, f"{p}proj1", s_out).reshape(batch, channels, tokens).permute(0, 2, 1)
    return _linear(sd, f"{p}proj", s_out * v)


def self_attention(sd, p, x, height, width, heads):
    """Official ``Attention`` with ``ca_attention=0`` on tokens ``x (B, N, C)``."""
    batch, tokens, channels = x.shape
    head_dim = channels // heads
    q = _linear(sd, f"{p}q", x).reshape(batch, tokens, heads, head_dim).permute(0, 2, 1, 3)
    kv = _linear(sd, f"{p}kv", x).reshape(batch, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
    k, v = kv[0], kv[1]
    attn = ((q @ k.transpose(-2, -1)) * head_dim ** -0.5).softmax(dim=-1)
    v_map = v.transpose(1, 2).reshape(batch, tokens, channels).transpose(1, 2).reshape(batch, channels, height, width)
    local = _conv(sd, f"{p}local_conv", v_map, padding=1, groups=channels).reshape(batch, channels, tokens)
    out = (attn @ v).transpose(1, 2).reshape(batch, tokens, channels) + local.transpose(1, 2)
    return _linear(sd, f"{p}proj", out)


def mlp(sd, p, x, height, width):
    """Official ``Mlp``: fc1, GELU(h + DWConv(h)), fc2."""
    batch, tokens, _ = x.shape
    hidden = _linear(sd, f"{p}fc1", x)
    width_hidden = hidden.shape[-1]
    local = _conv(sd, f"{p}dwconv.dwconv", hidden.transpose(1, 2).reshape(batch, width_hidden, height, width),
                  padding=1, groups=width_hidden)
    return _linear(sd, f"{p}fc2", TF.gelu(hidden + local.flatten(2).transpose(1, 2)))


def block(sd, p, x, height, width, sa_heads, training):
    """Official ``Block`` (no layer scale, no drop path) on tokens ``x (B, N, C)``."""
    normed = _layer_norm(sd, f"{p}norm1", x, BLOCK_EPS)
    if f"{p}attn.v.weight" in sd:
        x = x + modulation(sd, f"{p}attn.", normed, height, width, training)
    else:
        x = x + self_attention(sd, f"{p}attn.", normed, height, width, sa_heads)
    return x + mlp(sd, f"{p}mlp.", _layer_norm(sd, f"{p}norm2", x, BLOCK_EPS), height, width)


def stem(sd, x, training):
    """Official ``Head`` on ``x (B, 3, H, W)`` -> tokens, H, W."""
    x = _conv(sd, "patch_embed1.conv.0", x, stride=2, padding=1)
    x = TF.relu(_batch_norm(sd, "patch_embed1.conv.1", x, training))
    x = _conv(sd, "patch_embed1.conv.3", x, stride=2)
    _, _, height, width = x.shape
    return _layer_norm(sd, "patch_embed1.norm", x.flatten(2).transpose(1, 2), EMBED_EPS), height, width


def patch_embed(sd, p, x):
    """Official ``OverlapPatchEmbed`` (3x3, stride 2) on ``x (B, C, H, W)`` -> tokens, H, W."""
    x = _conv(sd, f"{p}proj", x, stride=2, padding=1)
    _, _, height, width = x.shape
    return _layer_norm(sd, f"{p}norm", x.flatten(2).transpose(1, 2), EMBED_EPS), height, width


def model(sd, images, sa_heads, training=False):
    """Official ``SMT.forward`` on ``images (B, 3, H, W)``; ``sa_heads`` per stage."""
    batch = images.shape[0]
    x = images
    for stage in range(4):
        if stage == 0:
            x, height, width = stem(sd, x, training)
        else:
            x, height, width = patch_embed(sd, f"patch_embed{stage + 1}.", x)
        depth = len({key.split(".")[1] for key in sd if key.startswith(f"block{stage + 1}.")})
        for j in range(depth):
            x = block(sd, f"block{stage + 1}.{j}.", x, height, width, sa_heads[stage], training)
        x = _layer_norm(sd, f"norm{stage + 1}", x, BLOCK_EPS)
        if stage != 3:
            x = x.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
    return _linear(sd, "head", x.mean(dim=1))
