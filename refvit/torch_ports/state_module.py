"""An ``nn.Module`` around a functional port that reads its weights from a ``state_dict``.

The CoAtNet and SMT ports are functions of ``(images, state_dict)``; :class:`StateDictModule`
holds that dict's entries as parameters (floating entries refvit trains) and buffers (BatchNorm
statistics), keyed by the official names, so ``load_state_dict``, ``parameters()``, optimizers and
``torch.compile`` treat it like any module.
"""
import torch
from torch import nn


def _escape(key):
    return key.replace(".", "/")


class StateDictModule(nn.Module):
    """``forward(images)`` is ``function(images, state_dict, training)`` with this module's tensors.

    ``parameter_names`` are the keys held as trainable parameters; every other key of ``shapes``
    (``{name: (shape, dtype)}``) is a buffer.
    """

    def __init__(self, function, shapes, parameter_names):
        super().__init__()
        self.function, self.names = function, list(shapes)
        for name, (shape, dtype) in shapes.items():
            tensor = torch.zeros(shape, dtype=dtype)
            if name in parameter_names:
                self.register_parameter(_escape(name), nn.Parameter(tensor))
            else:
                self.register_buffer(_escape(name), tensor)

    def tensors(self):
        """``{official name: tensor}`` of this module."""
        return {name: getattr(self, _escape(name)) for name in self.names}

    def official_name(self, name):
        """The official key of one of this module's ``named_parameters()`` names."""
        return name.replace("/", ".")

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return super().load_state_dict({_escape(k): v for k, v in state_dict.items()}, strict=strict, assign=assign)

    def forward(self, images):
        return self.function(images, self.tensors(), self.training)
