"""Image folders (.png/.jpg, one subfolder per class): layout, splits, channels, resizing, bad files, memory.

The memory-mapped form of a large folder: tests/data/test_image_folder_memmap.py."""
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from refvit.data import load_dataset, load_image_folder  # noqa: E402
from refvit.data.image_folder import list_image_folder  # noqa: E402
from refvit.errors import UserError  # noqa: E402

CLASSES = ("circle", "square", "triangle")


def _save(path, mode, seed, size=(24, 20)):
    """A ``size = (width, height)`` image in Pillow ``mode`` with seeded random pixels."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return pixels


def make_folder(root, modes=None, per_class=6):
    """3 classes x ``per_class`` images of 20x24 (H x W); by default some grey, one RGBA, the rest RGB."""
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            mode = modes(c, i) if modes else ("L" if i % 3 == 0 else "RGBA" if (c, i) == (1, 1) else "RGB")
            _save(root / name / f"{i:02d}.png", mode, seed=10 * c + i)
    return root


def test_png_folder_loads_with_a_seeded_per_class_split(tmp_path):
    root = make_folder(tmp_path / "pics")
    (root / "notes.txt").write_text("ignored")
    (root / "circle" / "readme.md").write_text("ignored")
    data = load_dataset(str(root), size=32)
    assert data.class_names == list(CLASSES) and data.num_classes == 3 and data.in_chans == 3
    # 6 images per class: 1 (= max(1, 6 // 5)) to the test split, 5 to training
    assert data.train_images.shape == (15, 32, 32, 3) and data.test_images.shape == (3, 32, 32, 3)
    assert data.train_images.dtype == np.float32 and 0.0 <= data.train_images.min() <= data.train_images.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(data.train_labels), [5, 5, 5])
    np.testing.assert_array_equal(data.test_labels, [0, 1, 2])
    np.testing.assert_allclose(data.mean, data.train_images.mean(axis=(0, 1, 2)), rtol=1e-5)
    # the same split on every call; a class's split does not change when another class is added
    _, train, test = list_image_folder(root)
    make_folder(tmp_path / "more", per_class=6)
    _save(tmp_path / "more" / "zzz" / "0.png", "RGB", 99)
    _save(tmp_path / "more" / "zzz" / "1.png", "RGB", 98)
    _, train2, test2 = list_image_folder(tmp_path / "more")
    assert [p.split("pics")[1] for p, _ in test] == [p.split("more")[1] for p, _ in test2[:3]]
    assert len(train2) == len(train) + 1


def test_pixels_are_pillow_bilinear_resized_and_scaled(tmp_path):
    root = make_folder(tmp_path / "pics", modes=lambda c, i: "RGB")
    classes, train_x, train_y, test_x, test_y = load_image_folder(root, size=(16, 12))
    assert train_x.shape == (15, 16, 12, 3)
    _, train, test = list_image_folder(root)
    assert [label for _, label in train] == train_y.tolist() and [label for _, label in test] == test_y.tolist()
    for (file, _), image in zip(train + test, np.concatenate([train_x, test_x])):
        expected = np.asarray(Image.open(file).convert("RGB").resize((12, 16), Image.BILINEAR), np.float32) / 255
        np.testing.assert_array_equal(image, expected)


def test_all_grey_keeps_one_channel_rgba_and_palette_become_rgb(tmp_path):
    grey = make_folder(tmp_path / "grey", modes=lambda c, i: "L")
    data = load_dataset(str(grey), size=8)
    assert data.in_chans == 1 and data.train_images.shape == (15, 8, 8, 1) and data.mean.shape == (1,)
    # one palette image among grey ones makes the whole set RGB; RGBA drops alpha (not blended)
    mixed = make_folder(tmp_path / "mixed", modes=lambda c, i: "L")
    Image.fromarray(np.zeros((20, 24), np.uint8), "L").convert("P").save(mixed / "circle" / "zz_palette.png")
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red
    Image.fromarray(rgba, "RGBA").save(mixed / "square" / "zz_rgba.png")
    classes, train_x, train_y, test_x, test_y = load_image_folder(mixed, size=(20, 24))
    assert train_x.shape[-1] == 3 and test_x.shape[-1] == 3
    everything = np.concatenate([train_x, test_x])
    assert any(np.allclose(img[..., 0], 200 / 255) and np.allclose(img[..., 1:], 0) for img in everything)
    # grey images in an RGB set are repeated over the 3 channels
    grey_like = [img for img in everything if np.array_equal(img[..., 0], img[..., 2])]
    assert len(grey_like) >= 18


def test_train_and_val_folders_are_the_splits(tmp_path):
    root = tmp_path / "split"
    make_folder(root / "train", per_class=3)
    _save(root / "val" / "square" / "a.jpg", "RGB", 1)
    _save(root / "val" / "circle" / "b.JPEG", "RGB", 2)
    (root / "val" / "triangle").mkdir()  # an empty class in val/ is allowed
    data = load_dataset(str(root), size=16)
    assert data.class_names == list(CLASSES) and len(data.train_labels) == 9
    np.testing.assert_array_equal(data.test_labels, [0, 1])
    # test/ works as val/ does; a class val/ does not know of is refused
    (root / "val").rename(root / "test")
    assert len(load_dataset(str(root), size=16).test_labels) == 2
    _save(root / "test" / "hexagon" / "c.png", "RGB", 3)
    with pytest.raises(UserError, match=r"the classes of .*test must be among those of .*train; 'hexagon' is not"):
        load_dataset(str(root), size=16)


def test_empty_and_imageless_folders_are_errors(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=2)
    (root / "empty").mkdir()
    (root / "empty" / "x.txt").write_text("not an image")
    with pytest.raises(UserError, match=r"every class folder must hold .png/.jpg/.jpeg images; .*empty has none"):
        load_image_folder(root)
    nothing = tmp_path / "nothing"
    (nothing / "a").mkdir(parents=True)
    (nothing / "b").mkdir()
    (nothing / "a" / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(UserError, match=r"must hold .png/.jpg/.jpeg images in its class subfolders; .* has none "
                                        r"\(in 2 subfolders\)"):
        load_dataset(str(nothing))
    flat = tmp_path / "flat"
    flat.mkdir()
    _save(flat / "a.png", "RGB", 0)
    with pytest.raises(UserError, match=r"must be a folder of .npz files or of one subfolder per class of "
                                        r".png/.jpg/.jpeg images; .*flat has neither"):
        load_dataset(str(flat))
    single = tmp_path / "single"
    for name in CLASSES:
        _save(single / name / "only.png", "RGB", 0)
    with pytest.raises(UserError, match="the test split of .* has no images"):
        load_dataset(str(single))


def test_bad_files_are_named_or_skipped(tmp_path):
    root = make_folder(tmp_path / "pics")
    (root / "square" / "fake.png").write_bytes(b"this is not a png")
    with pytest.raises(UserError, match=r"^load_image_folder: .*fake.png cannot be read as an image \(.*\); remove "
                                        r"it, or skip unreadable files$") as caught:
        load_dataset(str(root), size=8)
    assert "\n" not in str(caught.value)
    with pytest.warns(UserWarning, match=r"skipping .*fake.png: Pillow cannot read it"):
        data = load_dataset(str(root), size=8, skip_bad=True)
    assert len(data.train_labels) + len(data.test_labels) == 18
    # a truncated PNG passes the header read and fails while decoding
    (root / "square" / "fake.png").unlink()
    whole = (root / "triangle" / "02.png").read_bytes()
    (root / "triangle" / "02.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=r"triangle.02.png cannot be read as an image"):
        load_image_folder(root, size=8)
    with pytest.warns(UserWarning, match=r"skipping .*triangle.02.png"):
        classes, train_x, train_y, test_x, test_y = load_image_folder(root, size=8, skip_bad=True)
    assert len(train_y) + len(test_y) == 17 and len(train_x) == len(train_y) and len(test_x) == len(test_y)


def test_memory_budget_decides_between_memory_and_a_memory_map(tmp_path):
    root = make_folder(tmp_path / "pics")
    needed = 18 * 32 * 32 * 3 * 4
    in_memory = load_image_folder(root, size=32, max_bytes=needed, cache_dir=tmp_path / "cache")
    assert not isinstance(in_memory[1], np.memmap) and not (tmp_path / "cache").exists()
    mapped = load_image_folder(root, size=32, max_bytes=needed - 1, cache_dir=tmp_path / "cache")
    assert isinstance(mapped[1], np.memmap) and len(list((tmp_path / "cache").iterdir())) == 1


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pics", per_class=2)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(UserError, match=r"needs Pillow, an optional extra: pip install 'refvit\[images\]'"):
        load_dataset(str(root))


def test_builtin_and_npz_data_sets_have_no_class_names(tmp_path):
    assert load_dataset("shapes", size=8).class_names is None
    np.savez(tmp_path / "a.npz", images=np.zeros((5, 4, 4, 3)), labels=np.arange(5) % 2)
    assert load_dataset(str(tmp_path)).class_names is None


def test_train_then_eval_on_a_png_folder(tmp_path, capsys, monkeypatch):
    from refvit import cli
    from refvit.models import _registry, list_models
    from refvit.train import load_checkpoint
    from tests.train.tiny_model import tiny_net

    monkeypatch.setitem(_registry._MODELS, "tinynet_images",
                        _registry.ModelInfo("tinynet_images", "testfamily", tiny_net, 16, "test net"))
    list_models()
    root = make_folder(tmp_path / "pics")
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "tinynet_images", "--dataset", str(root), "--epochs", "1", "--batch-size",
                     "8", "--limit-batches", "1", "--backend", "numpy", "--out", str(out), "--quiet"]) == 0
    state = load_checkpoint(out / "checkpoint.npz")
    kwargs = state["info"]["model_kwargs"]
    assert kwargs["num_classes"] == 3 and "in_chans" not in kwargs  # RGB: the default 3 channels
    assert kwargs["img_size"] == 16  # resized to the model's input size, not the loader's default 32
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(out / "checkpoint.npz"), "--backend", "numpy"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"tinynet_images (epoch 1) on {root}: test accuracy") and "(3 images)" in line
