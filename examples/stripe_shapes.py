"""Forward and forward + backward times of ``stripe_attention`` on the shapes CSWin runs, refvit or PyTorch.

    python examples/stripe_shapes.py --cpu-time --repeat 7           # refvit cpu, one thread, CPU time
    python examples/stripe_shapes.py --cpu-time --repeat 7 --torch   # the PyTorch port, the same shapes
    python examples/stripe_shapes.py --repeat 7                      # wall time, all threads

Run each side as its own process, alternating when comparing (the load of a shared machine moves).
``--cpu-time`` sets ``NUMBA_NUM_THREADS=1`` and one BLAS / PyTorch thread before anything is imported
and times with ``time.process_time``. The shapes are every ``(B, heads, H, W, d)`` and stripe that
``cswin_nano`` (batch 64, 32x32, float32) and ``cswin_tiny`` (batch 2, 224x224) run, with LePE weight
and bias. refvit times ``ops.stripe_attention`` with ``backend="cpu"`` on ``(B, heads, H, W, d)``
arrays; PyTorch times the ``LePEBranch`` of ``refvit/torch_ports/cswin.py`` (windows cut with
view/permute, softmax attention, the LePE depthwise convolution on each window, windows put back) on
the same problem as ``(B, H*W, heads*d)`` tokens. Each line gives, in ms, the minimum and the median
over ``--repeat`` calls after one warm-up call: the forward, then forward + backward. The last line of
each model adds up its calls' minima, each shape counted as often as one forward of the model runs it.
``--filter TEXT`` keeps the shapes whose label contains TEXT; ``--batch`` replaces every batch size.
``--path blas`` or ``--path loops`` sends every window, forward and backward, to that ``cpu`` kernel
(``refvit/kernels/cpu/stripe_attention.py`` or ``stripe_small.py``) instead of the one its size picks.
"""
import argparse
import statistics
import sys

from refvit.bench.one_thread import pin_one_thread, side_and_clock

# (label, (B, heads, H, W, d), stripe (sh, sw), calls per forward of the model)
SHAPES = [
    ("cswin_nano s1 vertical", (64, 1, 8, 8, 16), (8, 2), 1),
    ("cswin_nano s1 horizontal", (64, 1, 8, 8, 16), (2, 8), 1),
    ("cswin_nano s2 vertical", (64, 2, 4, 4, 16), (4, 2), 2),
    ("cswin_nano s2 horizontal", (64, 2, 4, 4, 16), (2, 4), 2),
    ("cswin_nano s3 vertical", (64, 4, 2, 2, 16), (2, 1), 2),
    ("cswin_nano s3 horizontal", (64, 4, 2, 2, 16), (1, 2), 2),
    ("cswin_nano s4 full", (64, 16, 1, 1, 16), (1, 1), 1),
    ("cswin_tiny s1 vertical", (2, 1, 56, 56, 32), (56, 1), 1),
    ("cswin_tiny s1 horizontal", (2, 1, 56, 56, 32), (1, 56), 1),
    ("cswin_tiny s2 vertical", (2, 2, 28, 28, 32), (28, 2), 2),
    ("cswin_tiny s2 horizontal", (2, 2, 28, 28, 32), (2, 28), 2),
    ("cswin_tiny s3 vertical", (2, 4, 14, 14, 32), (14, 7), 21),
    ("cswin_tiny s3 horizontal", (2, 4, 14, 14, 32), (7, 14), 21),
    ("cswin_tiny s4 full", (2, 16, 7, 7, 32), (7, 7), 1),
]


def _arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-time", action="store_true", help="one thread, time.process_time")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per shape (after one warm-up)")
    parser.add_argument("--torch", action="store_true", help="time the PyTorch port's LePEBranch instead")
    parser.add_argument("--filter", default="", help="only shapes whose label contains this text")
    parser.add_argument("--batch", type=int, default=None, help="replace every batch size (a quick run)")
    parser.add_argument("--path", choices=["entry", "blas", "loops"], default="entry",
                        help="the cpu kernel: the one the window size picks, or one forced")
    return parser.parse_args(argv)


def _force_path(path):
    """Every window size to the BLAS (``blas``) or the loop (``loops``) kernels; ``entry`` leaves the rule."""
    from refvit.kernels.cpu import stripe_small

    if path != "entry":
        tokens = 0 if path == "blas" else 1 << 62
        stripe_small.FORWARD_TOKENS = stripe_small.BACKWARD_TOKENS = tokens


def _timed(fn, repeat, clock):
    fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append((clock() - start) * 1e3)
    return min(times), statistics.median(times)


def _refvit_calls(q, k, v, stripe, weight, bias):
    import numpy as np

    from refvit import ops

    op = ops.stripe_attention
    dout = np.ones_like(q)

    def forward():
        return op.forward(q, k, v, stripe, lepe_weight=weight, lepe_bias=bias, backend="cpu")

    def both():
        return op.backward(dout, forward()[1])
    return forward, both


def _torch_calls(q, k, v, stripe, weight, bias):
    import torch

    from refvit.torch_ports.cswin import LePEBranch

    batch, heads, height, width, head_dim = q.shape
    if tuple(stripe) == (height, width):
        idx, split = -1, 1
    elif stripe[0] == height:
        idx, split = 0, stripe[1]
    else:
        idx, split = 1, stripe[0]
    branch = LePEBranch(heads * head_dim, heads, idx, split)
    with torch.no_grad():
        branch.get_v.weight.copy_(torch.tensor(weight))
        branch.get_v.bias.copy_(torch.tensor(bias))
    # (B, heads, H, W, d) -> tokens (B, H*W, heads*d), channel head*d + j
    qt, kt, vt = (torch.tensor(x.transpose(0, 2, 3, 1, 4).reshape(batch, height * width, heads * head_dim),
                               requires_grad=True) for x in (q, k, v))

    def forward():
        with torch.no_grad():
            return branch(qt, kt, vt, height, width)

    def both():
        out = branch(qt, kt, vt, height, width)
        out.backward(torch.ones_like(out))
    return forward, both


def main(argv=None):
    args = _arguments(argv)
    if args.cpu_time:
        pin_one_thread()
    import numpy as np

    side, clock = side_and_clock(args.torch, args.cpu_time, f"refvit cpu ({args.path})")
    if not args.torch:
        _force_path(args.path)
    print(f"{side}, float32, {'one thread, CPU' if args.cpu_time else 'wall'} time in ms, "
          f"min / median of {args.repeat}: forward | forward + backward")
    rng = np.random.default_rng(0)
    totals = {}
    for label, shape, stripe, calls in SHAPES:
        if args.filter not in label:
            continue
        if args.batch is not None:
            shape = (args.batch,) + shape[1:]
        q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
        channels = shape[1] * shape[4]
        weight = rng.standard_normal((channels, 1, 3, 3), dtype=np.float32) * 0.3
        bias = rng.standard_normal(channels, dtype=np.float32) * 0.1
        calls_of = _torch_calls if args.torch else _refvit_calls
        forward, both = calls_of(q, k, v, stripe, weight, bias)
        f_min, f_med = _timed(forward, args.repeat, clock)
        b_min, b_med = _timed(both, args.repeat, clock)
        model = label.split()[0]
        total = totals.setdefault(model, [0.0, 0.0])
        total[0] += calls * f_min
        total[1] += calls * b_min
        print(f"{label:26s} {str(shape):20s} {str(tuple(stripe)):8s} {f_min:8.3f} {f_med:8.3f} | "
              f"{b_min:8.3f} {b_med:8.3f}")
        sys.stdout.flush()
    for model, (forward, both) in totals.items():
        print(f"{model + ' all calls':56s} {forward:8.3f} {'':8s} | {both:8.3f}")


if __name__ == "__main__":
    main()
