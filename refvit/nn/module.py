"""``Module``: the base of every layer and model, with PyTorch's names and traversal order.

Assigning a :class:`Parameter` or a ``Module`` to an attribute registers it; buffers
(NumPy arrays that are state but not parameters, like BatchNorm's running statistics)
are registered with :meth:`Module.register_buffer`. Traversals visit a module's own
parameters in assignment order, then its children in assignment order, depth first, so
``state_dict()`` keys come out in PyTorch's order: ``weight, bias, running_mean,
running_var, num_batches_tracked`` for a BatchNorm, ``0.weight, 0.bias, 1.weight`` for a
``Sequential``. See ``docs/nn.md``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from refvit.autograd.tensor import Tensor
from refvit.backend import BACKENDS, use_backend
from refvit.nn.parameter import FLOAT_DTYPES, Parameter, check_float_dtype
from refvit.nn.state_dict import load_into


class Module:
    """Base class: subclasses call ``super().__init__()`` first, then assign their parts."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "backend", None)

    # ---- registration
    def _registry(self, name):
        try:
            return self.__dict__["_parameters"], self.__dict__["_buffers"], self.__dict__["_modules"]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning '{name}'") from None

    def __setattr__(self, name, value):
        parameters, buffers, modules = self._registry(name)
        if isinstance(value, Parameter):
            self._forget(name)
            parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in parameters:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: '{name}' is a Parameter; assign a Parameter or None, "
                                f"got {type(value).__name__}")
            parameters[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: '{name}' is a submodule; assign a Module or None, "
                                f"got {type(value).__name__}")
            modules[name] = None
        elif name in buffers:
            buffers[name] = None if value is None else _buffer_array(value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # called for every submodule, parameter and buffer read (they live in the registries, not in
        # __dict__): submodules, the most read, are looked up first; a name is in one registry at most
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules:
            return modules[name]
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if any(name in self.__dict__.get(r, ()) for r in ("_parameters", "_buffers", "_modules")):
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name, parameter):
        """Register ``parameter`` (a :class:`Parameter` or ``None``) as ``name``."""
        if parameter is not None and not isinstance(parameter, Parameter):
            raise TypeError(f"register_parameter: 'parameter' must be a Parameter or None; got {type(parameter).__name__}")
        self._registry(name)
        self._forget(name)
        self._parameters[name] = parameter

    def register_buffer(self, name, array, persistent=True):
        """Register ``array`` (NumPy, or ``None``) as buffer ``name``; persistent buffers go into ``state_dict``."""
        self._registry(name)
        self._forget(name)
        self._buffers[name] = None if array is None else _buffer_array(array)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: 'module' must be a Module or None; got {type(module).__name__}")
        self._registry(name)
        self._forget(name)
        self._modules[name] = module

    # ---- traversal
    def named_modules(self, prefix=""):
        """``(dotted name, module)`` for this module and every submodule, depth first, each once."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return ((name, module) for name, module in self._modules.items() if module is not None)

    def children(self):
        return (module for _, module in self.named_children())

    def _named_members(self, registry, recurse=True):
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for prefix, module in modules:
            for name, member in getattr(module, registry).items():
                if member is None or id(member) in seen:
                    continue
                seen.add(id(member))
                yield (f"{prefix}.{name}" if prefix else name), member

    def named_parameters(self, recurse=True):
        """``(dotted name, Parameter)`` pairs in PyTorch's order (shared parameters once)."""
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse))

    def named_buffers(self, recurse=True):
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse))

    # ---- state
    def state_dict(self, prefix=""):
        """Parameters and persistent buffers as NumPy arrays (the live arrays, not copies)."""
        out = OrderedDict()
        for name, parameter in self._parameters.items():
            if parameter is not None:
                out[prefix + name] = parameter.data
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent:
                out[prefix + name] = buffer
        for name, child in self._modules.items():
            if child is not None:
                out.update(child.state_dict(prefix=f"{prefix}{name}."))
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy ``state_dict``'s values into this module's parameters and buffers (in place, cast to their dtypes).

        Raises one ``ValueError`` listing every missing, unexpected and mis-shaped key
        (mis-shaped keys raise even with ``strict=False``). Returns ``(missing_keys,
        unexpected_keys)``.
        """
        return load_into(self, self.state_dict(), state_dict, strict)

    # ---- modes and placement
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (``grad = None``, as PyTorch's default)."""
        for parameter in self.parameters():
            parameter.grad = None

    def to(self, target):
        """``to("numpy" | "cpu" | "cuda")`` runs this module's ops on that backend;
        ``to(np.float32 | np.float64)`` casts its float parameters and buffers. Returns ``self``."""
        if isinstance(target, str):
            if target not in BACKENDS:
                raise ValueError(f"Module.to: 'target' must be one of {', '.join(map(repr, BACKENDS))} or a "
                                 f"float dtype; got {target!r}")
            with use_backend(target):  # fails early when the backend cannot run here
                pass
            for module in self.modules():
                object.__setattr__(module, "backend", target)
            return self
        dtype = check_float_dtype("Module.to", target)
        for parameter in self.parameters():
            if parameter.data.dtype != dtype:
                parameter.data = parameter.data.astype(dtype)
                parameter.grad = None if parameter.grad is None else parameter.grad.astype(dtype)
        for module in self.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.dtype in FLOAT_DTYPES:
                    module._buffers[name] = buffer.astype(dtype)
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def apply(self, fn):
        """Call ``fn(module)`` on every submodule (children first) and on ``self``; return ``self``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: forward is not defined")

    def __call__(self, *args, **kwargs):
        if self.backend is None:
            return self.forward(*args, **kwargs)
        with use_backend(self.backend):
            return self.forward(*args, **kwargs)

    # ---- printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        children = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _buffer_array(value):
    return value.data if isinstance(value, Tensor) else np.asarray(value)
