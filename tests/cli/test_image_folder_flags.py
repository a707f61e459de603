"""``--dataset DIR`` of images on the command line: ``--skip-bad-images`` and a missing Pillow."""
import sys

import numpy as np
import pytest

from refvit import cli
from refvit.models import _registry, list_models
from tests.train.tiny_model import tiny_net

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

MODEL = "tinynet_folder"


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(_registry._MODELS, MODEL, _registry.ModelInfo(MODEL, "testfamily", tiny_net, 16, "test net"))
    list_models()
    return MODEL


def _folder(root, per_class=3):
    """2 classes x ``per_class`` RGB PNGs of 12x12; ``b/01.png`` is cut in half (its header still reads)."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), "RGB").save(root / name / f"{i:02d}.png")
    whole = (root / "b" / "01.png").read_bytes()
    (root / "b" / "01.png").write_bytes(whole[: len(whole) // 2])
    return root


def _train(tiny, root, out, *extra):
    return cli.main(["train", "--model", tiny, "--dataset", str(root), "--epochs", "1", "--batch-size", "4",
                     "--backend", "numpy", "--out", str(out), "--quiet", *extra])


def test_a_truncated_png_stops_the_run_naming_it_and_the_flag(tmp_path, tiny, capsys):
    root = _folder(tmp_path / "pics")
    assert _train(tiny, root, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"refvit train: error: --dataset {root}: ")
    assert f"{root / 'b' / '01.png'} cannot be read as an image" in err
    assert err.rstrip().endswith("remove it, or skip unreadable files with --skip-bad-images")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_skip_bad_images_leaves_the_file_out_with_one_warning_line(tmp_path, tiny, capsys):
    from refvit.train import load_checkpoint

    root = _folder(tmp_path / "pics")
    out = tmp_path / "run"
    assert _train(tiny, root, out, "--skip-bad-images") == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"refvit train: warning: --dataset {root}: skipping {root / 'b' / '01.png'}: Pillow cannot "
                        f"read it ({warnings[0].split('(', 1)[1]}"], err
    state = load_checkpoint(out / "checkpoint.npz")
    assert state["info"]["train_images"] + state["info"]["test_images"] == 5  # 6 files, one left out
    assert state["info"]["settings"]["skip_bad_images"] is True  # a run setting: --resume reads the folder alike
    # eval reads the folder again: the same file is named and left out with the flag, an error without it
    checkpoint = str(out / "checkpoint.npz")
    assert cli.main(["eval", "--checkpoint", checkpoint, "--backend", "numpy"]) == 2
    assert "--skip-bad-images" in capsys.readouterr().err
    assert cli.main(["eval", "--checkpoint", checkpoint, "--backend", "numpy", "--skip-bad-images"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"refvit eval: warning: --dataset {root}: skipping {root / 'b' / '01.png'}")
    assert captured.err.count("\n") == 1 and "test accuracy" in captured.out


def test_without_pillow_a_png_folder_is_one_line_naming_the_extra(tmp_path, tiny, capsys, monkeypatch):
    root = _folder(tmp_path / "pics")
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` and `from PIL import Image` now fail
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert _train(tiny, root, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err == (f"refvit train: error: --dataset {root}: reading .png/.jpg images needs Pillow, an optional "
                   f"extra: pip install 'refvit[images]'\n")
