"""The PyTorch port of a refvit model, holding that model's weights.

:func:`torch_model` builds the port of a registered model name (the ``*_nano`` models and the
official sizes ``dinat_mini``, ``nat_mini``, ``cswin_tiny``, ``smt_tiny``, ``coatnet_0``) and loads
refvit's ``state_dict`` into it with ``load_state_dict``, so both compute the same function;
:func:`official_names` maps the port's parameter names back to refvit's, e.g. to build the same
optimizer groups. NAT / DiNAT ports run dense masked attention by default (``dense=False``
gives the gathered neighbourhoods).
"""
import numpy as np
import torch

from refvit.models.dinat import MINI as NAT_MINI, NANO as NAT_NANO, dinat_dilations
from refvit.torch_ports import cswin, dinat, dualvit, smt
from refvit.torch_ports import coatnet as coatnet_port
from refvit.torch_ports.state_module import StateDictModule

_NAT = {"nat_nano": (NAT_NANO, None), "dinat_nano": (NAT_NANO, (2, 1, 1)),
        "nat_mini": (NAT_MINI, None), "dinat_mini": (NAT_MINI, (8, 4, 2, 1))}
_CSWIN = {"cswin_nano": dict(embed_dim=32, depth=(1, 2, 2, 1), split=(2, 2, 1, 1), heads=(2, 4, 8, 16)),
          "cswin_tiny": dict(embed_dim=64, depth=(1, 2, 21, 1), split=(1, 2, 7, 7), heads=(2, 4, 8, 16))}
_DUALVIT = {"dualvit_nano": dict(stem_hidden=16, dims=(32, 64, 96, 128), heads=(1, 2, 3, 4), ratios=(4, 4, 3, 2, 2),
                                 depths=(1, 1, 2, 1), tokens=4, pool=4)}
_SMT_SA_HEADS = {"smt_nano": (-1, -1, 4, 8), "smt_tiny": (-1, -1, 8, 16)}
_DUALVIT_NESTED = "semantic_init."


def supported(name):
    """True when :func:`torch_model` has a port of model ``name``."""
    return name in _NAT or name in _CSWIN or name in _DUALVIT or name in _SMT_SA_HEADS or name.startswith("coatnet")


def _state(model, dtype):
    return {key: torch.from_numpy(np.array(value, dtype=dtype if np.issubdtype(np.asarray(value).dtype, np.floating)
                                            else np.asarray(value).dtype))
            for key, value in model.state_dict().items()}


def _functional(function, state, model):
    shapes = {key: (tuple(value.shape), value.dtype) for key, value in state.items()}
    return StateDictModule(function, shapes, {name for name, _ in model.named_parameters()})


def _port(name, model, state, img_size, dense):
    num_classes = state["head.weight"].shape[0] if "head.weight" in state else state["head.fc.weight"].shape[0]
    if name in _NAT:
        config, pattern = _NAT[name]
        dilations = dinat_dilations(config["depths"], pattern) if pattern else None
        port = dinat.NAT(config["embed_dim"], config["mlp_ratio"], config["depths"], config["num_heads"],
                         config["kernel_size"], dilations, num_classes)
        return dinat.use_dense_attention(port, dense)
    if name in _CSWIN:
        config = _CSWIN[name]
        return cswin.CSWin(img_size, num_classes, config["embed_dim"], config["depth"], config["split"],
                           config["heads"])
    if name in _DUALVIT:
        config = _DUALVIT[name]
        return dualvit.DualViT(num_classes, config["stem_hidden"], config["dims"], config["heads"], config["ratios"],
                               config["depths"], tokens=config["tokens"], pool=config["pool"])
    if name in _SMT_SA_HEADS:
        heads = _SMT_SA_HEADS[name]
        return _functional(lambda x, sd, training: smt.model(sd, x, heads, training), state, model)
    if name.startswith("coatnet"):
        depths, block_types = model.cfg.depths, model.cfg.block_types
        return _functional(lambda x, sd, training: coatnet_port.coatnet(x, sd, depths, block_types, training),
                           state, model)
    raise ValueError(f"torch_model: no PyTorch port of {name!r}")


def _port_keys(name, port, state):
    """refvit's ``state_dict`` renamed to the port's keys (DualViT's port nests its semantic-token parts)."""
    if name not in _DUALVIT:
        return state
    return {key: state[key.replace(_DUALVIT_NESTED, "")] for key in port.state_dict()}


def torch_model(name, model, img_size, dense=True):
    """The PyTorch port of refvit model ``model`` (registered as ``name``), in its dtype, with its weights."""
    dtype = next(iter(model.parameters())).data.dtype
    state = _state(model, dtype)
    port = _port(name, model, state, img_size, dense).to(torch.float64 if dtype == np.float64 else torch.float32)
    port.load_state_dict(_port_keys(name, port, state))
    return port


def official_names(port):
    """``{port parameter name: refvit parameter name}`` for every trainable parameter of ``port``."""
    rename = getattr(port, "official_name", lambda key: key.replace(_DUALVIT_NESTED, ""))
    return {key: rename(key) for key, _ in port.named_parameters()}


def nchw(images):
    """Channels-last NumPy images ``(B, H, W, 3)`` -> a contiguous NCHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2))))
