"""``na2d_qk`` on the GPU: the entries of :mod:`refvit.kernels.cuda.na_split`, where its kernels are."""
from refvit.kernels.cuda.na_split import qk_backward as backward  # noqa: F401  (the kernel entries)
from refvit.kernels.cuda.na_split import qk_forward as forward  # noqa: F401
