r"""Which of the three ``cpu`` paths of ``na2d`` computes a call, and why: the whole rule.

``na2d`` on the CPU has three paths, one file each in this package. All three take and return the
same arrays and store the softmax weights alike, ``attn (B, heads, H, W, kh*kw)`` with slot
``u*kw + w``, so any path's backward reads any path's forward cache.

* ``dense`` (:mod:`.dense`): small maps. The logits of a whole map by one ``gemm``
  (:math:`QK^\top`, ``(HW, HW)``) and the window's entries picked out of it; backward likewise with
  :math:`\partial O\,V^\top`. Any options.
* ``wide`` (:mod:`.wide`, loops in :mod:`.wide_layout`): stride 1, no causal window, wide maps. The
  maps of all batch elements and heads side by side in *wide rows*, every inner loop along the width
  so that it vectorises. Needs finite inputs (a NaN in one map would reach its neighbours through
  zero weights).
* ``general`` (:mod:`.general`): everything else (any stride, dilation, causal window, size). One
  query per inner loop, dot products over the head dimension.

The rule (:func:`choose_path`):

1. ``H W <= min(DENSE_MAX_TOKENS, DENSE_MAX_TOKENS_PER_SLOT * kh kw)``: ``dense``, both directions;
2. stride 1, no causal window, every input finite, and the narrowest dilation group at least
   ``WIDE_MIN_GROUP_COLS[direction]`` columns wide (``W // dilation_w``; 24 forward, 48 backward):
   ``wide``;
3. otherwise ``general``.

Measured in ms on a shared 2-core machine that other jobs kept busy (load 4 to 12: one figure moved
by up to 2x between runs, so the tables give the minimum and the median): float32, ``d = 32``, rpb,
BLAS on one thread; each path forced through :func:`refvit.kernels.cpu.na2d.forward` / ``backward``
by replacing :func:`choose_path` (as ``tests/kernels/cpu/na2d/test_paths.py`` does), the paths
alternating in one process.

* ``wide`` against ``general``, forward, (1, 4, 56, 56, 32), k 7, 61 rounds, min / median:

  ========================  ==========================  ==========================
  groups (dilation)         one thread                  two threads
  ========================  ==========================  ==========================
  56 columns (1)            6.4 / 7.6 vs 12.6 / 16.8    4.3 / 9.2 vs 7.5 / 13.3
  28 columns (2)            7.5 / 9.3 vs 12.6 / 17.1    18.4 / 20.0 vs 12.4 / 13.7
  18 columns (3)            10.3 / 12.0 vs 12.8 / 13.6  23.1 / 46.7 vs 9.6 / 17.0
  ========================  ==========================  ==========================

  One thread measures the work: the wide path does it in half the time down to 28-column groups.
  On two busy cores each dilation group's five parallel regions wait for descheduled workers, which
  costs the wide path more the more groups there are; ``WIDE_MIN_GROUP_COLS["forward"]`` = 24 keeps the wide
  path where the bench measured it on a quiet machine (``na2d 7x7`` forward 3.3 ms at dilation 1,
  3.6 ms at dilation 2) and sends the narrower groups to ``general``. At 7-column groups (dilation 8,
  DiNAT level 1, (1, 2, 56, 56, 32)) forward + backward took 70 ms with the wide forward against 22 ms
  (minima over 15 rounds, two threads).
* ``wide`` against ``general``, backward, (1, 4, 56, 56, 32), k 7, two threads, min / median of 40
  rounds. Quiet machine (load below 1), dilation 1: 7.1 / 7.4 vs 7.5 / 7.7 and 7.3 / 7.5 vs 7.6 / 7.9
  (two runs); through ``ops.na2d.backward`` 6.5-6.8 vs 7.2. Busy machine: dilation 1 17.2 / 35.1 vs
  15.0 / 31.8, dilation 2 (28-column groups) 25.5 / 67.9 vs 18.8 / 33.6. The wide backward saves
  5 to 10% on the 56x56 layers of the shipped models, and loses on narrower groups:
  ``WIDE_MIN_GROUP_COLS["backward"]`` = 48.
* ``dense`` against ``general``, forward / forward + backward medians, two threads, 15 rounds:

  ==============================  ===================  ===================
  layer                           dense                general
  ==============================  ===================  ===================
  28x28 k 7 (Mini level 2)        7.9 / 16.3           8.5 / 18.9
  28x28 k 7 d 4 (DiNAT level 2)   1.7 / 9.9            9.9 / 20.0
  14x14 k 7 d 2 (DiNAT level 3)   0.49 / 1.24          0.99 / 10.2
  7x7 k 7 (level 4, 16 heads)     0.19 / 0.54          0.45 / 1.12
  8x8 k 3 (nano level 1, B 64)    0.36 / 0.89          0.66 / 1.65
  8x8 k 3 d 2 (dinat_nano)        0.35 / 0.95          0.71 / 1.68
  4x4 k 3 (nano level 2)          0.18 / 0.43          0.35 / 0.85
  3x3 k 3 (nano level 3)          0.24 / 0.57 (min)    0.39 / 0.94 (min)
  ==============================  ===================  ===================

  (28x28 k 7: the first of two runs; the second gave 6.8 / 11.8 against 6.0 / 16.1.) Above
  :data:`DENSE_MAX_TOKENS_PER_SLOT` tokens per slot the ``(HW)^2`` products outgrow the
  window's: on 56x56 maps with k 7 (64 per slot) ``general`` and ``wide`` are the only candidates.

Every layer of every shipped model and the bench cases, and the path each takes
(:data:`SHIPPED_LAYERS`; ``tests/kernels/cpu/na2d/test_dispatch.py`` checks it against the models):

    =====  ======  ========  =======  ========  ====================================================
    map    kernel  dilation  forward  backward  where
    =====  ======  ========  =======  ========  ====================================================
    56x56    7        1      wide     wide      dinat_mini, dinat_tiny, nat_mini, nat_tiny
                                                bench na2d 7x7 (1,4,56,56,32) rpb
    56x56    7        2      wide     general   bench na2d 7x7 dilation 2 (1,4,56,56,32) rpb
    56x56    7        8      general  general   dinat_mini, dinat_tiny
                                                bench NATLayer DiNAT-Mini level 1 (1,56,56,64) d 8
    28x28    7        1      dense    dense     dinat_mini, dinat_tiny, nat_mini, nat_tiny
    28x28    7        4      dense    dense     dinat_mini, dinat_tiny
    14x14    7        1      dense    dense     dinat_mini, dinat_tiny, nat_mini, nat_tiny
    14x14    7        2      dense    dense     dinat_mini, dinat_tiny
                                                bench NATLayer DiNAT-Mini level 3 (1,14,14,256) d 2
     7x7     7        1      dense    dense     dinat_mini, dinat_tiny, nat_mini, nat_tiny
     8x8     3        1      dense    dense     dinat_nano, nat_nano
     8x8     3        2      dense    dense     dinat_nano
     4x4     3        1      dense    dense     dinat_nano, nat_nano
     3x3     3        1      dense    dense     dinat_nano, nat_nano
    =====  ======  ========  =======  ========  ====================================================
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
# pass and the corners, and every dilation group is five parallel regions of its own: on narrow
# groups those cost more than the shifted products save (figures in the module docstring).
WIDE_MIN_GROUP_COLS = {"forward": 24, "backward": 48}

# The last path taken per direction, for tests and for reading a profile.
last_path = {"forward": None, "backward": None}


def dense_applies(height, width, options):
    """Whether a ``height x width`` map is small enough for the dense path (any window options)."""
    slots = options.kernel_size[0] * options.kernel_size[1]
    return height * width <= min(DENSE_MAX_TOKENS, DENSE_MAX_TOKENS_PER_SLOT * slots)


def wide_applies(width, options, direction):
    """Whether the wide path computes a ``direction`` call with these options on a map ``width`` columns
    wide (finite inputs assumed): stride 1, no causal window, dilation groups wide enough."""
    return (all(s == 1 for s in options.stride) and not any(options.is_causal)
            and width // options.dilation[1] >= WIDE_MIN_GROUP_COLS[direction])


def choose_path(height, width, options, direction, finite=True):
    """The path (one of :data:`PATHS`) of a ``direction`` (``"forward"`` or ``"backward"``) call on a
    ``height x width`` map with these ``Options``; ``finite``: whether every input is finite."""
    if dense_applies(height, width, options):
        return "dense"
    if finite and wide_applies(width, options, direction):
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
    Layer(56, 7, 1, "wide", "wide", _MINI_TINY, ("na2d 7x7 (1,4,56,56,32) rpb",)),
    Layer(56, 7, 2, "wide", "general", (), ("na2d 7x7 dilation 2 (1,4,56,56,32) rpb",)),
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
    """:data:`SHIPPED_LAYERS` as the text table of the module docstring: the models on the first line
    of a row, each bench case on a line of its own."""
    rule = "    =====  ======  ========  =======  ========  " + "=" * 52
    lines = [rule, "    map    kernel  dilation  forward  backward  where", rule]
    for layer in SHIPPED_LAYERS:
        where = ([", ".join(layer.models)] if layer.models else []) + [f"bench {case}" for case in layer.cases]
        lead = (f"    {layer.side:>2}x{layer.side:<2}  {layer.kernel:^6}  {layer.dilation:^8}  {layer.forward:<7}  "
                f"{layer.backward:<8}  ")
        lines += [lead + where[0]] + [" " * len(lead) + entry for entry in where[1:]]
    lines.append(rule)
    return "\n".join(lines)
