"""Which implementation of an op runs: ``numpy``, ``cpu`` or ``cuda``.

* ``numpy``: the readable reference, plain NumPy. This is the specification.
* ``cpu``: Numba ``@njit`` kernels (the default).
* ``cuda``: ``numba.cuda`` kernels, on a GPU or under the CUDA simulator
  (``NUMBA_ENABLE_CUDASIM=1`` set before ``numba`` is imported).

The current default is kept in a context variable, so ``use_backend`` is safe to
nest and does not leak between threads.
"""
from __future__ import annotations

import contextlib
import contextvars
import os

BACKENDS = ("numpy", "cpu", "cuda")

ENVIRONMENT_VARIABLE = "REFVIT_BACKEND"
_ENVIRONMENT_VALUE = os.environ.get(ENVIRONMENT_VARIABLE)  # read once, when refvit is imported
_default = contextvars.ContextVar("refvit_backend", default=_ENVIRONMENT_VALUE or "cpu")


def _check_name(name, op="refvit"):
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(
            f"{op}: 'backend' must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}"
        )
    return name


def get_backend() -> str:
    """The backend an op uses when called with ``backend=None``."""
    name = _default.get()
    if name in BACKENDS:
        return name
    if _ENVIRONMENT_VALUE is not None and name == _ENVIRONMENT_VALUE:
        from refvit.errors import UserError

        raise UserError(f"the environment variable {ENVIRONMENT_VARIABLE}={name!r} is not a backend; use "
                        f"{', '.join(BACKENDS[:-1])} or {BACKENDS[-1]} (it sets the default backend and is "
                        f"read when refvit is imported)")
    return _check_name(name)


def set_backend(name: str) -> None:
    """Make ``name`` the default backend (``"numpy"``, ``"cpu"`` or ``"cuda"``)."""
    _check_name(name)
    if name == "cuda":
        require_cuda("set_backend")
    _default.set(name)


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend("numpy"): ...`` runs the block with another default backend."""
    _check_name(name)
    if name == "cuda":
        require_cuda("use_backend")
    token = _default.set(name)
    try:
        yield name
    finally:
        _default.reset(token)


def resolve_backend(backend, op: str) -> str:
    """The backend an op call runs on: the explicit one or the current default."""
    name = get_backend() if backend is None else _check_name(backend, op)
    if name == "cuda":
        require_cuda(op)
    return name


def cuda_simulator_enabled() -> bool:
    """True when ``NUMBA_ENABLE_CUDASIM`` is on (read by numba at import time)."""
    try:
        from numba import config
    except ImportError:  # pragma: no cover - numba is a hard dependency
        return False
    return bool(config.ENABLE_CUDASIM)


def cuda_available() -> bool:
    """True when the ``cuda`` backend can run: a CUDA GPU, or the simulator."""
    try:
        from numba import cuda
    except Exception:
        return False
    if cuda_simulator_enabled():
        return True
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def require_cuda(op: str) -> None:
    """Raise a clear error when the ``cuda`` backend cannot run here."""
    if not cuda_available():
        raise RuntimeError(
            f"{op}: backend 'cuda' needs numba-cuda and either a CUDA GPU or the CUDA simulator; "
            "found neither. Install the extra (pip install 'refvit[cuda]') and run on a GPU, "
            "or set NUMBA_ENABLE_CUDASIM=1 before Python starts to use the simulator."
        )
