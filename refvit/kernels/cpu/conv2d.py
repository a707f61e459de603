"""The ``cpu`` conv2d entries: one rule picks the algorithm for the shapes of the call.

* ``groups == C_in == C_out`` (depthwise): the direct kernels of
  :mod:`refvit.kernels.cpu.depthwise_conv2d`;
* other ``groups > 1``: the direct loops of :mod:`refvit.kernels.cpu.conv2d_direct`;
* ``groups == 1`` with windows that do not overlap (stride == kernel, no padding, no dilation, not
  ``1x1``): the blocked products with ``dx`` copied back in place, :mod:`refvit.kernels.cpu.conv2d_merge`;
* ``groups == 1``, no dilation, few input channels (``k_w C_in <= 48``), any stride: one product per
  kernel row over wide rows of the input, :mod:`refvit.kernels.cpu.conv2d_rows`;
* ``groups == 1``, stride 1, no dilation, ``k_w C_in <= 96``: ``dweight`` from the same wide rows
  (:func:`refvit.kernels.cpu.conv2d_rows.weight_gradient`), the rest on the path picked;
* other ``groups == 1``: patch rows and matrix products over blocks of output pixels,
  :mod:`refvit.kernels.cpu.conv2d_gemm`.

The measured reasons are beside :func:`choose`; ``docs/ops/conv2d.md`` has the figures.
"""
from refvit.kernels.cpu import conv2d_direct, conv2d_gemm, conv2d_merge, conv2d_rows, depthwise_conv2d
from refvit.kernels.cpu.depthwise_conv2d import channel_sums
from refvit.ops.conv2d import is_depthwise


def choose(in_channels, out_channels, groups, window=None):
    """The module that runs a convolution with these channel counts (and ``window``, when given).

    Measured as one-thread CPU time, float32, forward + backward, on shapes the models use:

    * grouped, not depthwise -> direct loops: SMT's 1x1 groups of 4 -> 8 channels at (64, 8, 8, 32),
      8 groups, 1.85 ms with a patch matrix and a BLAS product per group, 1.66 ms direct; at
      (2, 56, 56, 64), 16 groups, 6.7 -> 4.7 ms;
    * groups == 1 -> blocked patch products: the same direct loops ran 3x slower than them (forward
      at (64, 16, 16, 16) 3x3 -> 16: 7.3 ms against 2.2 ms; the 7x7 stem at (64, 32, 32, 3): 7.4 against
      2.7 ms), since BLAS keeps the products in registers where the loops cannot;
    * groups == 1, stride == kernel, no padding -> the merge path, whose ``dx`` is a copy per block
      instead of a fold: forward + backward, the range over 3 alternating runs of the minimum of 7 calls of
      ``examples/conv2d_shapes.py --cpu-time --repeat 7 --filter merge --path gemm`` / ``--path merge``:
      SMT-T's 2x2 stride-2 merge at (2, 112, 112, 64) 11.2-11.6 -> 9.5-10.1 ms (on two threads, wall
      time, the same command without ``--cpu-time``: 16.6-18.3 -> 14.3-15.2 ms); smt_nano's at
      (64, 16, 16, 32) is a tie, 2.34-2.55 against 2.40-2.42 ms (two threads: 1.6-3.6 against 3.2-3.5 ms).
    * groups == 1, ``k_w C_in <= 48`` -> the kernel-row products of ``conv2d_rows`` (figures in
      ``docs/ops/conv2d.md``): dualvit_nano's 3x3 16 -> 16 at (64, 16, 16, 16), its 7x7 stride-2 stem and its
      3x3 stride-2 16 -> 32; with 32 input channels (coatnet_nano's 3x3) the patch products are as fast
      forward, and the wide rows win for ``dweight`` alone at stride 1 (``conv2d_rows.MAX_WEIGHT_WIDE_ROW``).
    """
    if is_depthwise(in_channels, out_channels, groups):
        return depthwise_conv2d
    if groups > 1:
        return conv2d_direct
    if window is not None and conv2d_merge.takes(window):
        return conv2d_merge
    if window is not None and conv2d_rows.takes(in_channels, window):
        return conv2d_rows
    return conv2d_gemm


def forward(x, weight, bias, window):
    """``x (B, H, W, C_in)``, ``weight (C_out, C_in/G, kh, kw)``, ``bias (C_out,)`` or None -> ``out``."""
    groups = x.shape[3] // weight.shape[1]
    return choose(x.shape[3], weight.shape[0], groups, window).forward(x, weight, bias, window)


def backward(dout, x, weight, has_bias, window, needs=(True, True)):
    """-> ``(dx, dweight, dbias)``, ``dbias`` None without a bias; ``needs``: whether ``dx`` and ``dweight``
    are wanted (each path skips the one that is not and returns ``None`` for it)."""
    groups = x.shape[3] // weight.shape[1]
    path = choose(x.shape[3], weight.shape[0], groups, window)
    if path is depthwise_conv2d:
        return depthwise_conv2d.backward(dout, x, weight, has_bias, window, needs)
    if path is conv2d_gemm and needs[1] and conv2d_rows.takes_weight(x.shape[3], window):
        dx, _, dbias = path.backward(dout, x, weight, has_bias, window, channel_sums, (needs[0], False))
        return dx, conv2d_rows.weight_gradient(dout, x, weight, window), dbias
    return path.backward(dout, x, weight, has_bias, window, channel_sums, needs)
