"""A PyTorch DualViT written from the official semantics (tokens ``(B, N, C)``, NCHW
convolutions), with the official parameter names, so one ``state_dict`` loads into both.

An independent second implementation: refvit's modules call ``ops.attention`` through the tape;
this one writes each attention as ``softmax(q k^T * scale) v`` with torch ops and lets torch's
autograd differentiate it. The tests check refvit's DualViT against it, and ``refvit bench`` times it (needs torch).
"""
import torch
from torch import nn
from torch.nn import functional as F


def heads_first(x, heads):
    batch, length, channels = x.shape
    return x.reshape(batch, length, heads, channels // heads).transpose(1, 2)


def attend(q, k, v, heads, scale):
    """Queries ``(B, Nq, C)`` over keys/values ``(B, Nk, C)`` -> ``(B, Nq, C)``."""
    q, k, v = (heads_first(t, heads) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(q.shape[0], -1, q.shape[1] * q.shape[3])


class DepthwiseConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x, height, width):
        batch, _, channels = x.shape
        image = x.transpose(1, 2).reshape(batch, channels, height, width)
        return self.dwconv(image).flatten(2).transpose(1, 2)


class DualAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.q_proxy, self.kv_proxy = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        self.q_proxy_ln, self.p_ln = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp_proxy = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))
        self.proxy_ln = nn.LayerNorm(dim)
        self.qkv_proxy = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3 * dim))
        self.gamma1, self.gamma2, self.gamma3 = (nn.Parameter(1e-6 * torch.ones(dim)) for _ in range(3))

    def forward(self, x, sem):
        q, k, v = self.qkv_proxy(sem).chunk(3, dim=-1)
        sem = sem + self.gamma1 * attend(q, k, v, self.heads, self.scale)
        kp, vp = self.kv_proxy(x).chunk(2, dim=-1)
        sem = sem + self.gamma2 * attend(self.q_proxy(self.q_proxy_ln(sem)), kp, vp, self.heads, self.scale)
        sem = sem + self.gamma3 * self.mlp_proxy(self.p_ln(sem))
        k, v = self.kv(self.proxy_ln(sem)).chunk(2, dim=-1)
        return self.proj(attend(self.q(x), k, v, self.heads, self.scale)), sem


class PixelFFN(nn.Module):
    def __init__(self, dim, hidden, dwconv=True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        if dwconv:
            self.dwconv = DepthwiseConv(hidden)
        self.use_dwconv = dwconv

    def forward(self, x, height, width):
        hidden = self.fc1(x)
        if self.use_dwconv:
            hidden = self.dwconv(hidden, height, width)
        return self.fc2(F.gelu(hidden))


class DualBlock(nn.Module):
    def __init__(self, dim, heads, ratio, eps=1e-6, dwconv=True):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = DualAttention(dim, heads)
        self.mlp = PixelFFN(dim, int(dim * ratio), dwconv)
        self.gamma1, self.gamma2 = nn.Parameter(1e-6 * torch.ones(dim)), nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x, height, width, sem):
        update, sem = self.attn(self.norm1(x), sem)
        x = x + self.gamma1 * update
        return x + self.gamma2 * self.mlp(self.norm2(x), height, width), sem


class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.proj(attend(self.q(x), k, v, self.heads, self.scale))


class MergeFFN(PixelFFN):
    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.fc_proxy = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, height, width):
        pixels = height * width
        return torch.cat([super().forward(x[:, :pixels], height, width), self.fc_proxy(x[:, pixels:])], dim=1)


class MergeBlock(nn.Module):
    def __init__(self, dim, heads, ratio, eps=1e-6):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, heads)
        self.mlp = MergeFFN(dim, int(dim * ratio))
        self.gamma1, self.gamma2 = nn.Parameter(1e-6 * torch.ones(dim)), nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x, height, width):
        x = x + self.gamma1 * self.attn(self.norm1(x))
        return x + self.gamma2 * self.mlp(self.norm2(x), height, width)


class ClassAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.kv, self.q, self.proj = nn.Linear(dim, 2 * dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.proj(attend(self.q(x[:, :1]), k, v, self.heads, self.scale))


class FFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class ClassBlock(nn.Module):
    def __init__(self, dim, heads, ratio, eps=1e-6):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = ClassAttention(dim, heads)
        self.mlp = FFN(dim, int(dim * ratio))

    def forward(self, x):
        cls = x[:, :1] + self.attn(self.norm1(x))
        cls = cls + self.mlp(self.norm2(cls))
        return torch.cat([cls, x[:, 1:]], dim=1)


def conv_bn_relu(cin, cout, kernel, stride):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Stem(nn.Module):
    def __init__(self, cin, hidden, cout):
        super().__init__()
        self.conv = nn.Sequential(*conv_bn_relu(cin, hidden, 7, 2), *conv_bn_relu(hidden, hidden, 3, 1),
                                  *conv_bn_relu(hidden, hidden, 3, 1))
        self.proj = nn.Conv2d(hidden, cout, 3, 2, 1)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        x = self.proj(self.conv(x))
        return self.norm(x.flatten(2).transpose(1, 2)), x.shape[2], x.shape[3]


class DownSamples(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, 2, 1)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        x = self.proj(x)
        return self.norm(x.flatten(2).transpose(1, 2)), x.shape[2], x.shape[3]


class SemanticEmbed(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj_proxy = nn.Sequential(nn.Linear(cin, cout), nn.LayerNorm(cout))

    def forward(self, sem):
        return self.proj_proxy(sem)


class SemanticInit(nn.Module):
    """Parameters ``q``, ``q_embed``, ``kv``, ``proxy_ln``, ``se``; ``forward(tokens, H, W)``."""

    def __init__(self, dim, tokens=64, pool=7):
        super().__init__()
        self.q = nn.Parameter(0.02 * torch.randn(tokens, dim))
        self.q_embed = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.kv = nn.Linear(dim, 2 * dim)
        self.proxy_ln = nn.LayerNorm(dim)
        self.se = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2 * dim))
        self.pool = pool

    def forward(self, x, height, width):
        batch, _, dim = x.shape
        down = F.avg_pool2d(x.transpose(1, 2).reshape(batch, dim, height, width), self.pool, self.pool)
        grid = down.shape[2:]
        down = down.flatten(2).transpose(1, 2)
        queries = self.q
        if down.shape[1] != queries.shape[0]:
            side = int(round(queries.shape[0] ** 0.5))
            image = queries.reshape(side, side, dim).permute(2, 0, 1).unsqueeze(0)
            queries = F.interpolate(image, size=tuple(grid), mode="bicubic")[0].permute(1, 2, 0).reshape(-1, dim)
        k, v = self.kv(down).chunk(2, dim=-1)
        sem = torch.softmax(self.q_embed(queries) @ k.transpose(1, 2) * dim ** -0.5, dim=-1) @ v
        weights = self.se((sem + down).mean(1)).reshape(batch, 2, dim).softmax(1)
        return self.proxy_ln(sem * weights[:, :1] + down * weights[:, 1:])


class DualViT(nn.Module):
    def __init__(self, num_classes, stem_hidden, dims, heads, ratios, depths, tokens=64, pool=7, eps=1e-6,
                 token_label=True):
        super().__init__()
        self.semantic_init = SemanticInit(dims[0], tokens, pool)
        for i in range(4):
            if i:
                setattr(self, f"proxy_embed{i + 1}", SemanticEmbed(dims[i - 1], dims[i]))
            embed = Stem(3, stem_hidden, dims[0]) if i == 0 else DownSamples(dims[i - 1], dims[i])
            setattr(self, f"patch_embed{i + 1}", embed)
            if i < 2:
                blocks = [DualBlock(dims[i], heads[i], ratios[i], eps) for _ in range(depths[i])]
            else:
                blocks = [MergeBlock(dims[i], heads[i], ratios[i] - (i == 2 and j % 2), eps) for j in range(depths[i])]
            setattr(self, f"block{i + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i], eps=eps))
            if i < 3:
                setattr(self, f"norm_proxy{i + 1}", nn.LayerNorm(dims[i], eps=eps))
        self.post_network = nn.ModuleList([ClassBlock(dims[3], heads[3], ratios[-1], eps)])
        self.head = nn.Linear(dims[3], num_classes)
        self.token_label = token_label
        if token_label:
            self.aux_head = nn.Linear(dims[3], num_classes)

    def official_state_dict(self):
        """Keys as in the official model: the semantic-init parts sit on the model itself."""
        return {k.replace("semantic_init.", ""): v for k, v in self.state_dict().items()}

    def forward(self, images):
        batch = images.shape[0]
        x, height, width = self.patch_embed1(images)
        sem = self.semantic_init(x, height, width)
        for i in range(4):
            if i:
                x, height, width = getattr(self, f"patch_embed{i + 1}")(x)
                sem = getattr(self, f"proxy_embed{i + 1}")(sem)
            pixels = height * width
            if i < 2:
                for block in getattr(self, f"block{i + 1}"):
                    x, sem = block(x, height, width, sem)
            else:
                z = torch.cat([x, sem], dim=1)
                for block in getattr(self, f"block{i + 1}"):
                    z = block(z, height, width)
                x, sem = z[:, :pixels], z[:, pixels:]
            if i < 3:
                x = getattr(self, f"norm{i + 1}")(x).transpose(1, 2).reshape(batch, -1, height, width)
                sem = getattr(self, f"norm_proxy{i + 1}")(sem)
        z = torch.cat([x, sem], dim=1)
        z = torch.cat([z.mean(1, keepdim=True), z], dim=1)
        z = self.norm4(self.post_network[0](z))
        logits = self.head(z[:, 0])
        if self.token_label:
            logits = logits + 0.5 * self.aux_head(z[:, 1:1 + pixels]).max(1)[0]
        return logits


def randomise(module, seed=0, scale=0.3):
    """Every parameter and BatchNorm statistic drawn at random (layer scales included), float64."""
    generator = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator, dtype=torch.float64))
            elif name.endswith("weight") and tensor.dim() == 1 and "gamma" not in name:  # norm scales
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=generator, dtype=torch.float64))
            else:
                tensor.copy_(scale * torch.randn(tensor.shape, generator=generator, dtype=torch.float64))
    return module.eval()


def state_numpy(state_dict):
    return {k: v.detach().numpy().copy() for k, v in state_dict.items()}


def nchw(images):
    return torch.tensor(images.transpose(0, 3, 1, 2).copy(), requires_grad=True)
