r"""Which of the three ``cpu`` paths of ``na2d`` computes a call, and why: the whole rule.

``na2d`` on the CPU has three paths, one file each in this package. All three take and return the
same arrays and store the softmax weights alike, ``attn (B, heads, H, W, kh*kw)`` with slot
``u*kw + w``, so any path's backward reads any path's forward cache.

* ``dense`` (:mod:`.dense`): small maps. The logits of a whole map by one ``gemm``
  (:math:`QK^\top`, ``(HW, HW)``) and the window's entries picked out of it; backward likewise with
  :math:`\partial O\,V^\top`. Any options.
* ``wide`` (:mod:`.wide`, forward only): stride 1, no causal window, wide maps. The maps of all batch
  elements and heads side by side in *wide rows*, every inner loop along the width so that it
  vectorises. Needs finite inputs (a NaN in one map would reach its neighbours through zero
  weights).
* ``general`` (:mod:`.general`): everything else (any stride, dilation, causal window, size, and
  every backward that is not dense). One query per inner loop, dot products over the head dimension.

The rule (:func:`choose_path`):

1. ``H W <= min(DENSE_MAX_TOKENS, DENSE_MAX_TOKENS_PER_SLOT * kh kw)``: ``dense``, both directions;
2. forward, stride 1, no causal window, every input finite, and the narrowest dilation group at
   least ``WIDE_MIN_GROUP_COLS`` columns wide (``W // dilation_w``): ``wide``;
3. otherwise ``general``.

Measured on the shared 2-core machine (float32, ``d = 32``, rpb, each path forced through
:func:`refvit.kernels.cpu.na2d.forward` / ``backward``, back to back in one process, medians over 15
rounds; the machine was busy and every figure moved by about +-20% between rounds), in ms:

PATH_FIGURES

Every layer of every shipped model and the bench cases, and the path each takes
(:data:`SHIPPED_LAYERS`; ``tests/kernels/cpu/na2d/test_dispatch.py`` checks it against the models):

    =====  ======  ========  =======  ========  ============================================
    map    kernel  dilation  forward  backward  where
    =====  ======  ========  =======  ========  ============================================
    56x56    7        1      wide     general   dinat_mini, dinat_tiny, nat_mini, nat_tiny, bench na2d 7x7 (1,4,56,56,32) rpb
    56x56    7        2      general  general   bench na2d 7x7 dilation 2 (1,4,56,56,32) rpb
    56x56    7        8      general  general   dinat_mini, dinat_tiny, bench NATLayer DiNAT-Mini level 1 (1,56,56,64) d 8
    28x28    7        1      dense    dense     dinat_mini, dinat_tiny, nat_mini, nat_tiny
    28x28    7        4      dense    dense     dinat_mini, dinat_tiny
    14x14    7        1      dense    dense     dinat_mini, dinat_tiny, nat_mini, nat_tiny
    14x14    7        2      dense    dense     dinat_mini, dinat_tiny, bench NATLayer DiNAT-Mini level 3 (1,14,14,256) d 2
     7x7     7        1      dense    dense     dinat_mini, dinat_tiny, nat_mini, nat_tiny
     8x8     3        1      dense    dense     dinat_nano, nat_nano
     8x8     3        2      dense    dense     dinat_nano
     4x4     3        1      dense    dense     dinat_nano, nat_nano
     3x3     3        1      dense    dense     dinat_nano, nat_nano
    =====  ======  ========  =======  ========  ============================================
"""
from typing import NamedTuple

import numpy as np

PATHS = ("dense", "wide", "general")

# The dense path takes maps of at most this many tokens per window slot and at most DENSE_MAX_TOKENS
# tokens (its scratch matrix is (H W)^2 per thread). Above, the general path: on 56x56 maps with
# k 7 (64 tokens per slot) the (3136, 3136) products cost more than the window's dot products.
DENSE_MAX_TOKENS_PER_SLOT = 32
DENSE_MAX_TOKENS = 1024

# The narrowest dilation group (in columns) on which the forward takes the wide path. A wide row
# holds B*heads*W_g lanes of which 2*(kw//2) per map are border columns that need the tall-column
# pass and the corners; on narrow groups those passes and the copies cost more than the shifted
# products save.
WIDE_MIN_GROUP_COLS = 48

# The last path taken per direction, for tests and for reading a profile.
last_path = {"forward": None, "backward": None}


def dense_applies(height, width, options):
    """Whether a ``height x width`` map is small enough for the dense path (any window options)."""
    slots = options.kernel_size[0] * options.kernel_size[1]
    return height * width <= min(DENSE_MAX_TOKENS, DENSE_MAX_TOKENS_PER_SLOT * slots)


def wide_applies(width, options):
    """Whether the wide path computes a forward with these options on a map ``width`` columns wide
    (finite inputs assumed): stride 1, no causal window, dilation groups wide enough."""
    return (all(s == 1 for s in options.stride) and not any(options.is_causal)
            and width // options.dilation[1] >= WIDE_MIN_GROUP_COLS)


def choose_path(height, width, options, direction, finite=True):
    """The path (one of :data:`PATHS`) of a ``direction`` (``"forward"`` or ``"backward"``) call on a
    ``height x width`` map with these ``Options``; ``finite``: whether every input is finite."""
    if dense_applies(height, width, options):
        return "dense"
    if direction == "forward" and finite and wide_applies(width, options):
        return "wide"
    return "general"


def all_finite(*arrays):
    """Whether every element of every array (None: skipped) is finite."""
    return all(a is None or bool(np.isfinite(a).all()) for a in arrays)


class Layer(NamedTuple):
    """A square map of side ``side`` with a ``kernel x kernel`` window of dilation ``dilation`` (stride 1,
    not causal), the paths it takes, and where it occurs: shipped ``models`` and bench ``cases``."""
    side: int
    kernel: int
    dilation: int
    forward: str
    backward: str
    models: tuple
    cases: tuple


_MINI_TINY = ("dinat_mini", "dinat_tiny", "nat_mini", "nat_tiny")
_DINAT = ("dinat_mini", "dinat_tiny")
_NANO = ("dinat_nano", "nat_nano")

# Every na2d layer of every shipped model (``refvit.models.list_models()``; maps after the zero padding
# to ``kernel * dilation``) and every na2d bench case. Checked against the models and against
# :func:`choose_path` by the tests; rendered into the module docstring by :func:`layer_table`.
SHIPPED_LAYERS = (
    Layer(56, 7, 1, "wide", "general", _MINI_TINY, ("na2d 7x7 (1,4,56,56,32) rpb",)),
    Layer(56, 7, 2, "general", "general", (), ("na2d 7x7 dilation 2 (1,4,56,56,32) rpb",)),
    Layer(56, 7, 8, "general", "general", _DINAT, ("NATLayer DiNAT-Mini level 1 (1,56,56,64) d 8",)),
    Layer(28, 7, 1, "dense", "dense", _MINI_TINY, ()),
    Layer(28, 7, 4, "dense", "dense", _DINAT, ()),
    Layer(14, 7, 1, "dense", "dense", _MINI_TINY, ()),
    Layer(14, 7, 2, "dense", "dense", _DINAT, ("NATLayer DiNAT-Mini level 3 (1,14,14,256) d 2",)),
    Layer(7, 7, 1, "dense", "dense", _MINI_TINY, ()),
    Layer(8, 3, 1, "dense", "dense", _NANO, ()),
    Layer(8, 3, 2, "dense", "dense", ("dinat_nano",), ()),
    Layer(4, 3, 1, "dense", "dense", _NANO, ()),
    Layer(3, 3, 1, "dense", "dense", _NANO, ()),
)


def layer_table():
    """:data:`SHIPPED_LAYERS` as the text table of the module docstring."""
    lines = ["    =====  ======  ========  =======  ========  ============================================",
             "    map    kernel  dilation  forward  backward  where",
             "    =====  ======  ========  =======  ========  ============================================"]
    for layer in SHIPPED_LAYERS:
        where = ", ".join(layer.models + tuple(f"bench {case}" for case in layer.cases))
        lines.append(f"    {layer.side:>2}x{layer.side:<2}  {layer.kernel:^6}  {layer.dilation:^8}  {layer.forward:<7}  "
                     f"{layer.backward:<8}  {where}".rstrip())
    lines.append(lines[0])
    return "\n".join(lines)
