"""Image folders larger than the memory budget: decoded once into memory-mapped ``.npy`` files in a
cache folder, reused while the folder is unchanged, never left half-written, and trained from."""
import os
from types import SimpleNamespace

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")

from refvit.data import image_cache, image_folder, load_dataset, load_image_folder, make_loaders  # noqa: E402
from refvit.data.augment import channel_mean_std  # noqa: E402
from refvit.errors import UserError  # noqa: E402
from tests.data.test_image_folder import make_folder  # noqa: E402


@pytest.fixture
def decodes(monkeypatch):
    """Counts the images decoded (``decodes.count``); ``decodes.fail_at = k`` interrupts the k-th decode."""
    original = image_folder._decode

    class Counter:
        count, fail_at = 0, None

    def counting(*args):
        Counter.count += 1
        if Counter.fail_at is not None and Counter.count >= Counter.fail_at:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(image_folder, "_decode", counting)
    return Counter


def _entries(cache):
    return sorted(os.listdir(cache)) if os.path.isdir(cache) else []


def _assert_same(mapped, in_memory):
    assert mapped[0] == in_memory[0]
    for got, want in zip(mapped[1:], in_memory[1:]):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("modes", [None, lambda c, i: "L"], ids=["rgb", "grey"])
def test_memory_mapped_arrays_equal_the_in_memory_ones(tmp_path, modes):
    root = make_folder(tmp_path / "pics", modes=modes)
    cache = tmp_path / "cache"
    in_memory = load_image_folder(root, size=(12, 10), cache_dir=cache)
    assert _entries(cache) == [] and all(not isinstance(a, np.memmap) for a in in_memory[1:])
    mapped = load_image_folder(root, size=(12, 10), max_bytes=1, cache_dir=cache)
    _assert_same(mapped, in_memory)
    assert isinstance(mapped[1], np.memmap) and isinstance(mapped[3], np.memmap) and mapped[1].mode == "r"
    [key] = _entries(cache)
    assert sorted(os.listdir(cache / key)) == ["meta.json", "test_images.npy", "test_labels.npy", "train_images.npy",
                                               "train_labels.npy"]
    assert os.path.getsize(cache / key / "train_images.npy") >= 15 * 12 * 10 * mapped[1].shape[-1] * 4


def test_second_load_reuses_the_cache_until_a_file_changes(tmp_path, decodes):
    root = make_folder(tmp_path / "pics")
    cache = tmp_path / "cache"
    first = load_image_folder(root, size=8, max_bytes=1, cache_dir=cache)
    assert decodes.count == 18
    second = load_image_folder(root, size=8, max_bytes=1, cache_dir=cache)
    assert decodes.count == 18 and len(_entries(cache)) == 1
    _assert_same(second, first)
    # another size, or a file touched, is another entry
    load_image_folder(root, size=6, max_bytes=1, cache_dir=cache)
    assert decodes.count == 36 and len(_entries(cache)) == 2
    stat = os.stat(root / "circle" / "00.png")
    os.utime(root / "circle" / "00.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_image_folder(root, size=8, max_bytes=1, cache_dir=cache)
    assert decodes.count == 54 and len(_entries(cache)) == 3


def test_an_interrupted_decode_leaves_nothing_reusable(tmp_path, decodes, monkeypatch):
    root = make_folder(tmp_path / "pics")
    cache = tmp_path / "cache"
    reference = load_image_folder(root, size=8)
    decodes.count, decodes.fail_at = 0, 7
    with pytest.raises(KeyboardInterrupt):
        load_image_folder(root, size=8, max_bytes=1, cache_dir=cache)
    assert _entries(cache) == []  # the temporary folder is removed
    # a process killed mid-write cannot clean up: its temporary folder stays, and is not read
    monkeypatch.setattr(image_cache.shutil, "rmtree", lambda *args, **kwargs: None)
    decodes.count = 0
    with pytest.raises(KeyboardInterrupt):
        load_image_folder(root, size=8, max_bytes=1, cache_dir=cache)
    [left] = _entries(cache)
    assert ".tmp-" in left
    decodes.count, decodes.fail_at = 0, None
    _assert_same(load_image_folder(root, size=8, max_bytes=1, cache_dir=cache), reference)
    assert decodes.count == 18 and len(_entries(cache)) == 2


def test_bad_files_through_the_memory_map(tmp_path, decodes):
    root = make_folder(tmp_path / "pics")
    cache = tmp_path / "cache"
    whole = (root / "triangle" / "02.png").read_bytes()
    (root / "triangle" / "02.png").write_bytes(whole[: len(whole) // 2])  # the header reads, decoding fails
    with pytest.raises(UserError, match=r"^load_image_folder: .*triangle.02.png cannot be read as an image \(.*\); "
                                        r"remove it, or skip unreadable files$"):
        load_image_folder(root, size=8, max_bytes=1, cache_dir=cache)
    assert _entries(cache) == []
    with pytest.warns(UserWarning, match=r"skipping .*triangle.02.png: Pillow cannot read it"):
        reference = load_image_folder(root, size=8, skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipping .*triangle.02.png: Pillow cannot read it"):
        mapped = load_image_folder(root, size=8, skip_bad=True, max_bytes=1, cache_dir=cache)
    _assert_same(mapped, reference)
    assert len(mapped[2]) + len(mapped[4]) == 17
    decodes.count = 0
    with pytest.warns(UserWarning, match=r"skipping .*triangle.02.png: Pillow cannot read it"):
        again = load_image_folder(root, size=8, skip_bad=True, max_bytes=1, cache_dir=cache)
    assert decodes.count == 0
    _assert_same(again, reference)


def test_budget_and_cache_folder_from_the_environment(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pics", per_class=3)
    monkeypatch.setenv("REFVIT_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("REFVIT_IMAGE_MEMORY_BYTES", "0")
    data = load_dataset(str(root), size=8)
    assert isinstance(data.train_images, np.memmap)
    assert len(_entries(tmp_path / "env-cache" / "image-folders")) == 1
    monkeypatch.setenv("REFVIT_IMAGE_MEMORY_BYTES", "lots")
    with pytest.raises(UserError, match=r"REFVIT_IMAGE_MEMORY_BYTES must be a whole number of bytes >= 0; got 'lots'"):
        load_dataset(str(root), size=8)
    monkeypatch.delenv("REFVIT_IMAGE_MEMORY_BYTES")
    monkeypatch.delenv("REFVIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache.cache_root() == str(tmp_path / "xdg" / "refvit" / "image-folders")
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert image_cache.memory_budget() == int(physical * image_cache.MEMORY_FRACTION)


def test_too_little_disk_is_one_line_before_decoding(tmp_path, decodes, monkeypatch):
    root = make_folder(tmp_path / "pics")
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(UserError, match=r"^load_image_folder: 18 images of 8x8x3 take 0.00 GiB as float32, more "
                                        r"than the memory budget, and .*cache has only 0.00 GiB free to memory-map "
                                        r"them; set REFVIT_CACHE_DIR to a folder with room, or use a smaller image "
                                        r"size or fewer images$"):
        load_image_folder(root, size=8, max_bytes=1, cache_dir=tmp_path / "cache")
    assert decodes.count == 0 and _entries(tmp_path / "cache") == []


def test_loaders_read_the_same_batches_from_the_memory_map(tmp_path):
    root = make_folder(tmp_path / "pics")
    in_memory = load_dataset(str(root), size=8)
    mapped = load_dataset(str(root), size=8, max_bytes=1, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(mapped.mean, in_memory.mean, rtol=1e-12)
    np.testing.assert_allclose(mapped.std, in_memory.std, rtol=1e-12)
    train_loader = make_loaders(mapped, 4, seed=3)[0]
    assert np.shares_memory(train_loader.images, mapped.train_images)  # the loader keeps the map, not a copy
    for a, b in zip(make_loaders(in_memory, 4, seed=3), make_loaders(mapped, 4, seed=3)):
        for (x, y), (x2, y2) in zip(a, b, strict=True):
            assert type(x2) is np.ndarray
            np.testing.assert_array_equal(x2, x)
            np.testing.assert_array_equal(y2, y)


def test_channel_statistics_read_in_blocks_match_the_whole_array(monkeypatch):
    images = np.random.default_rng(0).random((37, 5, 4, 3), dtype=np.float32)
    values = images.astype(np.float64).reshape(-1, 3)
    monkeypatch.setattr("refvit.data.augment.STATS_BLOCK_VALUES", 100)  # 1 image (60 values) per block
    mean, std = channel_mean_std(images)
    np.testing.assert_allclose(mean, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, values.std(axis=0), rtol=1e-12)


def test_train_one_epoch_from_a_memory_mapped_folder(tmp_path, capsys, monkeypatch):
    from refvit import cli
    from refvit.models import _registry, list_models
    from refvit.train import load_checkpoint
    from tests.train.tiny_model import tiny_net

    monkeypatch.setitem(_registry._MODELS, "tinynet_mapped",
                        _registry.ModelInfo("tinynet_mapped", "testfamily", tiny_net, 16, "test net"))
    list_models()
    root = make_folder(tmp_path / "pics")
    monkeypatch.setenv("REFVIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFVIT_IMAGE_MEMORY_BYTES", "1")
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "tinynet_mapped", "--dataset", str(root), "--epochs", "1", "--batch-size",
                     "4", "--limit-batches", "2", "--backend", "numpy", "--out", str(out), "--quiet"]) == 0
    assert len(_entries(tmp_path / "cache" / "image-folders")) == 1
    state = load_checkpoint(out / "checkpoint.npz")
    assert state["info"]["train_images"] == 15 and state["info"]["test_images"] == 3
    assert cli.main(["eval", "--checkpoint", str(out / "checkpoint.npz"), "--backend", "numpy"]) == 0
    assert "(3 images)" in capsys.readouterr().out
