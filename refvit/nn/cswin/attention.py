r"""``LePEAttention``: one branch of a CSWin block (stripe attention plus LePE).

On ``q, k, v (B, H, W, C)`` (``C = heads * d`` channels of this branch, channel ``head*d + j``):

.. math::  out = \mathrm{StripeAttention}(q, k, v;\ s_h \times s_w) + \mathrm{DWConv}_{3\times3}(v)
           \text{ inside each } s_h \times s_w \text{ window}

with the window ``(s_h, s_w)`` given by the orientation of the branch:

======================  ===================  =====================================
orientation             window ``(sh, sw)``  official ``LePEAttention(idx=...)``
======================  ===================  =====================================
``"vertical"``          ``(H, split)``       ``idx=0`` (first half of the channels)
``"horizontal"``        ``(split, W)``       ``idx=1`` (second half)
``"full"``              ``(H, W)``           ``idx=-1`` (last stage, one branch)
======================  ===================  =====================================

Scale ``(C / heads) ** -0.5`` unless ``qk_scale`` is given (``0.0`` means zero). The math, forward and backward,
is :mod:`refvit.ops.stripe_attention`; this module only lays the channels out as heads
``(B, heads, H, W, d)`` and back.

``get_v`` is the LePE convolution, a depthwise ``Conv2d(C, C, 3, padding=1, groups=C)`` with
bias, kept as a module so that its ``state_dict`` keys are the official ``get_v.weight``
``(C, 1, 3, 3)`` and ``get_v.bias`` ``(C,)``. Its parameters go to the op, which applies the
convolution window by window (zero padding at each window's border, as the official code
does by convolving the cut-out windows); ``get_v`` is never called on the whole map.

``pad_to_stripes=True`` follows the official segmentation backbone for maps the stripes do
not divide: q, k, v are zero-padded (``pad // 2`` rows/columns on top/left, the rest on
bottom/right, up to a multiple of ``split``), attended without masking (padded keys take
part in the softmax with logit 0 and value 0, and LePE reads the zeros), then cropped back.
Without it a non-divisible map is a ``ValueError``, as in the classification code.
"""
from __future__ import annotations

from refvit import functional as F
from refvit._validate import check_int
from refvit.nn.conv import Conv2d
from refvit.nn.module import Module

ORIENTATIONS = ("vertical", "horizontal", "full")


class LePEAttention(Module):
    """Stripe attention with LePE on ``q, k, v (B, H, W, dim)`` -> ``(B, H, W, dim)``.

    ``orientation`` is ``"vertical"`` (windows ``(H, split_size)``), ``"horizontal"``
    (``(split_size, W)``) or ``"full"`` (``(H, W)``). Parameters: ``get_v.weight (dim, 1, 3, 3)``,
    ``get_v.bias (dim,)``.
    """

    def __init__(self, dim, num_heads, orientation, split_size=7, qk_scale=None, pad_to_stripes=False,
                 dtype=None):
        super().__init__()
        if orientation not in ORIENTATIONS:
            raise ValueError(f"LePEAttention: 'orientation' must be one of {', '.join(map(repr, ORIENTATIONS))}; "
                             f"got {orientation!r}")
        dim = check_int("LePEAttention", "dim", dim, minimum=1)
        num_heads = check_int("LePEAttention", "num_heads", num_heads)
        split_size = check_int("LePEAttention", "split_size", split_size)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"LePEAttention: 'num_heads' must be positive and divide dim ({dim}); got {num_heads}")
        if split_size < 1:
            raise ValueError(f"LePEAttention: 'split_size' must be a positive integer; got {split_size}")
        self.dim, self.num_heads, self.orientation = int(dim), int(num_heads), orientation
        self.split_size, self.pad_to_stripes = int(split_size), bool(pad_to_stripes)
        self.head_dim = self.dim // self.num_heads
        # None -> the default; an explicit 0.0 means zero (docs/conventions.md, Numerics), where the official
        # `qk_scale or ...` would not.
        self.scale = self.head_dim ** -0.5 if qk_scale is None else float(qk_scale)
        self.get_v = Conv2d(self.dim, self.dim, 3, padding=1, groups=self.dim, dtype=dtype)

    def stripe_size(self, height, width):
        """The window ``(sh, sw)`` on an ``H x W`` map."""
        if self.orientation == "vertical":
            return height, self.split_size
        if self.orientation == "horizontal":
            return self.split_size, width
        return height, width

    def forward(self, q, k, v):
        batch, height, width, channels = q.shape
        if channels != self.dim:
            raise ValueError(f"LePEAttention: 'q' must have {self.dim} channels (B, H, W, {self.dim}); "
                             f"got shape {tuple(q.shape)}")
        stripe_h, stripe_w = self.stripe_size(height, width)
        pad_h, pad_w = -height % stripe_h, -width % stripe_w
        if (pad_h or pad_w) and not self.pad_to_stripes:
            raise ValueError(f"LePEAttention: 'q' must be a map whose stripes ({stripe_h}, {stripe_w}) divide it, "
                             f"or use pad_to_stripes=True; got H, W = {height}, {width}")
        crop = None
        if pad_h or pad_w:
            top, left = pad_h // 2, pad_w // 2
            pad_width = ((0, 0), (top, pad_h - top), (left, pad_w - left), (0, 0))
            q, k, v = (F.pad(x, pad_width) for x in (q, k, v))
            crop = (slice(None), slice(top, top + height), slice(left, left + width), slice(None))
        padded_h, padded_w = height + pad_h, width + pad_w
        q, k, v = (self._split_heads(x, batch, padded_h, padded_w) for x in (q, k, v))
        out = F.stripe_attention(q, k, v, (stripe_h, stripe_w), lepe_weight=self.get_v.weight,
                                 lepe_bias=self.get_v.bias, scale=self.scale)
        out = F.reshape(F.permute(out, (0, 2, 3, 1, 4)), (batch, padded_h, padded_w, self.dim))
        return out if crop is None else F.getitem(out, crop)

    def _split_heads(self, x, batch, height, width):
        """``(B, H, W, heads*d)`` -> ``(B, heads, H, W, d)``: channel ``head*d + j`` is ``[head, ..., j]``."""
        x = F.reshape(x, (batch, height, width, self.num_heads, self.head_dim))
        return F.permute(x, (0, 3, 1, 2, 4))

    def extra_repr(self):
        text = f"dim={self.dim}, num_heads={self.num_heads}, orientation={self.orientation!r}"
        if self.orientation != "full":
            text += f", split_size={self.split_size}"
        return text + (", pad_to_stripes=True" if self.pad_to_stripes else "")
