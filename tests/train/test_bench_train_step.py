"""The bench's training-step cases run exactly one training step of the named model."""
import numpy as np
import pytest

from refvit import functional as F
from refvit.bench import _train_step, collect_cases
from refvit.models import create_model, list_models
from refvit.nn import random
from refvit.optim import AdamW, param_groups_weight_decay
from refvit.testing import assert_close


def test_every_nano_model_has_a_training_step_case():
    names = {c.name.split()[2] for c in collect_cases() if c.name.startswith("train step")}
    assert names == {m for m in list_models() if m.endswith("_nano")}


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_forward_and_backward_are_one_training_step(rng, backend, monkeypatch):
    monkeypatch.setattr(_train_step, "_TRAINERS", {})
    images = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    labels = np.array([3, 7])
    loss, cache = _train_step.forward(images, labels, "nat_nano", backend=backend)
    assert _train_step.backward(np.float32(1.0), cache) == (None,)
    trained, _ = _train_step.trainer_for("nat_nano", np.float32)

    random.seed(0)
    model = create_model("nat_nano", dtype=np.float32).train()
    optimizer = AdamW(param_groups_weight_decay(model, 0.05), lr=1e-4)
    expected_loss = F.cross_entropy(model(images), labels)
    expected_loss.backward()
    optimizer.step()
    assert_close(loss, expected_loss.data, rtol=1e-5, atol=1e-6)
    # The same gradients went into one AdamW step (its first moment is 0.1 * grad) ...
    moved = 0.0
    for (name, parameter), reference in zip(trained.named_parameters(), model.parameters()):
        state = cache.optimizer.state[id(parameter)] if id(parameter) in cache.optimizer.state else None
        assert state is not None and state["step"] == 1, name
        expected_moment = optimizer.state[id(reference)]["exp_avg"]
        assert_close(state["exp_avg"], expected_moment, rtol=1e-3, atol=1e-4 * np.max(np.abs(expected_moment)),
                     name=name)  # float32 gradients: small entries carry cancellation error
        moved = max(moved, float(np.max(np.abs(parameter.data - reference.data))))
    # ... and both moved their weights alike: a first Adam step moves each weight by about lr.
    assert moved < 2e-4
