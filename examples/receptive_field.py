"""Receptive field of stacked neighbourhood attention: NA grows linearly, DiNA much faster.

A stack of ``NeighborhoodAttention2D`` layers (random weights, float64) runs on a square map; a
one-hot gradient at the centre output is back-propagated with ``Tensor.backward``, and every
input pixel whose gradient is nonzero belongs to the centre's receptive field. With kernel
``k`` and dilations ``d_1 .. d_L`` the field is a square of width ``1 + (k - 1) * sum(d_l)``
(as long as the map is large enough that no window is shifted by a border):

* NA, all ``d_l = 1``: ``L (k - 1) + 1``, linear in depth (the DiNAT paper's point);
* NA and DiNA alternating (DiNAT's layout, here ``1, d, 1, d, ...``): wider at the same cost;
* dilations ``1, k, k^2, ...``: ``k^L``, exponential in depth.

Run ``python examples/receptive_field.py`` (needs matplotlib); the figure goes to ``runs/receptive_field.png``
(``--output`` to change it).
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from refvit.autograd import Tensor
from refvit.nn import random as nn_random
from refvit.nn.nat import NeighborhoodAttention2D


def receptive_field(dilations, kernel_size=3, size=29, dim=4, seed=0):
    """Boolean ``(size, size)`` mask of the input pixels that the centre output depends on.

    One ``NeighborhoodAttention2D(dim, 1 head, kernel_size, dilation)`` per entry of ``dilations``,
    applied in order from the input; the gradient of the centre pixel's first output channel is
    back-propagated to the input.
    """
    nn_random.seed(seed)
    layers = [NeighborhoodAttention2D(dim, 1, kernel_size, dilation=d, dtype=np.float64) for d in dilations]
    x = Tensor(np.random.default_rng(seed).standard_normal((1, size, size, dim)), requires_grad=True)
    out = x
    for layer in layers:
        out = layer(out)
    upstream = np.zeros(out.shape)
    upstream[0, size // 2, size // 2, 0] = 1.0
    out.backward(upstream)
    return np.any(x.grad[0] != 0.0, axis=-1)


def field_width(mask):
    """Width of the field along the centre row: last minus first marked column, plus one."""
    columns = np.flatnonzero(mask[mask.shape[0] // 2])
    return int(columns[-1] - columns[0] + 1) if columns.size else 0


def layouts(layers, kernel_size, dilation):
    """The three stacks compared: NA, NA/DiNA alternating, and dilations growing by ``kernel_size``."""
    return {
        "NA": [1] * layers,
        f"NA + DiNA (1, {dilation}, ...)": [1 if i % 2 == 0 else dilation for i in range(layers)],
        f"DiNA (1, {kernel_size}, {kernel_size}^2, ...)": [kernel_size ** i for i in range(layers)],
    }


def plot(output, layers=3, kernel_size=3, dilation=2, size=None):
    """Save a PNG with one panel per stack of :func:`layouts`; returns ``{label: width}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stacks = layouts(layers, kernel_size, dilation)
    widest = max(1 + (kernel_size - 1) * sum(d) for d in stacks.values())
    size = size or widest + 2 + (widest + 1) % 2   # odd, with a margin
    figure, axes = plt.subplots(1, len(stacks), figsize=(4 * len(stacks), 4.3))
    widths = {}
    for axis, (label, dilations) in zip(axes, stacks.items()):
        mask = receptive_field(dilations, kernel_size, size)
        widths[label] = field_width(mask)
        axis.imshow(mask, cmap="Blues", vmin=0, vmax=1.3)
        axis.plot([size // 2], [size // 2], "r+", markersize=10)
        axis.set_title(f"{label}\ndilations {dilations}: width {widths[label]}")
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"Receptive field of the centre pixel after {layers} layers, kernel {kernel_size} "
                    f"(NA: L(k-1)+1 = {layers * (kernel_size - 1) + 1})")
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return widths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--dilation", type=int, default=2, help="dilation of the DiNA layers in the NA + DiNA stack")
    parser.add_argument("--output", default=os.path.join("runs", "receptive_field.png"),
                        help="where to write the figure (default: runs/receptive_field.png, like the other examples)")
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    for label, width in plot(args.output, args.layers, args.kernel_size, args.dilation).items():
        print(f"{label:28s} width {width}")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
