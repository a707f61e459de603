"""Containers: ``Sequential`` and ``ModuleList`` (children named ``"0"``, ``"1"``, ... as in PyTorch)."""
from __future__ import annotations

import numbers
from collections import OrderedDict

from refvit.nn.module import Module


class Sequential(Module):
    """Calls its children in order: ``Sequential(a, b)(x) == b(a(x))``.

    Built from modules (named ``"0"``, ``"1"``, ...) or from one ``OrderedDict`` of named modules.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[_index("Sequential", index, len(self))]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of modules registered as children ``"0"``, ``"1"``, ...; it has no ``forward``."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[str(_index("ModuleList", index, len(self)))]

    def __setitem__(self, index, module):
        self.add_module(str(_index("ModuleList", index, len(self))), module)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self


def _index(where, index, length):
    if not isinstance(index, numbers.Integral) or not -length <= index < length:
        raise IndexError(f"{where}: index {index!r} is out of range for {length} modules")
    return int(index) % length
