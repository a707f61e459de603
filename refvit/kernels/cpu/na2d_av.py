"""``na2d_av`` on the CPU: the entries of :mod:`refvit.kernels.cpu.na_split`, where its kernels are."""
from refvit.kernels.cpu.na_split import av_backward as backward  # noqa: F401  (the kernel entries)
from refvit.kernels.cpu.na_split import av_forward as forward  # noqa: F401
