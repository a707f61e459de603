"""Forward and backward times of ``linear`` on the shapes the ``*_nano`` models use, refvit or PyTorch.

    python examples/linear_shapes.py --cpu-time --repeat 7           # refvit cpu, one thread, CPU time
    python examples/linear_shapes.py --cpu-time --repeat 7 --torch   # the same shapes in PyTorch
    python examples/linear_shapes.py --repeat 7                      # wall time, all threads
    python examples/linear_shapes.py --cpu-time --repeat 7 --gelu fused      # fc1 + GELU: ops.linear_gelu
    python examples/linear_shapes.py --cpu-time --repeat 7 --gelu separate   # ops.linear, then ops.gelu
    python examples/linear_shapes.py --repeat 7 --official           # stage 4 of the official sizes

Run each side as its own process, alternating when comparing (the load of a shared machine moves).
``--cpu-time`` sets ``NUMBA_NUM_THREADS=1`` and one BLAS / PyTorch thread before anything is imported
and times with ``time.process_time``. Each line gives the least time in ms over ``--repeat`` rounds of
20 calls: the forward (``ops.linear.forward``, ``backend="cpu"``) and the backward alone (``dx``,
``dweight``, ``dbias``; for PyTorch forward + backward minus forward). The last line adds them up.

``--gelu`` times the first layer of an MLP and its GELU on the ``fc1`` shapes of nat_nano and dinat_nano
(:data:`GELU_SHAPES`): ``fused`` is the one op ``ops.linear_gelu``, ``separate`` the two ops ``ops.linear``
and ``ops.gelu`` one after the other (forward both forwards, backward both backwards); with ``--torch``,
``gelu(linear(x))`` in PyTorch. The last line then also gives the sum over one dinat_nano training step
(each shape times its calls per step).
"""
import argparse
import sys

from refvit.bench.one_thread import pin_one_thread, side_and_clock

# (rows, in, out): the float32 linears of the nano models at batch 64, 32x32 (rows = batch x tokens).
SHAPES = [
    (4096, 32, 96), (4096, 96, 32), (4096, 32, 32), (1024, 64, 192), (1024, 192, 64),
    (256, 128, 384), (256, 384, 128), (16384, 32, 128),
]
# (rows, in, out): the linears of the last stage of the official models at batch 2, 224x224 (7x7 tokens of
# 2 images: 98 rows), where the cpu kernel cuts the outputs instead of the rows (``--official``).
OFFICIAL_SHAPES = [
    (98, 512, 512), (98, 1024, 512), (98, 512, 1536), (98, 512, 2048), (98, 2048, 512), (98, 768, 3072),
    (98, 3072, 768),
]
# (rows, in, out, calls per step): the fc1 layers that GELU follows in nat_nano and dinat_nano (batch 64,
# 32x32; maps 8x8, 4x4, 2x2; mlp_ratio 3), with the number of blocks at each.
GELU_SHAPES = [(4096, 32, 96, 2), (1024, 64, 192, 2), (256, 128, 384, 4)]
CALLS = 20


def _least(fn, repeat, clock):
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        for _ in range(CALLS):
            fn()
        best = min(best, (clock() - start) / CALLS * 1e3)
    return best


def _refvit_times(x, weight, bias, dout, repeat, clock):
    from refvit import ops

    _, cache = ops.linear.forward(x, weight, bias, backend="cpu")
    forward = _least(lambda: ops.linear.forward(x, weight, bias, backend="cpu"), repeat, clock)
    return forward, _least(lambda: ops.linear.backward(dout, cache), repeat, clock)


def _fused_times(x, weight, bias, dout, repeat, clock):
    from refvit import ops

    _, cache = ops.linear_gelu.forward(x, weight, bias, backend="cpu")
    forward = _least(lambda: ops.linear_gelu.forward(x, weight, bias, backend="cpu"), repeat, clock)
    return forward, _least(lambda: ops.linear_gelu.backward(dout, cache), repeat, clock)


def _separate_times(x, weight, bias, dout, repeat, clock):
    from refvit import ops

    def forward():
        return ops.gelu.forward(ops.linear.forward(x, weight, bias, backend="cpu")[0], backend="cpu")

    hidden, linear_cache = ops.linear.forward(x, weight, bias, backend="cpu")
    _, gelu_cache = ops.gelu.forward(hidden, backend="cpu")

    def backward():
        (dhidden,) = ops.gelu.backward(dout, gelu_cache)
        return ops.linear.backward(dhidden, linear_cache)

    return _least(forward, repeat, clock), _least(backward, repeat, clock)


def _torch_gelu_times(x, weight, bias, dout, repeat, clock):
    import torch

    xt = torch.tensor(x, requires_grad=True)
    wt, bt, gt = torch.tensor(weight, requires_grad=True), torch.tensor(bias, requires_grad=True), torch.tensor(dout)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.gelu(torch.nn.functional.linear(xt, wt, bt))

    def both():
        torch.nn.functional.gelu(torch.nn.functional.linear(xt, wt, bt)).backward(gt)
    forward_ms = _least(forward, repeat, clock)
    return forward_ms, _least(both, repeat, clock) - forward_ms


def _torch_times(x, weight, bias, dout, repeat, clock):
    import torch

    xt = torch.tensor(x, requires_grad=True)
    wt, bt, gt = torch.tensor(weight, requires_grad=True), torch.tensor(bias, requires_grad=True), torch.tensor(dout)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.linear(xt, wt, bt)

    def both():
        torch.nn.functional.linear(xt, wt, bt).backward(gt)
    forward_ms = _least(forward, repeat, clock)
    return forward_ms, _least(both, repeat, clock) - forward_ms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-time", action="store_true", help="one thread, time.process_time")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds of 20 calls per shape")
    parser.add_argument("--torch", action="store_true", help="time torch.nn.functional.linear instead")
    parser.add_argument("--gelu", choices=("fused", "separate"),
                        help="time fc1 + GELU on GELU_SHAPES: ops.linear_gelu, or ops.linear then ops.gelu")
    parser.add_argument("--official", action="store_true",
                        help="the 98-row shapes of the official models' last stage (OFFICIAL_SHAPES) instead")
    args = parser.parse_args(argv)
    if args.cpu_time:
        pin_one_thread()
    import numpy as np

    side, clock = side_and_clock(args.torch, args.cpu_time, "refvit cpu")
    if args.gelu:
        side += " linear + gelu" + ("" if args.torch else f" {args.gelu}")
        timer = _torch_gelu_times if args.torch else (_fused_times if args.gelu == "fused" else _separate_times)
        shapes = [shape[:3] for shape in GELU_SHAPES]
    else:
        timer = _torch_times if args.torch else _refvit_times
        shapes = OFFICIAL_SHAPES if args.official else SHAPES
    print(f"{side}, float32, {'one thread, CPU' if args.cpu_time else 'wall'} time in ms, "
          f"least of {args.repeat} rounds: forward | backward")
    rng = np.random.default_rng(0)
    totals, step = [0.0, 0.0], [0.0, 0.0]
    for index, (rows, n_in, n_out) in enumerate(shapes):
        x = rng.standard_normal((rows, n_in), dtype=np.float32)
        weight = rng.standard_normal((n_out, n_in), dtype=np.float32) * 0.1
        bias = rng.standard_normal(n_out, dtype=np.float32)
        dout = rng.standard_normal((rows, n_out), dtype=np.float32)
        forward, backward = timer(x, weight, bias, dout, args.repeat, clock)
        totals[0] += forward
        totals[1] += backward
        if args.gelu:
            step[0] += forward * GELU_SHAPES[index][3]
            step[1] += backward * GELU_SHAPES[index][3]
        print(f"({rows}, {n_in}) -> {n_out:<4d} {forward:8.3f} | {backward:8.3f}")
        sys.stdout.flush()
    print(f"{'all shapes':20s} {totals[0]:8.3f} | {totals[1]:8.3f}"
          + (f"   dinat_nano step: {step[0]:.3f} | {step[1]:.3f}" if args.gelu else ""))


if __name__ == "__main__":
    main()
