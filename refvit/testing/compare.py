"""``assert_close``: compare arrays and say where they differ and by how much."""
from __future__ import annotations

import numpy as np

from refvit._validate import is_device_array

# Default tolerances by dtype, as in torch.testing.assert_close.
DEFAULT_TOLERANCES = {np.dtype(np.float32): (1.3e-6, 1e-5), np.dtype(np.float64): (1e-7, 1e-7)}


def to_numpy(a):
    """NumPy view of an array, a device array, a refvit ``Tensor`` or a torch tensor."""
    if a is None:
        return None
    from refvit.autograd import Tensor

    if isinstance(a, Tensor):  # Parameters too
        a = a.data
    if is_device_array(a) and hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    if hasattr(a, "detach") and hasattr(a, "numpy"):  # torch.Tensor
        return a.detach().cpu().numpy()
    return np.asarray(a)


def assert_close(actual, expected, rtol=None, atol=None, name="value", equal_nan=True):
    """Raise ``AssertionError`` unless ``|actual - expected| <= atol + rtol * |expected|``.

    The message names the largest absolute and relative differences, the index
    where the worst one sits and how many elements fail. Tolerances default to
    PyTorch's for the arrays' dtype (float32: rtol 1.3e-6, atol 1e-5).
    """
    a = to_numpy(actual)
    e = to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shapes differ: actual {a.shape}, expected {e.shape}")
    dtype = np.result_type(a.dtype, e.dtype)
    default_rtol, default_atol = DEFAULT_TOLERANCES.get(np.dtype(dtype), (1e-7, 1e-7))
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    nan_a, nan_e = np.isnan(a64), np.isnan(e64)
    nan_mismatch = (nan_a != nan_e) if equal_nan else (nan_a | nan_e)
    with np.errstate(invalid="ignore"):
        same_inf = np.isinf(a64) & np.isinf(e64) & (a64 == e64)
        diff = np.array(np.abs(a64 - e64))  # an array even for 0-d inputs, so it can be masked
        diff[same_inf | (nan_a & nan_e & equal_nan)] = 0.0
        inf_mismatch = (np.isinf(a64) | np.isinf(e64)) & ~same_inf & ~(nan_a | nan_e)
        bad = (diff > atol + rtol * np.abs(e64)) | nan_mismatch | inf_mismatch
        bad &= ~same_inf
    if not bad.any():
        return
    diff = np.where(np.isnan(diff), np.inf, diff)
    worst = np.unravel_index(int(np.argmax(np.where(bad, diff, -1.0))), a.shape) if a.ndim else ()
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = diff / np.maximum(np.abs(e64), np.finfo(np.float64).tiny)
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {a.size} elements differ beyond rtol={rtol:g}, atol={atol:g}; "
        f"largest absolute difference {float(diff.max()):.3e}, largest relative difference "
        f"{float(rel[bad].max()):.3e}; worst at index {tuple(int(i) for i in worst)}: "
        f"actual {a64[worst]!r}, expected {e64[worst]!r}"
    )
