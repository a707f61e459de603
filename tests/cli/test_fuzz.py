"""``refvit train`` and ``refvit eval`` under random bad flags, files and folders.

Each case has exactly one thing wrong. Every one must end with exit status 2, exactly one
line on stderr (``refvit COMMAND: error: ...``), no traceback, and every file under the
test's folder (data sets, an earlier run, checkpoints) byte for byte as it was, with no
file or folder added. The cases are drawn with a fixed seed, run in-process through
``refvit.cli.main``, and each stops before any training (a few milliseconds to a second).
"""
import hashlib
import os
import random

import numpy as np
import pytest

from refvit import cli
from refvit.models import _registry, list_models
from tests.train.tiny_model import tiny_net

TINY = "tinynet_fuzz"
SEED = 20261204
CASES = 40

# Values that no flag of train or eval accepts, by kind. argparse refuses the wrong types
# (int flags) itself; the commands refuse the rest.
BAD_INTEGERS = ["-1", "0", "-99999999999999999999", "nan", "inf", "1.5", "x", "", "1e3", "0x10"]
BAD_REALS = ["-1", "-0.5", "nan", "-nan", "inf", "-inf", "1e999", "x", "", "--"]
BAD_BACKENDS = ["", "gpu", "CPU", "tpu", " numpy", "nan", "-1"]
BAD_MODELS = ["", "gpu", "DINAT_NANO", "nan", "-1", "dinat nano", "x" * 300]

TRAIN_INTEGER_FLAGS = ["--epochs", "--batch-size", "--limit-batches"]
TRAIN_REAL_FLAGS = ["--lr", "--weight-decay", "--warmup-epochs", "--label-smoothing", "--clip-grad"]
EVAL_INTEGER_FLAGS = ["--batch-size", "--limit-batches"]


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setitem(_registry._MODELS, TINY, _registry.ModelInfo(TINY, "testfamily", tiny_net, 16, "fuzz net"))
    list_models()


def _snapshot(root):
    """``{relative path: sha256 or 'dir'}`` of everything under ``root``."""
    listing = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            listing[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                listing[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return listing


@pytest.fixture
def world(tmp_path, tiny_registered, capsys):
    """A data set folder, a finished one-epoch run, and damaged copies of its checkpoint."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "part.npz", images=rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8),
             labels=np.arange(10) % 2)
    run = tmp_path / "run"
    assert cli.main(_train_argv(data, run)) == 0, capsys.readouterr().err
    good = (run / "checkpoint.npz").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.npz").write_bytes(good[:len(good) // 3])
    (bad / "empty.npz").write_bytes(b"")
    (bad / "garbage.npz").write_bytes(bytes(rng.integers(0, 256, 512, dtype=np.uint8)))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    (bad / "flipped.npz").write_bytes(bytes(flipped))
    np.savez(bad / "plain.npz", x=np.zeros(3))
    (bad / "a_file").write_text("not a folder\n")
    (bad / "empty_folder").mkdir()
    (tmp_path / "empty_out").mkdir()
    capsys.readouterr()
    return {"root": tmp_path, "data": data, "run": run, "bad": bad}


def _with_flags(argv, flags):
    """``argv`` with each flag of ``flags`` (``batch_size`` -> ``--batch-size``) set: replaced if present, else added."""
    argv = list(argv)
    for option, value in flags.items():
        option = "--" + option.replace("_", "-")
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


def _train_argv(data, out, **flags):
    return _with_flags(["train", "--model", TINY, "--dataset", str(data), "--epochs", "1", "--limit-batches", "1",
                        "--batch-size", "4", "--out", str(out), "--quiet"], flags)


def _eval_argv(checkpoint, **flags):
    return _with_flags(["eval", "--checkpoint", str(checkpoint), "--limit-batches", "1", "--batch-size", "4"], flags)


def _draw_case(rng, world):
    """One ``(label, argv)`` with exactly one bad flag, file or folder."""
    data, run, bad = world["data"], world["run"], world["bad"]
    fresh = world["root"] / "fresh_out"  # a missing --out: an error must not leave it created
    taken = world["root"] / "empty_out"  # an existing, empty --out: the lock taken and given back leaves it empty
    kind = rng.choice(["train_int", "train_real", "train_name", "train_file", "train_file", "eval_int", "eval_name",
                       "eval_file", "eval_file"])
    if kind == "train_int":
        option, value = rng.choice(TRAIN_INTEGER_FLAGS), rng.choice(BAD_INTEGERS)
        return f"train {option}={value!r}", _train_argv(data, fresh, **{option[2:]: value})
    if kind == "train_real":
        option, value = rng.choice(TRAIN_REAL_FLAGS), rng.choice(BAD_REALS)
        return f"train {option}={value!r}", _train_argv(data, fresh, **{option[2:]: value})
    if kind == "train_name":
        option = rng.choice(["--backend", "--model"])
        value = rng.choice(BAD_BACKENDS if option == "--backend" else BAD_MODELS)
        return f"train {option}={value!r}", _train_argv(data, fresh, **{option[2:]: value})
    if kind == "train_file":
        choice = rng.choice(["dataset_file", "dataset_missing", "dataset_empty", "dataset_garbage", "out_is_file",
                             "out_has_run", "resume_damaged", "resume_missing"])
        if choice == "dataset_file":
            return "train --dataset a file", _train_argv(bad / "a_file", fresh)
        if choice == "dataset_missing":
            return "train --dataset missing", _train_argv(bad / "no_such_folder", fresh)
        if choice == "dataset_empty":
            return "train --dataset empty folder", _train_argv(bad / "empty_folder", taken)
        if choice == "dataset_garbage":
            return "train --dataset a folder of damaged .npz files", _train_argv(bad, taken)
        if choice == "out_is_file":
            return "train --out a file", _train_argv(data, bad / "a_file")
        if choice == "out_has_run":
            return "train --out a finished run, no --resume", _train_argv(data, run)
        if choice == "resume_damaged":
            name = rng.choice(["truncated.npz", "empty.npz", "garbage.npz", "flipped.npz", "plain.npz"])
            folder = world["root"] / f"resume_{name[:-4]}"
            return f"train --resume over {name}", _train_argv(data, folder) + ["--resume"]
        out = rng.choice([fresh, taken])
        return f"train --resume in {out.name} without a checkpoint", _train_argv(data, out) + ["--resume"]
    if kind == "eval_int":
        option, value = rng.choice(EVAL_INTEGER_FLAGS), rng.choice(BAD_INTEGERS)
        return f"eval {option}={value!r}", _eval_argv(run / "checkpoint.npz", **{option[2:]: value})
    if kind == "eval_name":
        return "eval --backend", _eval_argv(run / "checkpoint.npz", backend=rng.choice(BAD_BACKENDS))
    choice = rng.choice(["truncated.npz", "empty.npz", "garbage.npz", "flipped.npz", "plain.npz", "missing.npz",
                         "a_file", "empty_folder", "dataset_file", "dataset_missing"])
    if choice == "dataset_file":
        return "eval --dataset a file", _eval_argv(run / "checkpoint.npz", dataset=str(bad / "a_file"))
    if choice == "dataset_missing":
        return "eval --dataset missing", _eval_argv(run / "checkpoint.npz", dataset=str(bad / "nowhere"))
    return f"eval --checkpoint {choice}", _eval_argv(bad / choice)


def _prepare_resume_folders(world):
    for name in ["truncated.npz", "empty.npz", "garbage.npz", "flipped.npz", "plain.npz"]:
        folder = world["root"] / f"resume_{name[:-4]}"
        folder.mkdir()
        (folder / "checkpoint.npz").write_bytes((world["bad"] / name).read_bytes())


def test_bad_flags_files_and_folders_give_one_line_and_change_nothing(world, capsys):
    _prepare_resume_folders(world)
    rng = random.Random(SEED)
    failures = []
    for _ in range(CASES):
        label, argv = _draw_case(rng, world)
        before = _snapshot(world["root"])
        status = cli.main(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        command = argv[0]
        problems = []
        if status != 2:
            problems.append(f"exit status {status}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if "Traceback" in captured.err:
            problems.append("a traceback")
        if lines and not lines[0].startswith(f"refvit {command}: error: "):
            problems.append("not 'refvit COMMAND: error: ...'")
        if _snapshot(world["root"]) != before:
            problems.append("files changed")
        if problems:
            failures.append(f"{label}: {', '.join(problems)}: {captured.err.strip()[-300:]}")
    assert not failures, "\n".join(failures)
