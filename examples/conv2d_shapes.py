"""Forward and forward + backward times of ``conv2d`` (and SMT's ``multiscale_dwconv``) on the shapes the
shipped models use.

    python examples/conv2d_shapes.py --cpu-time --repeat 7           # refvit cpu, one thread, CPU time
    python examples/conv2d_shapes.py --cpu-time --repeat 7 --torch   # the same shapes in PyTorch
    python examples/conv2d_shapes.py --repeat 7                      # wall time, all threads

Run each side as its own process, one after the other (alternating when comparing, since a shared
machine's load moves): refvit and PyTorch in one process would share their thread pools. ``--cpu-time``
sets ``NUMBA_NUM_THREADS=1`` and one BLAS / PyTorch thread before anything is imported and times with
``time.process_time``; without it the times are wall-clock (``time.perf_counter``) on all threads.
Each line gives, in ms, the minimum and the median over ``--repeat`` calls after one warm-up call:
the forward (``ops.conv2d.forward`` with ``backend="cpu"``), then forward + backward (``dx``,
``dweight``, ``dbias``). ``--path gemm`` or ``--path merge`` calls that ``cpu`` algorithm of
``refvit/kernels/cpu/`` directly instead of the one the entry picks (``--path merge`` only on the
shapes it takes); ``--filter TEXT`` keeps the shapes whose label contains TEXT. The ``multiscale``
lines time ``ops.multiscale_dwconv`` (kernels 3, 5, 7, 9 on a quarter of the channels each; PyTorch: one
depthwise ``conv2d`` per head and a concatenation) through the entry only.
"""
import argparse
import statistics
import sys

from refvit.bench.one_thread import pin_one_thread, side_and_clock

# (label, x shape, weight shape, stride, padding, groups): the float32 training shapes of the
# ``*_nano`` models (batch 64, 32x32 images) and of the official sizes at batch 2, 224x224. dualvit_nano's
# training step runs the "dualvit" lines of batch 64 (the 3x3 twice), "several 3x3 s2", and depthwise 3x3
# convolutions at (64, 4, 4, 256) (the coatnet_nano line), (64, 2, 2, 192) and (64, 1, 1, 256), which are
# like the 2x2 line.
SHAPES = [
    ("dualvit_nano stem", (64, 32, 32, 3), (16, 3, 7, 7), 2, 3, 1),
    ("dualvit_nano 3x3", (64, 16, 16, 16), (16, 16, 3, 3), 1, 1, 1),
    ("dualvit/dinat/nat 3x3 s2", (64, 16, 16, 16), (32, 16, 3, 3), 2, 1, 1),
    ("dualvit_nano 3x3 s2 stage 3", (64, 4, 4, 64), (96, 64, 3, 3), 2, 1, 1),
    ("dualvit_nano 3x3 s2 stage 4", (64, 2, 2, 96), (128, 96, 3, 3), 2, 1, 1),
    ("dualvit_nano depthwise 8x8", (64, 8, 8, 128), (128, 1, 3, 3), 1, 1, 128),
    ("dualvit_nano depthwise 2x2", (64, 2, 2, 288), (288, 1, 3, 3), 1, 1, 288),
    ("dinat_nano stem", (64, 32, 32, 3), (16, 3, 3, 3), 2, 1, 1),
    ("cswin_nano stem", (64, 32, 32, 3), (32, 3, 7, 7), 4, 2, 1),
    ("coatnet_nano 3x3", (64, 16, 16, 32), (32, 32, 3, 3), 1, 1, 1),
    ("smt_nano merge 2x2 s2", (64, 16, 16, 32), (32, 32, 2, 2), 2, 0, 1),
    ("several 3x3 s2", (64, 8, 8, 32), (64, 32, 3, 3), 2, 1, 1),
    ("coatnet_nano depthwise 16x16 s2", (64, 16, 16, 128), (128, 1, 3, 3), 2, 1, 128),
    ("coatnet_nano depthwise 8x8 s2", (64, 8, 8, 256), (256, 1, 3, 3), 2, 1, 256),
    ("coatnet_nano depthwise 4x4", (64, 4, 4, 256), (256, 1, 3, 3), 1, 1, 256),
    ("smt_nano 1x1 groups 8", (64, 8, 8, 32), (64, 4, 1, 1), 1, 0, 8),
    ("smt_nano 1x1", (64, 8, 8, 64), (32, 64, 1, 1), 1, 0, 1),
    ("coatnet_0 3x3", (2, 112, 112, 64), (64, 64, 3, 3), 1, 1, 1),
    ("dualvit_s 3x3", (2, 112, 112, 32), (32, 32, 3, 3), 1, 1, 1),
    ("dualvit_s stem", (2, 224, 224, 3), (32, 3, 7, 7), 2, 3, 1),
    ("dinat_mini 3x3 s2", (2, 14, 14, 256), (512, 256, 3, 3), 2, 1, 1),
    ("dualvit_s 3x3 s2", (2, 14, 14, 320), (448, 320, 3, 3), 2, 1, 1),
    ("dinat_mini stem", (2, 224, 224, 3), (32, 3, 3, 3), 2, 1, 1),
    ("smt_tiny 1x1 groups 16", (2, 56, 56, 64), (128, 4, 1, 1), 1, 0, 16),
    ("dinat_mini/cswin_tiny 3x3 s2", (2, 56, 56, 64), (128, 64, 3, 3), 2, 1, 1),
    ("smt_tiny merge 2x2 s2", (2, 112, 112, 64), (64, 64, 2, 2), 2, 0, 1),
    ("smt_tiny depthwise 56x56", (2, 56, 56, 256), (256, 1, 3, 3), 1, 1, 256),
    ("smt_tiny depthwise 14x14", (2, 14, 14, 1024), (1024, 1, 3, 3), 1, 1, 1024),
    ("coatnet_0 depthwise 112x112 s2", (2, 112, 112, 384), (384, 1, 3, 3), 2, 1, 384),
    ("coatnet_0 depthwise 28x28", (2, 28, 28, 768), (768, 1, 3, 3), 1, 1, 768),
]
# (label, x shape, heads): SMT's multi-head mixed convolution of stages 1 and 2
MULTISCALE_SHAPES = [
    ("smt_nano multiscale stage 1", (64, 8, 8, 32), 4),
    ("smt_nano multiscale stage 2", (64, 4, 4, 64), 4),
    ("smt_nano multiscale stage 3", (64, 2, 2, 96), 4),
    ("smt_tiny multiscale stage 1", (2, 56, 56, 64), 4),
    ("smt_tiny multiscale stage 2", (2, 28, 28, 128), 4),
    ("smt_tiny multiscale stage 3", (2, 14, 14, 256), 4),
]


def _arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-time", action="store_true", help="one thread, time.process_time")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per shape (after one warm-up)")
    parser.add_argument("--torch", action="store_true", help="time torch.nn.functional.conv2d instead")
    parser.add_argument("--path", choices=["entry", "gemm", "merge"], default="entry",
                        help="the cpu algorithm: the entry's choice, or one forced")
    parser.add_argument("--filter", default="", help="only shapes whose label contains this text")
    parser.add_argument("--batch", type=int, default=None, help="replace every batch size (a quick run)")
    return parser.parse_args(argv)


def _timed(fn, repeat, clock):
    fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append((clock() - start) * 1e3)
    return min(times), statistics.median(times)


def _refvit_calls(x, weight, bias, stride, padding, groups, path):
    import numpy as np

    from refvit import ops
    from refvit.kernels.cpu import conv2d_gemm, conv2d_merge
    from refvit.kernels.cpu._threads import run_as_kernel_entry
    from refvit.kernels.cpu.depthwise_conv2d import channel_sums
    from refvit.ops._conv_geometry import Window

    out, cache = ops.conv2d.forward(x, weight, bias, stride=stride, padding=padding, groups=groups, backend="cpu")
    dout = np.ones_like(out)
    if path == "entry":
        def forward():
            return ops.conv2d.forward(x, weight, bias, stride=stride, padding=padding, groups=groups, backend="cpu")

        def both():
            _, c = forward()
            return ops.conv2d.backward(dout, c)
        return forward, both
    module = {"gemm": conv2d_gemm, "merge": conv2d_merge}[path]
    window = Window(weight.shape[2:], (stride, stride), (padding, padding), (1, 1))

    def forward():
        return run_as_kernel_entry(module.forward, (x, weight, bias, window))

    def both():
        forward()
        return run_as_kernel_entry(module.backward, (dout, x, weight, True, window, channel_sums))
    return forward, both


def _torch_calls(x, weight, bias, stride, padding, groups):
    import torch

    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt, bt = torch.tensor(weight, requires_grad=True), torch.tensor(bias, requires_grad=True)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, bt, stride, padding, 1, groups)

    def both():
        out = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, 1, groups)
        out.backward(torch.ones_like(out))
    return forward, both


def _multiscale_calls(x, heads, use_torch, rng):
    import numpy as np

    per_head = x.shape[3] // heads
    weights = [rng.standard_normal((per_head, 1, 3 + 2 * i, 3 + 2 * i), dtype=np.float32) * 0.1 for i in range(heads)]
    biases = [rng.standard_normal(per_head, dtype=np.float32) for _ in range(heads)]
    if use_torch:
        import torch

        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        wt = [torch.tensor(w, requires_grad=True) for w in weights]
        bt = [torch.tensor(b, requires_grad=True) for b in biases]

        def run():
            return torch.cat([torch.nn.functional.conv2d(xt[:, i * per_head:(i + 1) * per_head], wt[i], bt[i],
                                                         padding=1 + i, groups=per_head) for i in range(heads)], 1)

        def forward():
            with torch.no_grad():
                return run()

        def both():
            out = run()
            out.backward(torch.ones_like(out))
        return forward, both
    from refvit import ops

    dout = np.ones_like(x)

    def forward():
        return ops.multiscale_dwconv.forward(x, weights, biases, heads, backend="cpu")

    def both():
        return ops.multiscale_dwconv.backward(dout, forward()[1])
    return forward, both


def _print_times(label, shape, forward, both, repeat, clock):
    f_min, f_med = _timed(forward, repeat, clock)
    b_min, b_med = _timed(both, repeat, clock)
    print(f"{label:30s} {shape:44s} {f_min:8.3f} {f_med:8.3f} | {b_min:8.3f} {b_med:8.3f}")
    sys.stdout.flush()


def main(argv=None):
    args = _arguments(argv)
    if args.cpu_time:
        pin_one_thread()
    import numpy as np

    side, clock = side_and_clock(args.torch, args.cpu_time, f"refvit cpu ({args.path})")
    print(f"{side}, float32, {'one thread, CPU' if args.cpu_time else 'wall'} time in ms, "
          f"min / median of {args.repeat}: forward | forward + backward")
    rng = np.random.default_rng(0)
    for label, x_shape, w_shape, stride, padding, groups in SHAPES:
        if args.filter not in label:
            continue
        if args.path == "merge" and not (w_shape[2] == w_shape[3] == stride and padding == 0 and groups == 1):
            continue
        if args.path != "entry" and groups != 1:
            continue
        if args.batch is not None:
            x_shape = (args.batch,) + x_shape[1:]
        x = rng.standard_normal(x_shape, dtype=np.float32)
        weight = rng.standard_normal(w_shape, dtype=np.float32) * 0.1
        bias = rng.standard_normal(w_shape[0], dtype=np.float32)
        if args.torch:
            forward, both = _torch_calls(x, weight, bias, stride, padding, groups)
        else:
            forward, both = _refvit_calls(x, weight, bias, stride, padding, groups, args.path)
        shape = f"{x_shape} -> {w_shape} s{stride}" + (f" g{groups}" if groups > 1 else "")
        _print_times(label, shape, forward, both, args.repeat, clock)
    for label, x_shape, heads in MULTISCALE_SHAPES:
        if args.filter not in label or args.path != "entry":
            continue
        if args.batch is not None:
            x_shape = (args.batch,) + x_shape[1:]
        x = rng.standard_normal(x_shape, dtype=np.float32)
        forward, both = _multiscale_calls(x, heads, args.torch, rng)
        _print_times(label, f"{x_shape} heads {heads}", forward, both, args.repeat, clock)


if __name__ == "__main__":
    main()
