"""refvit train / eval / models: runs on a minimal setting and one-line errors."""
import json

import numpy as np
import pytest

from refvit import cli
from refvit.models import _registry, list_models
from refvit.train import load_checkpoint
from refvit.train.commands.common import DEFAULT_MODEL_ORDER, default_model_name
from tests.train.tiny_model import tiny_net

TINY = "tinynet_test"


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setitem(_registry._MODELS, TINY, _registry.ModelInfo(TINY, "testfamily", tiny_net, 16, "test net"))
    list_models()  # import the real families first, so they do not register after the patch is undone


def with_option(argv, option, value):
    changed = list(argv)
    changed[changed.index(option) + 1] = value
    return changed


def one_line_error(capsys, argv, start):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(start), err[0]
    return err[0]


def test_train_then_resume_then_eval(tiny_registered, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", TINY, "--dataset", "shapes", "--epochs", "2", "--batch-size", "16",
            "--limit-batches", "2", "--backend", "numpy", "--out", str(out), "--seed", "3"]
    assert cli.main(with_option(argv, "--epochs", "1")) == 0
    captured = capsys.readouterr()
    assert "tinynet_test on shapes: test accuracy" in captured.out
    assert "epoch 1/1: train loss" in captured.err and "2/2 batches" in captured.err
    # a run with other settings cannot resume this one
    line = one_line_error(capsys, argv + ["--resume"], "refvit train: error: --resume: the run in ")
    assert line.endswith("was started with --epochs 1; this command gives --epochs 2. Drop these flags to resume "
                         "the run as it was, or choose another --out for a new run")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == TINY and metrics["epochs"] == 1 and metrics["dataset"] == "shapes"
    assert metrics["model_kwargs"] == {"num_classes": 6, "img_size": 16}

    out2 = tmp_path / "two"
    assert cli.main(with_option(argv, "--out", str(out2))) == 0
    straight = load_checkpoint(out2 / "checkpoint.npz")["model"]
    capsys.readouterr()

    assert cli.main(["eval", "--checkpoint", str(out2 / "checkpoint.npz"), "--backend", "numpy"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("tinynet_test (epoch 2) on shapes: test accuracy") and "(600 images)" in line
    assert np.isfinite(list(straight.values())[0]).all()


def test_default_model_and_readme_command_on_a_minimal_setting(tmp_path, capsys):
    name = default_model_name()
    assert name == DEFAULT_MODEL_ORDER[0] == "dinat_nano"  # the README's default
    out = tmp_path / "readme"
    assert cli.main(["train", "--epochs", "1", "--limit-batches", "1", "--batch-size", "8", "--backend", "numpy",
                     "--out", str(out), "--quiet"]) == 0
    assert f"{name} on digits: test accuracy" in capsys.readouterr().out
    assert (out / "log.csv").read_text().count("\n") == 2


@pytest.mark.parametrize("extra, start", [
    (["--model", "no_such_model"], "refvit train: error: unknown model 'no_such_model'; available:"),
    (["--dataset", "/no/such/folder"], "refvit train: error: --dataset /no/such/folder: it must be an existing folder"),
    (["--dataset", "imagenet"], "refvit train: error: --dataset imagenet: it must be digits or shapes"),
    (["--epochs", "0"], "refvit train: error: '--epochs' must be an integer >= 1; got 0"),
    (["--lr", "-1"], "refvit train: error: '--lr' must be a number > 0.0; got -1.0"),
    (["--backend", "tpu"], "refvit train: error: '--backend' must be one of numpy, cpu, cuda; got 'tpu'"),
    (["--limit-batches", "0"], "refvit train: error: '--limit-batches' must be an integer >= 1; got 0"),
])
def test_train_errors_are_one_line(tiny_registered, tmp_path, capsys, extra, start):
    argv = ["train", "--model", TINY, "--dataset", "shapes", "--out", str(tmp_path / "x")]
    one_line_error(capsys, argv + extra, start)


def test_train_refuses_to_overwrite_and_resume_needs_a_run(tiny_registered, tmp_path, capsys):
    argv = ["train", "--model", TINY, "--dataset", "shapes", "--epochs", "1", "--limit-batches", "1",
            "--backend", "numpy", "--out", str(tmp_path), "--quiet"]
    one_line_error(capsys, argv + ["--resume"], f"refvit train: error: --resume: {tmp_path} holds no run to "
                                                f"continue")
    assert cli.main(argv) == 0
    capsys.readouterr()
    one_line_error(capsys, argv, f"refvit train: error: --out {tmp_path} already holds a run")


def test_eval_errors_are_one_line(tmp_path, capsys):
    one_line_error(capsys, ["eval", "--checkpoint", str(tmp_path / "none.npz")],
                   "refvit eval: error: checkpoint ")
    np.savez(tmp_path / "other.npz", x=np.zeros(1))
    one_line_error(capsys, ["eval", "--checkpoint", str(tmp_path / "other.npz")],
                   "refvit eval: error: ")


def test_models_table_and_unknown_family(tiny_registered, capsys):
    assert cli.main(["models", "--family", "testfamily"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["model", "family", "parameters", "input", "description"]
    count = sum(p.size for p in tiny_net().parameters())
    assert lines[1].split()[:4] == [TINY, "testfamily", f"{count:,}", "16x16"]
    one_line_error(capsys, ["models", "--family", "nope"], "refvit models: error: unknown family 'nope'; families:")


def test_train_and_eval_on_grey_images(tmp_path):
    """A folder of 1-channel images trains a model built with in_chans=1, and eval rebuilds it from the checkpoint."""
    from refvit import cli

    rng = np.random.default_rng(0)
    data = tmp_path / "grey"
    data.mkdir()
    for name in ("a", "b"):
        np.savez(data / f"{name}.npz", images=rng.random((16, 32, 32, 1)).astype(np.float32),
                 labels=rng.integers(0, 3, 16))
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "nat_nano", "--dataset", str(data), "--epochs", "1", "--batch-size", "8",
                     "--limit-batches", "1", "--out", str(out), "--quiet"]) == 0
    assert cli.main(["eval", "--checkpoint", str(out / "checkpoint.npz"), "--limit-batches", "1"]) == 0
