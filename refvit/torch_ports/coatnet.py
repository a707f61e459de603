"""CoAtNet written with torch functional ops on NCHW tensors, from timm's ``maxxvit.py`` semantics.

Every function reads its weights from a ``state_dict`` of torch tensors keyed by timm's names,
so the same dict loads into refvit's modules and runs here. The tests check refvit's CoAtNet
against it, and ``refvit bench`` times it (needs torch).
"""
import torch
import torch.nn.functional as F


def conv(x, sd, prefix, stride=1, padding=0, groups=1):
    return F.conv2d(x, sd[prefix + "weight"], sd.get(prefix + "bias"), stride, padding, 1, groups)


def batch_norm(x, sd, prefix, training, eps=1e-5):
    return F.batch_norm(x, sd[prefix + "running_mean"], sd[prefix + "running_var"], sd[prefix + "weight"],
                        sd[prefix + "bias"], training, 0.1, eps)


def layer_norm2d(x, sd, prefix, eps=1e-6):
    channels_last = x.permute(0, 2, 3, 1)
    out = F.layer_norm(channels_last, (x.shape[1],), sd[prefix + "weight"], sd[prefix + "bias"], eps)
    return out.permute(0, 3, 1, 2)


def downsample(x, sd, prefix):
    x = F.avg_pool2d(x, 2)
    return conv(x, sd, prefix + "expand.") if prefix + "expand.weight" in sd else x


def mbconv(x, sd, prefix, stride, training):
    shortcut = downsample(x, sd, prefix + "shortcut.") if stride == 2 else x
    h = batch_norm(x, sd, prefix + "pre_norm.", training)
    h = F.gelu(batch_norm(conv(h, sd, prefix + "conv1_1x1."), sd, prefix + "norm1.", training))
    mid = h.shape[1]
    h = conv(h, sd, prefix + "conv2_kxk.", stride=stride, padding=1, groups=mid)
    h = F.gelu(batch_norm(h, sd, prefix + "norm2.", training))
    squeezed = h.mean((2, 3), keepdim=True)
    gate = conv(F.silu(conv(squeezed, sd, prefix + "se.fc1.")), sd, prefix + "se.fc2.")
    h = h * torch.sigmoid(gate)
    return conv(h, sd, prefix + "conv3_1x1.") + shortcut


def relative_position_index(height, width):
    """timm's construction: offsets of every (query, key) pair, numbered by ``torch.unique``."""
    coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).reshape(-1, 2)
    _, index = torch.unique(relative, return_inverse=True, dim=0)
    return index


def attention2d(x, sd, prefix):
    batch, _, height, width = x.shape
    table = sd[prefix + "rel_pos.relative_position_bias_table"]
    heads, tokens = table.shape[1], height * width
    dim_head = sd[prefix + "qkv.weight"].shape[0] // (3 * heads)
    q, k, v = conv(x, sd, prefix + "qkv.").view(batch, heads, 3 * dim_head, tokens).chunk(3, dim=2)
    logits = (q * dim_head ** -0.5).transpose(-2, -1) @ k
    bias = table[relative_position_index(height, width)].view(tokens, tokens, heads).permute(2, 0, 1)
    probs = (logits + bias.unsqueeze(0)).softmax(dim=-1)
    out = (v @ probs.transpose(-2, -1)).reshape(batch, heads * dim_head, height, width)
    return conv(out, sd, prefix + "proj.")


def transformer_block(x, sd, prefix, stride):
    if stride == 2:
        shortcut = downsample(x, sd, prefix + "shortcut.")
        h = F.avg_pool2d(layer_norm2d(x, sd, prefix + "norm1.norm."), 2)
    else:
        shortcut, h = x, layer_norm2d(x, sd, prefix + "norm1.")
    x = shortcut + attention2d(h, sd, prefix + "attn.")
    h = F.gelu(conv(layer_norm2d(x, sd, prefix + "norm2."), sd, prefix + "mlp.fc1."))
    return x + conv(h, sd, prefix + "mlp.fc2.")


def coatnet(x, sd, depths, block_types, training=False):
    """Logits of a CoAtNet with a ``NormMlpClassifierHead`` (hidden tanh layer), ``x (B, 3, H, W)``."""
    x = conv(x, sd, "stem.conv1.", stride=2, padding=1)
    x = F.gelu(batch_norm(x, sd, "stem.norm1.", training))
    x = conv(x, sd, "stem.conv2.", padding=1)
    for stage, (depth, block_type) in enumerate(zip(depths, block_types)):
        for index in range(depth):
            prefix, stride = f"stages.{stage}.blocks.{index}.", 2 if index == 0 else 1
            if block_type == "C":
                x = mbconv(x, sd, prefix, stride, training)
            else:
                x = transformer_block(x, sd, prefix, stride)
    pooled = x.mean((2, 3), keepdim=True)
    pooled = layer_norm2d(pooled, sd, "head.norm.").flatten(1)
    hidden = torch.tanh(F.linear(pooled, sd["head.pre_logits.fc.weight"], sd["head.pre_logits.fc.bias"]))
    return F.linear(hidden, sd["head.fc.weight"], sd["head.fc.bias"])
