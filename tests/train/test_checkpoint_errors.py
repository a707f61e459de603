"""Damaged, hand-made and unwritable checkpoints give a UserError naming the file, never a traceback."""
import errno
import json
import os
import zipfile

import numpy as np
import pytest

from refvit.errors import UserError
from refvit.train import checkpoint
from refvit.train.checkpoint import (atomic_write, load_checkpoint, load_training_checkpoint, remove_stale_temp_files,
                                     save_checkpoint, stale_temp_files)


def _state():
    return {"epoch": 1, "run": {"model": "m"}, "info": {"model_kwargs": {}, "mean": [0.0], "std": [1.0],
                                                         "dataset": "digits"},
            "model": {"w": np.arange(200.0), "b": np.ones(3)}, "optimizer": {}, "schedule": None,
            "random": {"nn": 1, "train_loader": {}}, "history": []}


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, _state())
    return path


def _damaged(path, match):
    with pytest.raises(UserError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.99])
def test_truncated_checkpoint(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * keep)])
    _damaged(saved, "is damaged" if keep else "is damaged \\(the file is empty\\)")


def test_bit_flip_names_the_array(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("array0.npy")
    data[info.header_offset + 30 + len(info.filename) + 150] ^= 0x40  # inside the array's data
    saved.write_bytes(bytes(data))
    _damaged(saved, "damaged \\(bad CRC-32 in 'array0'\\)")


def test_garbage_and_missing_and_folder(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"definitely not a zip archive")
    _damaged(tmp_path / "junk.npz", "is not a readable checkpoint: it is not an .npz archive")
    _damaged(tmp_path / "missing.npz", "does not exist")
    _damaged(tmp_path, "is a folder")


def _rewrite(path, meta=None, drop=()):
    """A hand-made archive: ``path``'s arrays without ``drop``, and ``meta`` as its metadata."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files if name not in drop}
    if meta is not None:
        arrays["__meta__"] = np.frombuffer(meta, dtype=np.uint8)
    np.savez(path, **arrays)


def test_missing_array_named(saved):
    _rewrite(saved, drop=("array0",))
    _damaged(saved, "the array 'array0' its metadata names is missing")


@pytest.mark.parametrize("meta,match", [(b"[1, 2]", "metadata is a list"), (b"{not json", "not valid JSON"),
                                        (b"\xff\xfe", "not valid JSON"), (b'"text"', "metadata is a str")])
def test_bad_metadata(saved, meta, match):
    _rewrite(saved, meta=meta)
    _damaged(saved, match)


def test_wrong_format(saved):
    _rewrite(saved, meta=json.dumps({"format": "other-1"}).encode())
    _damaged(saved, "has format 'other-1'")


@pytest.mark.parametrize("drop,resume", [("run", False), ("info", False), ("model", True), ("history", True),
                                         ("optimizer", True), ("epoch", False)])
def test_training_checkpoint_missing_entry(tmp_path, drop, resume):
    state = _state()
    del state[drop]
    save_checkpoint(tmp_path / "c.npz", state)
    with pytest.raises(UserError, match=f"c.npz was not written by refvit train: it has no '{drop}"):
        load_training_checkpoint(tmp_path / "c.npz", resume=resume)


def test_training_checkpoint_bad_weights_and_epoch(tmp_path):
    save_checkpoint(tmp_path / "c.npz", {**_state(), "model": [1, 2]})
    with pytest.raises(UserError, match="'model' is not a mapping of parameter names to arrays"):
        load_training_checkpoint(tmp_path / "c.npz")
    save_checkpoint(tmp_path / "c.npz", {**_state(), "epoch": "one"})
    with pytest.raises(UserError, match="'epoch' is 'one'"):
        load_training_checkpoint(tmp_path / "c.npz")
    save_checkpoint(tmp_path / "c.npz", _state())
    assert load_training_checkpoint(tmp_path / "c.npz", resume=True)["epoch"] == 1


@pytest.mark.parametrize("number,reason", [(errno.ENOSPC, "the disk is full"),
                                           (errno.EROFS, "the file system is read-only"),
                                           (errno.EDQUOT, "the disk quota is exceeded")])
def test_failed_write_is_a_user_error_and_leaves_nothing(saved, number, reason):
    before = saved.read_bytes()

    def write(handle):
        handle.write(b"partial")
        raise OSError(number, os.strerror(number))

    with pytest.raises(UserError, match=f"cannot write .*checkpoint.npz: {reason}; checkpoint.npz was left as it was"):
        atomic_write(saved, write)
    assert saved.read_bytes() == before
    assert sorted(os.listdir(saved.parent)) == ["checkpoint.npz"]


def test_write_into_a_missing_folder(tmp_path):
    with pytest.raises(UserError, match="cannot write .*c.npz: the folder .*nowhere does not exist"):
        save_checkpoint(tmp_path / "nowhere" / "c.npz", {"a": 1})


def test_write_into_a_folder_without_permission(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / ".c.npz.abcdefgh.tmp"))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", denied)
    with pytest.raises(UserError, match=f"cannot write .*c.npz: the folder {tmp_path} cannot be accessed"):
        save_checkpoint(tmp_path / "c.npz", {"a": 1})


def test_a_bug_in_the_writer_is_not_a_user_error(saved):
    def write(handle):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        atomic_write(saved, write)
    assert stale_temp_files(saved.parent) == []


def test_stale_temp_files_listed_and_removed(saved):
    folder = saved.parent
    leftovers = [folder / ".checkpoint.npz.a1b2c3d4.tmp", folder / ".metrics.json.zz_9XY01.tmp"]
    for path in leftovers:
        path.write_bytes(b"x" * 10)
    kept = [folder / "notes.tmp", folder / ".checkpoint.npz.tmp", folder / "log.csv"]
    for path in kept:
        path.write_bytes(b"keep")
    (folder / ".dir.abcdefgh.tmp").mkdir()
    assert stale_temp_files(folder) == sorted(map(str, leftovers))
    assert remove_stale_temp_files(folder) == sorted(map(str, leftovers))
    assert stale_temp_files(folder) == [] and all(path.exists() for path in kept)
    assert (folder / ".dir.abcdefgh.tmp").is_dir() and load_checkpoint(saved)["epoch"] == 1
    assert remove_stale_temp_files(folder / "absent") == []


def test_temp_name_pattern_matches_what_atomic_write_makes(tmp_path, monkeypatch):
    seen = []
    real = checkpoint.os.replace

    def spy(source, target):
        seen.append(os.path.basename(source))
        real(source, target)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    save_checkpoint(tmp_path / "checkpoint.npz", {"a": 1})
    assert len(seen) == 1 and checkpoint._TEMP_NAME.match(seen[0])


def test_an_input_output_error_is_not_the_users(saved):
    def write(handle):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with pytest.raises(OSError) as info:
        atomic_write(saved, write)
    assert not isinstance(info.value, UserError) and stale_temp_files(saved.parent) == []
