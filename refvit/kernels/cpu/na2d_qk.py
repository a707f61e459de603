"""``na2d_qk`` on the CPU: the entries of :mod:`refvit.kernels.cpu.na_split`, where its kernels are."""
from refvit.kernels.cpu.na_split import qk_backward as backward  # noqa: F401  (the kernel entries)
from refvit.kernels.cpu.na_split import qk_forward as forward  # noqa: F401
