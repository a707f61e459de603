"""The user's framework: NumPy arrays or torch tensors in, the same out.

``framework="numpy"``: the function gets NumPy arrays; gradients come from ``backward_fn``.
``framework="torch"``: it gets CPU torch tensors (``requires_grad`` on the differentiable ones);
gradients come from ``torch.autograd`` unless ``backward_fn`` is given.
"""
from __future__ import annotations

import numpy as np

FRAMEWORKS = ("numpy", "torch")


def check_framework(framework):
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}; got {framework!r}")
    if framework == "torch":
        import torch  # noqa: F401  (fails early with torch's own message when it is missing)


def to_user(array, framework, requires_grad):
    """A contiguous copy of a NumPy array, as the framework's array."""
    array = np.ascontiguousarray(array)
    if framework == "numpy":
        return array.copy()
    import torch

    return torch.tensor(array, requires_grad=requires_grad)


def to_numpy(value):
    """NumPy array of a NumPy array, a torch tensor or anything ``np.asarray`` takes."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def autograd(output, dout, leaves):
    """``output.backward(dout)``; the gradient of every leaf (``{name: tensor}``), zeros when it got none."""
    import torch

    if not getattr(output, "requires_grad", False):
        raise TypeError("the output does not require grad: no input reaches it through torch autograd")
    output.backward(torch.tensor(dout, dtype=output.dtype))
    return {name: (leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)) for name, leaf in leaves.items()}


def flatten(values):
    """``(dx, (dw0, dw1), (db0, db1))`` -> ``[dx, dw0, dw1, db0, db1]``: a user's backward may nest sequences
    and return ``None`` for an input that was ``None`` (refvit's own rule), which is dropped."""
    out = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend(flatten(value))
        else:
            out.append(value)
    return out


def permute(array, axes):
    return array if axes is None else np.transpose(array, axes)

