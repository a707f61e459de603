"""How the ``cpu`` backend's ``na2d`` cost scales with the map and the kernel.

Times forward and forward + backward through ``refvit.ops.na2d`` (float32, ``d = 32``, a bias) over
maps {14, 28, 56, 112} x kernels {3, 7, 13} at ``B = 1, heads = 4``, and at ``B = 8`` on the 14x14
and 28x28 maps (the shapes the models run), and prints per shape the path taken, the minimum and
median over ``--repeat`` runs in ms, the cost in ns per ``H W k^2`` of forward + backward, and the
share of this machine's float32 matmul rate (``refvit.bench.timing.matmul_gflops``) that the
flop count ``4 B heads H W k^2 d`` forward (twice that backward) reaches at the minimum.

    python examples/na2d_scaling.py [--repeat 7] [--maps 14 28 56 112] [--kernels 3 7 13] [--cpu-time]

The machine is shared: read the minimum, and run the script more than once. ``--cpu-time`` measures
the process's CPU time instead of the wall clock, for the matmul too, so the share is the work's
rate against BLAS per core; with ``NUMBA_NUM_THREADS=1`` it is the work of one thread, which other
jobs on the machine change far less than the wall clock.

Measured with ``NUMBA_NUM_THREADS=1 nice -n -19 python examples/na2d_scaling.py --cpu-time --repeat 5``, two
runs (matmul 135-194 GFLOP/s of CPU time): ns per ``H W k^2`` of forward + backward 35-40 with 7x7 (28-29
at 8, 14, 7); 19-28 with 13x13. With 3x3 windows (``--kernels 3``, after the ``general`` path's dot
products were vectorised; the least of two runs in a quiet hour and one in a slow one): 47-53 (1, 28, 3),
47-53 (1, 56, 3), 47 (1, 112, 3), 48-50 (8, 28, 3); 64-90 (1, 14, 3) and 51-72 (8, 14, 3).
(1, 56, 7): 9.6-9.8 ms forward, 24.0-24.4 forward + backward, 5.8-6.1% / 7.1-7.2% of the matmul rate.
The table of every shape, before and after the last changes, is in ``docs/ops/na2d.md``.
"""
import argparse
import time

import numpy as np

import refvit.ops.na2d as na2d
from refvit.bench.timing import matmul_gflops
from refvit.kernels.cpu.na2d import dispatch


CLOCK = [time.perf_counter]


def _times(fn, repeat):
    fn()  # compile, fill the caches
    times = []
    for _ in range(repeat):
        start = CLOCK[0]()
        fn()
        times.append(CLOCK[0]() - start)
    return min(times), float(np.median(times))


def _matmul_rate():
    """float32 matmul GFLOP/s: :func:`matmul_gflops` on the wall clock, or on the CPU-time clock."""
    if CLOCK[0] is time.perf_counter:
        return matmul_gflops()
    a, b = (np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32) for _ in range(2))
    return 2.0 * 1024**3 / _times(lambda: a @ b, 5)[0] / 1e9


def measure(batch, heads, side, kernel, head_dim, repeat, rng):
    """-> dict of one shape's figures (seconds, paths)."""
    q, k, v, g = (rng.standard_normal((batch, heads, side, side, head_dim)).astype(np.float32) for _ in range(4))
    rpb = rng.standard_normal((heads, 2 * kernel - 1, 2 * kernel - 1)).astype(np.float32)

    def forward():
        return na2d.forward(q, k, v, kernel, rpb=rpb, backend="cpu")

    def both():
        _, cache = forward()
        return na2d.backward(g, cache)

    fwd = _times(forward, repeat)
    paths = dict(dispatch.last_path)
    fb = _times(both, repeat)
    paths["backward"] = dispatch.last_path["backward"]
    return {"forward": fwd, "both": fb, "paths": paths}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--maps", type=int, nargs="+", default=[14, 28, 56, 112])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 7, 13])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="B (8: maps up to 28 only)")
    parser.add_argument("--cpu-time", action="store_true", help="time.process_time instead of the wall clock")
    args = parser.parse_args(argv)
    CLOCK[0] = time.process_time if args.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    heads, head_dim = 4, 32
    rate = _matmul_rate() * 1e9
    clock = "CPU time" if args.cpu_time else "wall clock"
    print(f"matmul rate {rate / 1e9:.1f} GFLOP/s (float32, 1024^3, {clock})")
    print(f"{'B':>2} {'map':>4} {'k':>3}  {'paths (fwd/bwd)':<16} {'fwd ms min/med':>16} {'f+b ms min/med':>16}"
          f" {'ns/HWk2 f+b':>11} {'%mm fwd':>8} {'%mm f+b':>8}")
    for batch in args.batches:
        for side in args.maps:
            if batch > 1 and side > 28:
                continue
            for kernel in args.kernels:
                if kernel > side:
                    continue
                r = measure(batch, heads, side, kernel, head_dim, args.repeat, rng)
                units = batch * heads * side * side * kernel * kernel
                flops_fwd = 4.0 * units * head_dim
                share_fwd = 100.0 * flops_fwd / r["forward"][0] / rate
                share_both = 100.0 * 3 * flops_fwd / r["both"][0] / rate
                paths = f"{r['paths']['forward']}/{r['paths']['backward']}"
                print(f"{batch:>2} {side:>4} {kernel:>3}  {paths:<16} "
                      f"{r['forward'][0] * 1e3:>7.2f}/{r['forward'][1] * 1e3:<8.2f} "
                      f"{r['both'][0] * 1e3:>7.2f}/{r['both'][1] * 1e3:<8.2f} "
                      f"{r['both'][0] * 1e9 / units:>11.1f} {share_fwd:>8.1f} {share_both:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
