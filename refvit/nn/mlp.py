"""``Mlp``: timm's two-layer perceptron, ``fc2(drop(norm(drop(act(fc1(x))))))``."""
from __future__ import annotations

from refvit import functional as F
from refvit.nn.activation import GELU
from refvit.nn.dropout import Dropout
from refvit.nn.linear import Identity, Linear
from refvit.nn.module import Module


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class Mlp(Module):
    """``x (..., in_features)`` -> ``(..., out_features)`` through ``hidden_features``.

    Submodules ``fc1``, ``act``, ``drop1``, ``norm``, ``fc2``, ``drop2`` as in timm, so the
    ``state_dict`` keys are ``fc1.weight, fc1.bias, fc2.weight, fc2.bias`` (plus ``norm.*``
    with a ``norm_layer``). ``act_layer`` is a module class (``GELU``); ``drop`` is one
    probability or a pair (after ``act``, after ``fc2``).

    With a plain ``Linear`` ``fc1`` and a plain ``GELU`` ``act`` (the models' MLPs), ``act(fc1(x))`` is
    computed by the one op ``linear_gelu`` (``F.linear_gelu`` with ``fc1``'s parameters and ``act``'s
    ``approximate``), which saves the separate GELU pass over the hidden activations; any other
    ``fc1`` or ``act`` (a subclass, or a module whose ``forward`` was replaced on the instance, included)
    is called as a module.
    """

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=GELU, norm_layer=None,
                 bias=True, drop=0.0, dtype=None):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        bias1, bias2 = _pair(bias)
        drop1, drop2 = _pair(drop)
        self.fc1 = Linear(in_features, hidden_features, bias=bias1, dtype=dtype)
        self.act = act_layer()
        self.drop1 = Dropout(drop1)
        self.norm = norm_layer(hidden_features) if norm_layer is not None else Identity()
        self.fc2 = Linear(hidden_features, out_features, bias=bias2, dtype=dtype)
        self.drop2 = Dropout(drop2)

    def forward(self, x):
        x = self.drop1(self._fc1_act(x))
        return self.drop2(self.fc2(self.norm(x)))

    def _fc1_act(self, x):
        """``act(fc1(x))``: one ``linear_gelu`` where that is what the two modules compute."""
        fc1, act = self.fc1, self.act
        if (type(fc1) is Linear and type(act) is GELU and fc1.backend == act.backend
                and "forward" not in vars(fc1) and "forward" not in vars(act)):  # none replaced on the instance
            return F.linear_gelu(x, fc1.weight, fc1.bias, approximate=act.approximate, backend=fc1.backend)
        return act(fc1(x))
