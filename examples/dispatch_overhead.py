"""The fixed cost of a ``cpu`` op call: dispatch and the thread rule, on arrays too small to matter.

Times chains of tiny calls and prints microseconds per call (the minimum over ``--repeat`` runs of
``--calls`` calls each):

* ``add fwd cpu`` / ``add fwd numpy``: ``refvit.ops.add.forward`` on two (4, 4) float32 arrays;
* ``gelu fwd cpu`` / ``gelu fwd numpy``: ``refvit.ops.gelu.forward`` on an (8, 16) float32 array;
* ``add kernel direct``: the ``cpu`` kernel module's ``forward`` called by hand (no op layer, no rule);
* ``kernels.call add``: the same through :func:`refvit.kernels.call`, i.e. with the thread rule;
* ``thread rule alone``: :func:`refvit.kernels.cpu._threads.run_as_kernel_entry` around a function
  that does nothing, with BLAS allowed its default number of threads outside the call;
* ``tape x + x`` / ``tape reshape`` / ``tape permute``: the same ops on a (4, 4) float32 ``Tensor``
  that requires a gradient, recorded on the tape (default backend ``cpu``);
* ``tape (x+x).backward``: one recorded ``add`` and its backward, the gradient summed into ``x.grad``.

    python examples/dispatch_overhead.py [--calls 10000] [--repeat 7]

The machine may be shared: read the minimum, and run the script more than once.
"""
import argparse
import time

import numpy as np

from refvit import kernels, ops
from refvit.autograd import Tensor
from refvit.backend import use_backend
from refvit.kernels.cpu import _threads


def _per_call_us(fn, calls, repeat):
    fn()  # compile, fill the caches
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def cases():
    """``(label, zero-argument function)`` pairs, each one tiny call."""
    a = np.ones((4, 4), np.float32)
    b = np.full((4, 4), 2.0, np.float32)
    x = np.linspace(-3, 3, 128, dtype=np.float32).reshape(8, 16)
    add_kernel = kernels.load("cpu", ops.spec("add").kernels["cpu"]).forward
    add_args = (a, b, (4, 4))

    def nothing(array):
        return array

    t = Tensor(a, requires_grad=True)

    def tape_backward():
        t.grad = None
        (t + t).backward(b)

    return [
        ("add fwd cpu", lambda: ops.add.forward(a, b, backend="cpu")),
        ("add fwd numpy", lambda: ops.add.forward(a, b, backend="numpy")),
        ("gelu fwd cpu", lambda: ops.gelu.forward(x, backend="cpu")),
        ("gelu fwd numpy", lambda: ops.gelu.forward(x, backend="numpy")),
        ("add kernel direct", lambda: add_kernel(*add_args)),
        ("kernels.call add", lambda: kernels.call("cpu", "add", "forward", add_args)),
        ("thread rule alone", lambda: _threads.run_as_kernel_entry(nothing, (a,))),
        ("tape x + x", lambda: t + t),
        ("tape reshape", lambda: t.reshape(2, 8)),
        ("tape permute", lambda: t.permute(1, 0)),
        ("tape (x+x).backward", tape_backward),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with use_backend("cpu"):
        for label, fn in cases():
            print(f"{label:20s} {_per_call_us(fn, args.calls, args.repeat):7.2f} us/call")


if __name__ == "__main__":
    main()
