"""Fine-tuning: ``refvit train --init-from`` a checkpoint or a weights file, a new head, ``--freeze`` and
``--backbone-lr-scale``."""
import numpy as np
import pytest

from refvit import cli
from refvit.models import _registry, list_models, save_weights
from refvit.optim import AdamW, CosineWarmupSchedule, param_groups_finetune
from refvit.train import load_checkpoint
from tests.train.tiny_model import tiny_net

TINY = "tinynet_test"


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setitem(_registry._MODELS, TINY, _registry.ModelInfo(TINY, "testfamily", tiny_net, 16, "test net"))
    list_models()


def _three_class_folder(path):
    rng = np.random.default_rng(1)
    path.mkdir()
    np.savez(path / "a.npz", images=rng.random((40, 16, 16, 3)).astype(np.float32), labels=np.arange(40) % 3)
    return path


def _train(argv):
    assert cli.main(["train", "--epochs", "1", "--batch-size", "8", "--limit-batches", "2", "--backend", "numpy",
                     "--quiet"] + argv) == 0


@pytest.fixture
def base_run(tiny_registered, tmp_path):
    out = tmp_path / "base"
    _train(["--model", TINY, "--dataset", "shapes", "--out", str(out)])
    return out / "checkpoint.npz"


def test_new_head_from_a_checkpoint_trains_one_epoch(base_run, tmp_path, capsys):
    data = _three_class_folder(tmp_path / "three")
    out = tmp_path / "tuned"
    capsys.readouterr()
    _train(["--init-from", str(base_run), "--dataset", str(data), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "a new head for 3 classes (the checkpoint's has 6); the rest of the weights loaded" in printed
    base, tuned = load_checkpoint(base_run), load_checkpoint(out / "checkpoint.npz")
    assert tuned["epoch"] == 1 and tuned["info"]["model_kwargs"]["num_classes"] == 3
    assert tuned["model"]["head.weight"].shape == (3, 8)
    assert not np.array_equal(tuned["model"]["stem.weight"], base["model"]["stem.weight"])  # trained from there


def test_new_head_from_a_weights_file_and_another_model_refused(base_run, tmp_path, capsys):
    from refvit.train.commands.common import model_from_checkpoint

    model = model_from_checkpoint("test", str(base_run), load_checkpoint(base_run))
    weights = tmp_path / "weights.npz"
    save_weights(model, str(weights))
    data = _three_class_folder(tmp_path / "three")
    capsys.readouterr()
    # one step at lr ~0 (a tiny rate): the backbone is the file's to float precision, the head is new
    _train(["--init-from", str(weights), "--model", TINY, "--dataset", str(data), "--out", str(tmp_path / "t"),
            "--lr", "1e-12", "--limit-batches", "1"])
    assert "a new head for 3 classes; the rest of the weights loaded" in capsys.readouterr().out
    tuned = load_checkpoint(tmp_path / "t" / "checkpoint.npz")["model"]
    np.testing.assert_allclose(tuned["stem.weight"], model.state_dict()["stem.weight"], atol=1e-9)
    assert tuned["head.weight"].shape == (3, 8)
    assert cli.main(["train", "--init-from", str(weights), "--model", "nat_nano", "--dataset", "shapes", "--epochs",
                     "1", "--out", str(tmp_path / "other"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"refvit train: error: --init-from {weights}: ") and "nat_nano" in err[0]


def test_freeze_leaves_every_non_head_parameter_bit_identical(base_run, tmp_path):
    out = tmp_path / "frozen"
    _train(["--init-from", str(base_run), "--dataset", "shapes", "--out", str(out), "--freeze", "--lr", "0.05"])
    base, frozen = load_checkpoint(base_run)["model"], load_checkpoint(out / "checkpoint.npz")
    for name, value in frozen["model"].items():
        if name.startswith("head."):
            assert not np.array_equal(value, base[name]), name
        else:
            assert value.tobytes() == base[name].tobytes(), name
    optimizer_groups = frozen["optimizer"]["param_groups"]
    assert sum(len(group["params"]) for group in optimizer_groups) == 2  # head.weight and head.bias only
    assert frozen["info"]["settings"]["freeze"] is True
    # --resume keeps the run's settings: a backbone rate the frozen run was not started with is refused
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--backbone-lr-scale", "0.5",
                     "--quiet"]) == 2


def test_backbone_lr_scale_gives_the_groups_their_rates(base_run, tmp_path):
    out = tmp_path / "scaled"
    _train(["--init-from", str(base_run), "--dataset", "shapes", "--out", str(out), "--backbone-lr-scale", "0.1",
            "--lr", "0.01", "--warmup-epochs", "0"])
    state = load_checkpoint(out / "checkpoint.npz")
    groups = state["optimizer"]["param_groups"]
    assert len(groups) == 4  # head decay, head no-decay, backbone decay, backbone no-decay
    # the schedule's base rates (each group's rate is base * the same factor at every step; the unit test below)
    assert state["schedule"]["base_lrs"] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0, 0.05, 0.0]
    assert state["info"]["settings"]["backbone_lr_scale"] == 0.1


def test_param_groups_finetune_schedule_keeps_the_ratio():
    model = tiny_net()
    groups = param_groups_finetune(model, 0.05, 1e-3, ("head",), backbone_lr_scale=0.25)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [[names[id(p)] for p in g["params"]] for g in groups] == [["head.weight"], ["head.bias"],
                                                                     ["stem.weight"], ["stem.bias"]]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0, 0.05, 0.0]
    optimizer = AdamW(groups, lr=1e-3)
    schedule = CosineWarmupSchedule(optimizer, total_steps=10, warmup_steps=3)
    for _ in range(6):
        schedule.step()
        rates = schedule.get_last_lr()
        assert rates[2] == pytest.approx(0.25 * rates[0]) and rates[3] == pytest.approx(0.25 * rates[1])
    frozen = param_groups_finetune(model, 0.05, 1e-3, ("head.",), freeze_backbone=True)
    assert sum(len(g["params"]) for g in frozen) == 2
    with pytest.raises(ValueError, match="no trainable parameter is under"):
        param_groups_finetune(model, 0.05, 1e-3, ("classifier",))


def test_freeze_with_a_backbone_rate_is_refused(tiny_registered, tmp_path, capsys):
    assert cli.main(["train", "--model", TINY, "--dataset", "shapes", "--freeze", "--backbone-lr-scale", "0.1",
                     "--out", str(tmp_path / "x")]) == 2
    assert "'--backbone-lr-scale' has no effect with --freeze" in capsys.readouterr().err
