"""fit: learning, exact resume, atomic checkpoints, non-finite losses, the run's files."""
import json
import os

import numpy as np
import pytest

from refvit import functional as F
from refvit import nn
from refvit.backend import use_backend
from refvit.data import Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip, make_shapes
from refvit.errors import UserError
from refvit.optim import AdamW, CosineWarmupSchedule, param_groups_weight_decay
from refvit.train import NonFiniteLossError, evaluate, fit, load_checkpoint, read_log, save_checkpoint
from refvit.train import checkpoint as checkpoint_module
from tests.train.tiny_model import TinyNet, parameters_of

EPOCHS = 3


class StoppingLoader(DataLoader):
    """A DataLoader that raises KeyboardInterrupt at its ``stop_at``-th batch (counted over epochs)."""

    stop_at = None
    served = 0

    def __iter__(self):
        for batch in super().__iter__():
            self.served += 1
            if self.served == self.stop_at:
                raise KeyboardInterrupt
            yield batch


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(40, size=16, seed=0), make_shapes(12, size=16, seed=1)


def make_run(shapes, init_seed=0, stop_at=None):
    (train_x, train_y), (test_x, test_y) = shapes
    nn.random.seed(init_seed)
    model = TinyNet()
    normalize = Normalize([0.3] * 3, [0.25] * 3)
    train = StoppingLoader(train_x, train_y, 8, shuffle=True, seed=5,
                           augment=Compose([RandomCrop(2, seed=6), RandomHorizontalFlip(seed=7), normalize]))
    train.stop_at = stop_at
    test = DataLoader(test_x, test_y, 8, augment=normalize)
    optimizer = AdamW(param_groups_weight_decay(model, 0.05), lr=1e-2)
    schedule = CosineWarmupSchedule(optimizer, total_steps=EPOCHS * len(train), warmup_steps=len(train))
    return model, train, test, optimizer, schedule


def run_fit(run, out_dir, **kwargs):
    model, train, test, optimizer, schedule = run
    return fit(model, train, test, optimizer, schedule, epochs=EPOCHS, out_dir=str(out_dir), backend="numpy",
               progress=False, model_name="tiny", **kwargs)


def test_tiny_model_overfits_a_batch_of_8():
    nn.random.seed(0)
    model = TinyNet(num_classes=4, channels=16, dropout=0.0)
    images, labels = make_shapes(8, size=16, seed=3)
    loader = DataLoader((images - 0.3) / 0.25, labels % 4, 8)
    optimizer = AdamW(model.parameters(), lr=5e-2, weight_decay=0.0)
    losses = []
    with use_backend("numpy"):
        for _ in range(100):
            for x, y in loader:
                model.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    assert losses[-1] < 0.02 * losses[0]
    assert evaluate(model, loader, backend="numpy")[1] == 1.0


def test_resume_after_an_interruption_ends_with_identical_weights(shapes, tmp_path):
    run_fit(make_run(shapes), tmp_path / "straight")
    expected = parameters_of(_model_from(tmp_path / "straight"))

    batches = len(make_run(shapes)[1])
    with pytest.raises(KeyboardInterrupt):  # stopped in the middle of epoch 2
        run_fit(make_run(shapes, stop_at=batches + 2), tmp_path / "stopped")
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.npz")["epoch"] == 1
    resumed = make_run(shapes, init_seed=99)  # a fresh process: other initial weights, fresh streams
    metrics = run_fit(resumed, tmp_path / "stopped", resume=True)
    got = parameters_of(resumed[0])
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS and metrics["test_accuracy"] == straight["test_accuracy"]
    assert [row["train_loss"] for row in read_log(tmp_path / "stopped" / "log.csv")] == \
        [row["train_loss"] for row in read_log(tmp_path / "straight" / "log.csv")]


def _model_from(out_dir):
    model = TinyNet()
    model.load_state_dict(load_checkpoint(os.path.join(out_dir, "checkpoint.npz"))["model"])
    return model


def test_run_files_and_their_contents(shapes, tmp_path):
    metrics = run_fit(make_run(shapes), tmp_path, info={"dataset": "shapes", "mean": np.zeros(3)})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("model", "epochs", "train_loss", "train_accuracy", "test_accuracy", "images_per_second",
                "wall_seconds", "backend", "parameters", "history"):
        assert key in saved, key
    assert saved["model"] == "tiny" and saved["backend"] == "numpy" and saved["epochs"] == EPOCHS
    assert saved["dataset"] == "shapes" and saved["mean"] == [0.0, 0.0, 0.0]
    assert saved["test_accuracy"] == metrics["test_accuracy"] and 0.0 <= saved["test_accuracy"] <= 1.0
    rows = read_log(tmp_path / "log.csv")
    assert [row["epoch"] for row in rows] == [1, 2, 3] and rows[0]["lr"] < rows[1]["lr"]  # warm-up epoch
    state = load_checkpoint(tmp_path / "checkpoint.npz")
    assert state["epoch"] == EPOCHS and state["run"]["model"] == "tiny"
    assert set(state["random"]) == {"nn", "train_loader"} and "augment" in state["random"]["train_loader"]
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_existing_checkpoint_needs_resume_and_resume_needs_a_checkpoint(shapes, tmp_path):
    with pytest.raises(UserError, match="fit: 'resume' needs a checkpoint"):
        run_fit(make_run(shapes), tmp_path / "empty", resume=True)
    run_fit(make_run(shapes), tmp_path, limit_batches=1)
    with pytest.raises(UserError, match="checkpoint.npz exists; resume it"):
        run_fit(make_run(shapes), tmp_path, limit_batches=1)
    with pytest.raises(UserError, match="fit: 'resume' needs the settings the checkpoint"):
        run_fit(make_run(shapes), tmp_path, resume=True)  # made with limit_batches=1: other batches per epoch


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(shapes, tmp_path):
    run = make_run(shapes)
    batches = len(run[1])
    run[0].poison_after = batches + 2  # epoch 1 trains and is evaluated (2 test batches), then nan
    with pytest.raises(NonFiniteLossError, match=r"training diverged in epoch 2, batch 1: the training loss is "
                                                 r"nan; the checkpoint of epoch 1 is kept in"):
        run_fit(run, tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.npz")
    assert state["epoch"] == 1 and all(np.isfinite(v).all() for v in state["model"].values())


def test_nonfinite_loss_before_any_checkpoint(shapes, tmp_path):
    run = make_run(shapes)
    run[0].poison_after = 0
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet"):
        run_fit(run, tmp_path)


def test_interrupted_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"epoch": 1, "weights": np.arange(4.0)})

    def write_half_then_fail(handle, arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "_write_npz", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "weights": np.zeros(4)})
    state = load_checkpoint(path)
    assert state["epoch"] == 1
    np.testing.assert_array_equal(state["weights"], np.arange(4.0))
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def break_second_checkpoint_write(monkeypatch, error, partial):
    """The second checkpoint write of the test writes ``partial`` bytes, then raises ``error``."""
    original = checkpoint_module._write_npz
    writes = []

    def break_second(handle, arrays):
        writes.append(1)
        if len(writes) == 2:
            handle.write(partial)
            raise error
        original(handle, arrays)

    monkeypatch.setattr(checkpoint_module, "_write_npz", break_second)


def test_interrupted_write_during_fit_then_resume(shapes, tmp_path, monkeypatch):
    break_second_checkpoint_write(monkeypatch, KeyboardInterrupt, b"partial")
    with pytest.raises(KeyboardInterrupt):
        run_fit(make_run(shapes), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.npz")["epoch"] == 1
    monkeypatch.undo()  # writes work again
    assert run_fit(make_run(shapes), tmp_path, resume=True)["epochs"] == EPOCHS


def test_checkpoint_round_trips_nested_values(tmp_path):
    state = {"a": {3: np.ones((2, 2), np.float32), "t": (1, 2.5, "x")}, "big": 2**100, "none": None,
             "list": [np.int64(4), {"k": np.arange(3)}]}
    save_checkpoint(tmp_path / "c.npz", state)
    back = load_checkpoint(tmp_path / "c.npz")
    assert back["big"] == 2**100 and back["none"] is None and back["a"]["t"] == (1, 2.5, "x")
    assert back["a"][3].dtype == np.float32 and back["list"][0] == 4
    np.testing.assert_array_equal(back["list"][1]["k"], np.arange(3))


def test_load_checkpoint_errors_are_user_errors_naming_the_file(tmp_path):
    with pytest.raises(UserError, match=r"missing\.npz"):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))
    with pytest.raises(UserError, match=r"plain\.npz .*not a refvit checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"junk\.npz"):
        load_checkpoint(tmp_path / "junk.npz")
