"""``numba.cuda`` kernels.

Each op has one file here: its kernels, each with its launch helper next to it.
Kernels use no warp intrinsics (the CUDA simulator lacks them); shared memory
and atomics are fine. Inputs may be NumPy arrays or device arrays; outputs are
device arrays when any input was one, NumPy arrays otherwise
(see :mod:`refvit.kernels.cuda._device`).
"""
