"""The reproducer of a failing case: a short script that needs only NumPy (and torch for a torch
function) and the user's function. It loads ``<case>.npz``: the inputs under the user's argument
names, ``dout``, and ``expected_out`` / ``expected_grad_<name>``."""
from __future__ import annotations

import numpy as np


def import_line(fn):
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if module and module != "__main__" and name and "<" not in name and "." not in name:
        return f"from {module} import {name} as fn"
    return "fn = ...  # your function"


def render_call(args, kwargs, names, source):
    """``fn(t["query"], ..., kernel_size=3)`` with every input array written as ``source["name"]``."""
    by_id = {id(array): name for name, array in names.items()}

    def render(value):
        if id(value) in by_id:
            return f'{source}["{by_id[id(value)]}"]'
        if isinstance(value, (list, tuple)) and any(id(item) in by_id for item in value):
            inner = ", ".join(render(item) for item in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner},)"
        if isinstance(value, np.generic):
            return repr(value.item())
        return repr(value)

    parts = [render(value) for value in args] + [f"{key}={render(value)}" for key, value in kwargs.items()]
    return "fn(" + ", ".join(parts) + ")"


def script(fn, case, call, framework, differentiable, backward_fn=False):
    """Source of the reproducer of ``case``; ``call`` from :func:`render_call` reads ``t``."""
    lines = [f"# {case.name}: {case.describe()}", "import numpy as np"]
    torch_autograd = framework == "torch" and not backward_fn
    if framework == "torch":
        lines.append("import torch")
    lines += [import_line(fn), f'data = np.load("{case.name}.npz")']
    if framework == "torch":
        grads = set(differentiable)
        lines.append("t = {name: torch.tensor(data[name], requires_grad=name in %r)" % sorted(grads)
                     + " for name in data.files if not name.startswith(('expected_', 'dout'))}")
    else:
        lines.append("t = {name: data[name] for name in data.files if not name.startswith(('expected_', 'dout'))}")
    lines += [f"out = {call}", "", "def report(what, actual, expected):",
              "    actual = actual.detach().numpy() if hasattr(actual, 'detach') else np.asarray(actual)",
              "    err = np.abs(actual - expected)",
              "    at = tuple(int(i) for i in np.unravel_index(err.argmax(), err.shape))",
              "    print(what, 'largest error', err.max(), 'at', at)", "",
              'report("out", out, data["expected_out"])']
    if differentiable:
        if torch_autograd:
            lines.append('out.backward(torch.tensor(data["dout"]))')
            lines += [f'report("grad {name}", t["{name}"].grad, data["expected_grad_{name}"])'
                      for name in differentiable]
        elif backward_fn:
            lines.append("backward_fn = ...  # your backward: backward_fn(dout, *args, **kwargs) -> gradients")
            lines.append("grads = " + call.replace("fn(", 'backward_fn(data["dout"], ', 1))
            lines += [f'report("grad {name}", grads[{i}], data["expected_grad_{name}"])'
                      for i, name in enumerate(differentiable)]
    return "\n".join(lines) + "\n"
