"""The op table: every op of :mod:`refvit.ops`, registered once.

One row per op, in alphabetical order. A row names

* ``differentiable``: the inputs ``backward`` returns a gradient for, in signature order
  (the op module's ``DIFFERENTIABLE``);
* ``batched``: the array inputs whose axis 0 is the batch axis. Cutting each of them to
  ``[:0]`` in the inputs of the op's ``example(rng)`` gives a valid call with an empty batch;
  ``()`` when the op has no batch axis or refuses an empty batch (the reason is on the row);
* ``kernels``: for each of ``cpu`` and ``cuda``, the kernel module whose ``forward`` and
  ``backward`` the dispatch (:mod:`refvit.ops._dispatch`) calls. A backend given ``None`` would
  run the NumPy reference (the row would say why); every op has both kernel modules today.

``backends`` is where the op runs: ``numpy``, ``cpu`` and ``cuda``. The op module holds the math, the
argument checks and ``example``; ``refvit check``, :mod:`refvit.functional` and the test table
(``tests/ops/test_contract.py``) all read the ops from here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

BACKENDS = ("numpy", "cpu", "cuda")


def _kernels(name):
    """``{"cpu": ..., "cuda": ...}``: the kernel modules named like the op."""
    return {"cpu": f"refvit.kernels.cpu.{name}", "cuda": f"refvit.kernels.cuda.{name}"}


@dataclass(frozen=True)
class OpSpec:
    """One op: its name, differentiable and batched inputs, and kernel modules per backend."""
    name: str
    differentiable: tuple
    batched: tuple
    kernels: dict
    backends: tuple = BACKENDS

    @property
    def module(self):
        """The op module ``refvit.ops.<name>`` (``forward``, ``backward``, ``example``, the math)."""
        return importlib.import_module(f"refvit.ops.{self.name}")

    def example(self, rng):
        """Small float64 inputs valid on every backend, ``(args, kwargs)``: the op module's ``example``."""
        return self.module.example(rng)


# Measured for add, mul and mean (see docs/backends.md, "add, mul and mean"): NumPy's own loops
# beat a Numba kernel on the models' shapes, so their ``cpu`` backend runs the NumPy reference.
TABLE = (
    # add, mul: on cpu the forward (and mul's products) is NumPy's ufunc, which a Numba loop did not
    # beat; the backward's sums are Numba's (1.2-2x faster). mean: Numba's sum, 2x on the tokens of
    # (8, 3136, 64), level on a (64, 7, 7, 256) map. Figures: docs/backends.md.
    OpSpec("add", differentiable=("a", "b"), batched=("a",),
           kernels=_kernels("add")),
    OpSpec("attention", differentiable=("q", "k", "v", "bias"), batched=("q", "k", "v"),
           kernels=_kernels("attention")),
    OpSpec("avg_pool2d", differentiable=("x",), batched=("x",),
           kernels=_kernels("avg_pool2d")),
    OpSpec("batch_norm", differentiable=("x", "weight", "bias"),
           batched=(),                             # training on an empty batch has no statistics
           kernels=_kernels("batch_norm")),
    OpSpec("channel_shuffle", differentiable=("x",), batched=("x",),
           kernels=_kernels("channel_shuffle")),
    OpSpec("conv2d", differentiable=("x", "weight", "bias"), batched=("x",),
           kernels=_kernels("conv2d")),            # the entries hand depthwise calls to depthwise_conv2d
    OpSpec("cross_entropy", differentiable=("logits",),
           batched=(),                             # the mean loss over no rows is undefined: B >= 1
           kernels=_kernels("cross_entropy")),
    OpSpec("gelu", differentiable=("x",), batched=("x",),
           kernels=_kernels("gelu")),
    OpSpec("layer_norm", differentiable=("x", "weight", "bias"), batched=("x",),
           kernels=_kernels("layer_norm")),
    OpSpec("linear", differentiable=("x", "weight", "bias"), batched=("x",),
           kernels=_kernels("linear")),
    OpSpec("linear_gelu", differentiable=("x", "weight", "bias"), batched=("x",),
           kernels=_kernels("linear_gelu")),       # the kernels of linear and gelu, GELU per cpu row block
    OpSpec("max_pool2d", differentiable=("x",), batched=("x",),
           kernels=_kernels("max_pool2d")),
    OpSpec("mean", differentiable=("x",), batched=("x",),
           kernels=_kernels("mean")),
    OpSpec("mul", differentiable=("a", "b"), batched=("a",),
           kernels=_kernels("mul")),
    OpSpec("multiscale_dwconv", differentiable=("x", "weights", "biases"), batched=("x",),
           kernels=_kernels("multiscale_dwconv")),
    OpSpec("na1d", differentiable=("q", "k", "v", "rpb"), batched=("q", "k", "v"),
           kernels=_kernels("na1d")),
    OpSpec("na1d_av", differentiable=("attn", "v"), batched=("attn", "v"),
           kernels=_kernels("na1d_av")),           # na1d_qk and na1d_av: the 2-D kernels on a map of height 1
    OpSpec("na1d_qk", differentiable=("q", "k", "rpb"), batched=("q", "k"),
           kernels=_kernels("na1d_qk")),
    OpSpec("na2d", differentiable=("q", "k", "v", "rpb"), batched=("q", "k", "v"),
           kernels=_kernels("na2d")),              # the cpu entry picks the dense, tiled, wide or general path
    OpSpec("na2d_av", differentiable=("attn", "v"), batched=("attn", "v"),
           kernels=_kernels("na2d_av")),           # the kernels of both split ops: cpu/cuda na_split.py
    OpSpec("na2d_qk", differentiable=("q", "k", "rpb"), batched=("q", "k"),
           kernels=_kernels("na2d_qk")),
    OpSpec("relative_position_bias", differentiable=("table",),
           batched=(),                             # a table of offsets, no batch axis
           kernels=_kernels("relative_position_bias")),
    OpSpec("relu", differentiable=("x",), batched=("x",),
           kernels=_kernels("relu")),
    OpSpec("sigmoid", differentiable=("x",), batched=("x",),
           kernels=_kernels("sigmoid")),
    OpSpec("silu", differentiable=("x",), batched=("x",),
           kernels=_kernels("silu")),
    OpSpec("softmax", differentiable=("x",), batched=("x",),
           kernels=_kernels("softmax")),
    OpSpec("stripe_attention", differentiable=("q", "k", "v", "lepe_weight", "lepe_bias"),
           batched=("q", "k", "v"),
           kernels=_kernels("stripe_attention")),
    OpSpec("tanh", differentiable=("x",), batched=("x",),
           kernels=_kernels("tanh")),
)

_BY_NAME = {spec.name: spec for spec in TABLE}


def table():
    """Every op's :class:`OpSpec`, sorted by name."""
    return TABLE


def names():
    """The op names, sorted."""
    return tuple(_BY_NAME)


def spec(name):
    """The :class:`OpSpec` of op ``name``; ``ValueError`` naming the known ops for an unknown name."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown op {name!r}; ops are: {', '.join(_BY_NAME)}") from None
