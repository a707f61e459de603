r"""Which of the four ``cpu`` paths of ``na2d`` computes a call, and why: the whole rule.

``na2d`` on the CPU has four paths, one file each in this package. All four take and return the
same arrays and store the softmax weights alike, ``attn (B, heads, H, W, kh*kw)`` with slot
``u*kw + w``, so any path's backward reads any path's forward cache.

* ``dense`` (:mod:`.dense`): small maps. The logits of a whole map by one ``gemm``
  (:math:`QK^\top`, ``(HW, HW)``) and the window's entries picked out of it. Any options.
* ``tiled`` (:mod:`.tiled`): windows of at least :data:`TILED_MIN_SLOTS` slots. Tiles of 16
  queries of one row, each by ``gemm`` against the band of keys its windows hold (about
  ``(16 + kw - 1) / kw`` products per useful one); the backward's four products are ``gemm`` calls
  too. Any options; finite inputs.
* ``wide`` (:mod:`.wide`, loops in :mod:`.wide_kernels`, :mod:`.wide_layout`): stride 1, no causal
  window, wide maps. The maps of all batch elements and heads side by side in *wide rows*, every
  inner loop along the width so that it vectorises. Needs finite inputs (a NaN in one map would
  reach its neighbours through zero weights). Forward only: its backward was removed because the
  ``tiled`` backward did less work on every shape measured with ``K >= 25`` (the table below; f+b
  minus f: 1, 56, 7: 23.1 ms against 16.6; 1, 56, 13: 67.2 against 33.0), the rule no longer chose
  it, and the one measured shape where it did less (8, 28, 3: 13.4 against tiled 18.9 and general
  13.9) is a 3x3 window above the dense limit, which no shipped model runs.
* ``general`` (:mod:`.general`): one query per inner loop, dot products over the head dimension;
  small windows on large maps, where a tile's ``gemm`` would compute mostly products no window holds.

The rule (:func:`choose_path`), with ``K = kh kw``; ``tiled`` and ``wide`` need finite inputs
(:data:`NEEDS_FINITE`: a NaN or infinity would reach, through zero weights, the other queries of its
tile or wide row), so a call with any other input takes ``dense`` or ``general``:

1. backward with ``K >= TILED_MIN_SLOTS`` (25): ``tiled``;
2. ``H W <= min(DENSE_MAX_TOKENS, DENSE_MAX_TOKENS_PER_SLOT * K)``, and, for a forward with
   ``K >= TILED_MIN_SLOTS`` and finite inputs, ``H W <= DENSE_MAX_TOKENS_LARGE_WINDOW`` (400), for a
   backward with ``K < TILED_MIN_SLOTS``, ``H W <= DENSE_MAX_TOKENS_SMALL_WINDOW_BACKWARD`` (100): ``dense``;
3. ``K < TILED_MIN_SLOTS``: ``general``;
4. forward, stride 1, no causal window, and the narrowest dilation group at least
   :data:`WIDE_MIN_GROUP_COLS` (48) columns wide (``W // dilation_w``): ``wide``;
5. otherwise ``tiled``.

Figures: milliseconds of CPU time (``time.process_time``) on one thread (``NUMBA_NUM_THREADS=1``, BLAS
on one thread), the minimum of 7 runs, forward / forward + backward, float32, ``heads = 4``,
``d = 32``, a bias; each path forced by replacing :func:`choose_path`. CPU time on one thread measures
the work: the machine is a shared 2-core one that other jobs kept at load 7 to 10, where wall-clock
figures of one shape moved by 3x between runs.

=====================  ===============  ===============  ===============  ===============
B, map, kernel (dil.)  dense / wide     tiled            general          rule now
=====================  ===============  ===============  ===============  ===============
1, 56, 7               wide 11.9/35.0   13.0/29.6        -                wide / tiled
1, 56, 7 (8)           -                12.2/28.8        17.0/41.3        tiled / tiled
1, 112, 7              wide 43.3/135.7  51.0/113.0       -                wide / tiled
1, 56, 13              wide 29.5/96.7   30.7/63.7        -                wide / tiled
1, 28, 7               dense 3.8/10.1   3.8/7.8          -                tiled / tiled
1, 28, 7 (4)           dense 4.4/11.1   3.8/7.8          4.6/10.9         tiled / tiled
8, 28, 7               dense 29.1/75.9  28.8/62.2        31.1/69.4        tiled / tiled
1, 28, 13              dense 9.5/26.1   9.3/19.0         12.7/30.3        tiled / tiled
1, 14, 7               dense 0.70/1.91  1.10/2.28        1.13/2.80        dense / tiled
8, 14, 13              dense 13.1/41.2  14.8/30.1        23.8/57.9        dense / tiled
4, 7, 7                dense 0.62/1.79  1.01/2.05        1.17/2.72        dense / tiled
1, 28, 5               dense 2.9/7.1    2.4/5.2          2.5/5.7          tiled / tiled
1, 56, 5               wide 8.6/24.8    9.2/21.6         9.7/21.5         wide / tiled
1, 56, 3               wide 6.2/17.9    5.8/14.7         4.6/10.7         general
1, 112, 3              wide 22.0/62.2   21.1/52.3        16.4/36.3        general
8, 28, 3               wide 13.7/27.1   11.1/30.0        8.7/22.6         general
8, 14, 3               dense 2.2/5.8    3.2/7.3          2.5/5.7          dense / general
16, 8, 3               dense 0.86/2.55  1.86/3.93        1.54/3.77        dense
=====================  ===============  ===============  ===============  ===============

The table predates the strips of the ``tiled`` path (each band copied once per column tile and row
dilation group, not once per tile): they took 18-32% off its forward and 10-27% off its backward, so
its forward now also beats ``dense`` from about 21x21 up (:data:`DENSE_MAX_TOKENS_LARGE_WINDOW`) and ties
``wide`` at 56x56 with ``k = 7`` (10.2-10.6 ms against 10.1-10.2; ``wide`` kept).

(The "dense / wide" column is the path the previous rule took: ``wide`` forward and backward on the
large maps; that backward has since been removed.) So: the ``tiled`` backward beats every other
backward from ``K = 25`` up (ties on the 7x7 and 14x14 maps, 15-35% less work from 28x28 up); on 3x3 windows ``general`` does the least work
on large maps and ``dense`` on small ones; the ``wide`` forward stays 8-15% ahead of ``tiled`` on
56- and 112-column maps with dilation 1, and the ``dense`` forward ahead on the small maps (the
bench measured the wide forward on a quiet machine: ``na2d 7x7`` 3.3 ms at dilation 1, 3.6 ms at
dilation 2; on two busy cores each of its parallel regions waits for descheduled workers, hence the
48-column group threshold, which sends dilation 2 at 56 columns to ``tiled``). On the wall clock
with two threads (load 9, the rule against ``wide`` both ways, alternating in one process, minimum of 7),
forward + backward of (1, 4, 56, 56, 32): k 7 32.1 and 56.5 ms against 81.5 and 69.9 (two runs), k 13
89.5 against 148.0.

Every layer of every shipped model and the bench cases, and the path each takes
(:data:`SHIPPED_LAYERS`; ``tests/kernels/cpu/na2d/test_dispatch.py`` checks it against the models):

    =====  ======  ========  =======  ========  ====================================================
    map    kernel  dilation  forward  backward  where
    =====  ======  ========  =======  ========  ====================================================
    56x56    7        1      wide     tiled     dinat_mini, dinat_tiny, nat_mini, nat_tiny
                                                bench na2d 7x7 (1,4,56,56,32) rpb
    56x56    7        2      tiled    tiled     bench na2d 7x7 dilation 2 (1,4,56,56,32) rpb
    56x56    7        8      tiled    tiled     dinat_mini, dinat_tiny
                                                bench NATLayer DiNAT-Mini level 1 (1,56,56,64) d 8
    28x28    7        1      tiled    tiled     dinat_mini, dinat_tiny, nat_mini, nat_tiny
    28x28    7        4      tiled    tiled     dinat_mini, dinat_tiny
    14x14    7        1      dense    tiled     dinat_mini, dinat_tiny, nat_mini, nat_tiny
    14x14    7        2      dense    tiled     dinat_mini, dinat_tiny
                                                bench NATLayer DiNAT-Mini level 3 (1,14,14,256) d 2
     7x7     7        1      dense    tiled     dinat_mini, dinat_tiny, nat_mini, nat_tiny
     8x8     3        1      dense    dense     dinat_nano, nat_nano
     8x8     3        2      dense    dense     dinat_nano
     4x4     3        1      dense    dense     dinat_nano, nat_nano
     3x3     3        1      dense    dense     dinat_nano, nat_nano
    =====  ======  ========  =======  ========  ====================================================
"""
from typing import NamedTuple

import numpy as np

PATHS = ("dense", "tiled", "wide", "general")
# The paths that have a backward: ``wide`` is a forward path only, and the rule never gives it a
# backward call (rule 4 is for the forward; every backward ends at rules 1-3 or 5).
BACKWARD_PATHS = ("dense", "tiled", "general")

# The dense path takes maps of at most this many tokens per window slot and at most DENSE_MAX_TOKENS
# tokens (its scratch matrix is (H W)^2 per thread). Above, the general path: on 56x56 maps with
# k 7 (64 tokens per slot) the (3136, 3136) products cost more than the window's dot products.
DENSE_MAX_TOKENS_PER_SLOT = 32
DENSE_MAX_TOKENS = 1024

# The forward of windows of at least TILED_MIN_SLOTS slots takes the dense path only on maps of at most
# this many tokens: since the tiled path copies each band once per column tile (a strip), its forward
# does less work from about 21x21 up (CPU time, one thread, 1 x 4 heads, d 32: 28x28 k 7 2.2-2.4 ms
# against dense 3.3-3.4, k 13 5.9-6.1 against 6.8-7.0, k 5 1.6 against 2.6; 21x21 k 7 1.3-1.4 against
# 1.4-1.5; 20x20 k 5 0.85-0.88 against 0.77-0.89; 14x14 k 7 0.56-0.62 against 0.50-0.53).
DENSE_MAX_TOKENS_LARGE_WINDOW = 400

# The backward of windows below TILED_MIN_SLOTS slots takes the dense path only on maps of at most this
# many tokens: since the general backward runs one pass per map, it does less work above (CPU time, one
# thread, 16 x 4 heads, d 32, k 3: 16x16 4.0-4.2 ms against dense 6.5-6.7, 12x12 2.39-2.41 against
# 2.83-2.85, 10x10 1.67-1.73 against 1.78-1.86; 64 x 1 head, 8x8, the nano layers: 1.12-1.18 both).
DENSE_MAX_TOKENS_SMALL_WINDOW_BACKWARD = 100

# Windows of at least this many slots take the tiled path (backward always, forward above the dense
# limit): below, a tile's gemm computes mostly products that no window holds.
TILED_MIN_SLOTS = 25

# The narrowest dilation group (in columns) on which the forward takes the wide path. A wide row
# holds B*heads*W_g lanes of which 2*(kw//2) per map are border columns that need the tall-column
# pass and the corners, and every dilation group is five parallel regions of its own: on narrow
# groups those cost more than the shifted products save (figures in the module docstring).
WIDE_MIN_GROUP_COLS = 48

# The paths that need finite inputs: they multiply zero weights with every key of a band or a wide
# row, so one NaN or infinity would reach queries whose windows do not hold it.
NEEDS_FINITE = ("tiled", "wide")

# The last path taken per direction, for tests and for reading a profile.
last_path = {"forward": None, "backward": None}


def dense_applies(height, width, options):
    """Whether a ``height x width`` map is small enough for the dense path (any window options)."""
    slots = options.kernel_size[0] * options.kernel_size[1]
    return height * width <= min(DENSE_MAX_TOKENS, DENSE_MAX_TOKENS_PER_SLOT * slots)


def wide_applies(width, options):
    """Whether the wide path computes a forward call with these options on a map ``width`` columns
    wide (finite inputs assumed): stride 1, no causal window, dilation groups wide enough."""
    return (all(s == 1 for s in options.stride) and not any(options.is_causal)
            and width // options.dilation[1] >= WIDE_MIN_GROUP_COLS)


def choose_path(height, width, options, direction, finite=True):
    """The path (one of :data:`PATHS`) of a ``direction`` (``"forward"`` or ``"backward"``) call on a
    ``height x width`` map with these ``Options``; ``finite``: whether every input is finite."""
    slots = options.kernel_size[0] * options.kernel_size[1]
    if finite and direction == "backward" and slots >= TILED_MIN_SLOTS:
        return "tiled"
    if dense_applies(height, width, options) and _dense_beats_the_others(height * width, slots, direction, finite):
        return "dense"
    if not finite or slots < TILED_MIN_SLOTS:
        return "general"
    if direction == "forward" and wide_applies(width, options):
        return "wide"
    return "tiled"


def _dense_beats_the_others(tokens, slots, direction, finite):
    """Whether a call that fits the dense path takes it (the limits of rule 2 beyond :func:`dense_applies`)."""
    if direction == "backward":
        return slots >= TILED_MIN_SLOTS or tokens <= DENSE_MAX_TOKENS_SMALL_WINDOW_BACKWARD
    return slots < TILED_MIN_SLOTS or not finite or tokens <= DENSE_MAX_TOKENS_LARGE_WINDOW


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
    Layer(56, 7, 1, "wide", "tiled", _MINI_TINY, ("na2d 7x7 (1,4,56,56,32) rpb",)),
    Layer(56, 7, 2, "tiled", "tiled", (), ("na2d 7x7 dilation 2 (1,4,56,56,32) rpb",)),
    Layer(56, 7, 8, "tiled", "tiled", _DINAT, ("NATLayer DiNAT-Mini level 1 (1,56,56,64) d 8",)),
    Layer(28, 7, 1, "tiled", "tiled", _MINI_TINY, ()),
    Layer(28, 7, 4, "tiled", "tiled", _DINAT, ()),
    Layer(14, 7, 1, "dense", "tiled", _MINI_TINY, ()),
    Layer(14, 7, 2, "dense", "tiled", _DINAT, ("NATLayer DiNAT-Mini level 3 (1,14,14,256) d 2",)),
    Layer(7, 7, 1, "dense", "tiled", _MINI_TINY, ()),
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
