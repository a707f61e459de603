"""Forward and backward times of ``linear`` on the shapes the ``*_nano`` models use, refvit or PyTorch.

    python examples/linear_shapes.py --cpu-time --repeat 7           # refvit cpu, one thread, CPU time
    python examples/linear_shapes.py --cpu-time --repeat 7 --torch   # the same shapes in PyTorch
    python examples/linear_shapes.py --repeat 7                      # wall time, all threads

Run each side as its own process, alternating when comparing (the load of a shared machine moves).
``--cpu-time`` sets ``NUMBA_NUM_THREADS=1`` and one BLAS / PyTorch thread before anything is imported
and times with ``time.process_time``. Each line gives the least time in ms over ``--repeat`` rounds of
20 calls: the forward (``ops.linear.forward``, ``backend="cpu"``) and the backward alone (``dx``,
``dweight``, ``dbias``; for PyTorch forward + backward minus forward). The last line adds them up.
"""
import argparse
import sys

from refvit.bench.one_thread import pin_one_thread, side_and_clock

# (rows, in, out): the float32 linears of the nano models at batch 64, 32x32 (rows = batch x tokens).
SHAPES = [
    (4096, 32, 96), (4096, 96, 32), (4096, 32, 32), (1024, 64, 192), (1024, 192, 64),
    (256, 128, 384), (256, 384, 128), (16384, 32, 128),
]
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
    args = parser.parse_args(argv)
    if args.cpu_time:
        pin_one_thread()
    import numpy as np

    side, clock = side_and_clock(args.torch, args.cpu_time, "refvit cpu")
    timer = _torch_times if args.torch else _refvit_times
    print(f"{side}, float32, {'one thread, CPU' if args.cpu_time else 'wall'} time in ms, "
          f"least of {args.repeat} rounds: forward | backward")
    rng = np.random.default_rng(0)
    totals = [0.0, 0.0]
    for rows, n_in, n_out in SHAPES:
        x = rng.standard_normal((rows, n_in), dtype=np.float32)
        weight = rng.standard_normal((n_out, n_in), dtype=np.float32) * 0.1
        bias = rng.standard_normal(n_out, dtype=np.float32)
        dout = rng.standard_normal((rows, n_out), dtype=np.float32)
        forward, backward = timer(x, weight, bias, dout, args.repeat, clock)
        totals[0] += forward
        totals[1] += backward
        print(f"({rows}, {n_in}) -> {n_out:<4d} {forward:8.3f} | {backward:8.3f}")
        sys.stdout.flush()
    print(f"{'all shapes':20s} {totals[0]:8.3f} | {totals[1]:8.3f}")


if __name__ == "__main__":
    main()
