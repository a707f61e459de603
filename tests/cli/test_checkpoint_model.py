"""``model_from_checkpoint``: hand-made checkpoints that name a missing model, arguments the model
refuses, or weights that do not fit it, give one UserError naming the file."""
import numpy as np
import pytest

from refvit.errors import UserError
from refvit.models import _registry, list_models
from refvit.train.checkpoint import load_training_checkpoint, save_checkpoint
from refvit.train.commands.common import model_from_checkpoint, weights_mismatch
from tests.train.tiny_model import parameters_of, tiny_net

TINY = "tinynet_ckpt"


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setitem(_registry._MODELS, TINY, _registry.ModelInfo(TINY, "testfamily", tiny_net, 16, "test net"))
    list_models()


def _state(**changes):
    model = tiny_net(num_classes=3)
    state = {"epoch": 1, "run": {"model": TINY},
             "info": {"model_kwargs": {"num_classes": 3, "img_size": 16}, "mean": [0.0] * 3, "std": [1.0] * 3,
                      "dataset": "x"},
             "model": parameters_of(model)}
    for key, value in changes.items():
        if key == "model_kwargs":
            state["info"]["model_kwargs"] = value
        else:
            state[key] = value
    return state


def _load(tmp_path, state):
    path = tmp_path / "c.npz"
    save_checkpoint(path, state)
    return model_from_checkpoint("eval", str(path), load_training_checkpoint(path))


def test_fitting_checkpoint_loads_its_weights(tmp_path, tiny_registered):
    state = _state()
    model = _load(tmp_path, state)
    for key, value in parameters_of(model).items():
        np.testing.assert_array_equal(value, state["model"][key])


@pytest.mark.parametrize("changes,match", [
    ({"run": {"model": "no_such_model"}}, "was made with the model 'no_such_model', which is not registered"),
    ({"model_kwargs": {"num_classes": -3, "img_size": 16}}, f"holds arguments {TINY} refuses"),
    ({"model_kwargs": {"num_classes": 3, "img_size": 16, "colour": 1}}, f"holds arguments {TINY} refuses"),
    ({"model_kwargs": [3, 16]}, "its model arguments are \\[3, 16\\], not a mapping"),
    ({"model": {"x": np.ones(2)}}, "does not fit the model .*: its weights have 4 missing \\(stem.weight, "
                                   "stem.bias, head.weight, ...\\), 1 unexpected \\(x\\)"),
])
def test_checkpoint_that_does_not_fit(tmp_path, tiny_registered, changes, match):
    with pytest.raises(UserError, match=match) as info:
        _load(tmp_path, _state(**changes))
    assert str(info.value).startswith("eval: checkpoint ") and "c.npz" in str(info.value)


def test_weights_of_another_shape(tiny_registered):
    model = tiny_net(num_classes=3)
    weights = parameters_of(model)
    assert weights_mismatch(model, weights) is None
    weights["head.weight"] = np.zeros((5, 8))
    assert weights_mismatch(model, weights) == "1 of another shape (head.weight (5, 8) for (3, 8))"
