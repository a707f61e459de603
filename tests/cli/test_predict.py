"""``refvit predict`` on a tiny trained checkpoint, and ``eval``'s class-name line."""
import struct
import zlib

import numpy as np
import pytest

from refvit import cli
from refvit.models import _registry, list_models
from refvit.train import load_checkpoint
from refvit.train.commands import predict
from refvit.train.commands.common import model_from_checkpoint
from tests.train.tiny_model import tiny_net

TINY = "tinynet_test"
NAMES = ["circle", "square", "triangle", "cross", "ring", "bar"]


@pytest.fixture
def named_run(monkeypatch, tmp_path):
    """A tiny model trained one short epoch on shapes, given class names as an image folder would."""
    from refvit.train.commands import common

    monkeypatch.setitem(_registry._MODELS, TINY, _registry.ModelInfo(TINY, "testfamily", tiny_net, 16, "test net"))
    list_models()
    load = common.load_dataset_flag
    monkeypatch.setattr(common, "load_dataset_flag",
                        lambda *args, **kwargs: load(*args, **kwargs)._replace(class_names=list(NAMES)))
    out = tmp_path / "run"
    assert cli.main(["train", "--model", TINY, "--dataset", "shapes", "--epochs", "1", "--batch-size", "16",
                     "--limit-batches", "2", "--backend", "numpy", "--out", str(out), "--quiet"]) == 0
    return out / "checkpoint.npz"


def _png(path, pixels):
    """A PNG file of ``pixels (H, W, 3) uint8``, written without any image library."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def _printed_blocks(text):
    blocks, current = {}, None
    for line in text.strip().splitlines():
        if not line.startswith("  "):
            current = blocks.setdefault(line, [])
        else:
            label = line.split(". ", 1)[1].rsplit(" ", 1)[0].strip()  # "  1. 0 circle  0.2000"
            current.append((label, float(line.split()[-1])))
    return blocks


def test_checkpoint_keeps_the_class_names_and_eval_prints_them(named_run, capsys):
    assert load_checkpoint(named_run)["info"]["class_names"] == NAMES
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(named_run), "--backend", "numpy", "--limit-batches", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("classes: 0 circle (") and ", 5 bar (" in lines[1]


def test_predict_npy_images_top_k_with_names(named_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    exact = rng.random((16, 16, 3)).astype(np.float32)  # the model's size: no resizing
    np.save(tmp_path / "exact.npy", exact)
    np.save(tmp_path / "grey.npy", (rng.random((40, 24)) * 255).astype(np.uint8))  # grey, another size, uint8
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(named_run), str(tmp_path / "exact.npy"),
                     str(tmp_path / "grey.npy"), "--top-k", "3", "--backend", "numpy"]) == 0
    blocks = _printed_blocks(capsys.readouterr().out)
    assert list(blocks) == [str(tmp_path / "exact.npy"), str(tmp_path / "grey.npy")]
    for ranked in blocks.values():
        assert len(ranked) == 3
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
        assert all(label.split(" ", 1)[1] in NAMES for label, _ in ranked)
    # the printed probabilities are the model's softmax on the normalised image
    state = load_checkpoint(named_run)
    model = model_from_checkpoint("test", str(named_run), state)
    model.eval()
    mean, std = np.asarray(state["info"]["mean"]), np.asarray(state["info"]["std"])
    logits = np.asarray(model(((exact - mean) / std)[None].astype(np.float32)).data, dtype=np.float64)
    expected = predict.softmax(logits)[0]
    top = np.argsort(-expected)[:3]
    assert [label for label, _ in blocks[str(tmp_path / "exact.npy")]] == [f"{i} {NAMES[i]}" for i in top]
    np.testing.assert_allclose([p for _, p in blocks[str(tmp_path / "exact.npy")]], expected[top], atol=6e-5)


def test_predict_png(named_run, tmp_path, capsys):
    image = tmp_path / "picture.png"
    _png(image, (np.random.default_rng(1).random((20, 12, 3)) * 255).astype(np.uint8))
    capsys.readouterr()
    argv = ["predict", "--checkpoint", str(named_run), str(image), "--top-k", "2", "--backend", "numpy"]
    try:
        import PIL  # noqa: F401
    except ImportError:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"refvit predict: error: {image}: reading PNG and JPEG needs Pillow (pip install pillow, or "
                       f"'refvit[images]'); .npy arrays need nothing"]
        return
    assert cli.main(argv) == 0
    ranked = _printed_blocks(capsys.readouterr().out)[str(image)]
    assert len(ranked) == 2 and 0 < ranked[1][1] <= ranked[0][1] < 1
    # at the model's size, a PNG and a .npy of the same pixels give the same prediction
    pixels = (np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8)
    _png(tmp_path / "same.png", pixels)
    np.save(tmp_path / "same.npy", pixels)
    assert cli.main(["predict", "--checkpoint", str(named_run), str(tmp_path / "same.png"),
                     str(tmp_path / "same.npy"), "--backend", "numpy"]) == 0
    blocks = _printed_blocks(capsys.readouterr().out)
    assert blocks[str(tmp_path / "same.png")] == blocks[str(tmp_path / "same.npy")]


@pytest.mark.parametrize("name, content, message", [
    ("missing.npy", None, "does not exist"),
    ("bad.npy", b"not an array", "is not a readable .npy array"),
    ("cube.npy", np.zeros((2, 3, 4, 5)), "holds an array of shape (2, 3, 4, 5)"),
    ("picture.gif", b"GIF89a", "unknown image type '.gif'"),
])
def test_predict_errors_name_the_file(named_run, tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(named_run), str(path), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"refvit predict: error: {path}") and message in err[0], err


def test_channels_and_bilinear_resize():
    rgba = np.random.default_rng(2).random((5, 7, 4)).astype(np.float32)
    assert np.array_equal(predict.convert_channels(rgba, 3), rgba[..., :3])
    np.testing.assert_allclose(predict.convert_channels(rgba, 1)[..., 0], rgba[..., :3].mean(-1), rtol=1e-6)
    grey = rgba[..., :1]
    assert np.array_equal(predict.convert_channels(grey, 3), np.repeat(grey, 3, -1))
    # halving by 2 with half-pixel centres averages each 2x2 block
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    halved = predict.resize_bilinear(image, 2, 2)[..., 0]
    np.testing.assert_allclose(halved, image[..., 0].reshape(2, 2, 2, 2).mean(axis=(1, 3)))
    torch = pytest.importorskip("torch")
    up = predict.resize_bilinear(rgba, 9, 11)
    reference = torch.nn.functional.interpolate(torch.from_numpy(rgba).permute(2, 0, 1)[None], size=(9, 11),
                                                mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(up, reference, atol=1e-6)
