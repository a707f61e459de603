"""``refvit export``: a checkpoint of ``refvit train`` as .safetensors / .npz / .pth weights that load
back into refvit and into the PyTorch port with the same logits; bad flags and files are one line."""
import numpy as np
import pytest
import torch

from refvit import cli
from refvit.autograd import Tensor
from refvit.models import create_model, load_weights
from refvit.testing import assert_close
from refvit.train.checkpoint import load_training_checkpoint
from refvit.train.commands.common import model_from_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--model", "dinat_nano", "--epochs", "1", "--limit-batches", "1", "--batch-size", "8",
                     "--backend", "numpy", "--out", str(out), "--quiet"]) == 0
    return out / "checkpoint.npz"


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "pth"])
def test_export_writes_the_checkpoint_weights(checkpoint, tmp_path, capsys, fmt):
    out = tmp_path / f"model.{fmt}"
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out)]) == 0
    assert f"wrote {out}: dinat_nano (epoch 1)" in capsys.readouterr().out
    state = load_training_checkpoint(checkpoint)
    reference = model_from_checkpoint("test", checkpoint, state).eval()
    model = create_model("dinat_nano", **state["info"]["model_kwargs"], pretrained=str(out)).eval()
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(model(Tensor(images)).data, reference(Tensor(images)).data)


def test_export_default_name_and_torch_logits(checkpoint, capsys):
    from refvit.models.dinat import NANO, dinat_dilations
    from refvit.torch_ports import dinat as dinat_torch

    assert cli.main(["export", "--checkpoint", str(checkpoint)]) == 0
    out = checkpoint.parent / "checkpoint.weights.safetensors"
    assert out.is_file() and str(out) in capsys.readouterr().out
    import safetensors.torch

    state = load_training_checkpoint(checkpoint)
    ours = model_from_checkpoint("test", checkpoint, state).eval()
    theirs = dinat_torch.NAT(NANO["embed_dim"], NANO["mlp_ratio"], NANO["depths"], NANO["num_heads"],
                             NANO["kernel_size"], dinat_dilations(NANO["depths"], (2, 1, 1))).eval()
    theirs.load_state_dict(safetensors.torch.load_file(str(out)))
    images = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.tensor(images.transpose(0, 3, 1, 2).copy())).numpy()
    assert_close(ours(Tensor(images)).data, expected, name="exported dinat_nano: logits", rtol=1e-4, atol=1e-5)


def test_export_format_from_out_extension(checkpoint, tmp_path):
    out = tmp_path / "w.npz"
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    load_weights(create_model("dinat_nano"), out)


@pytest.mark.parametrize("extra, message", [
    (["--format", "npz", "--out", "w.safetensors"], "'--out w.safetensors' does not end in .npz"),
    (["--out", "w.h5"], "'--out w.h5' has no extension refvit writes"),
    (["--format", "h5"], "argument --format: invalid choice: 'h5'"),
])
def test_export_bad_flags(checkpoint, capsys, extra, message):
    assert cli.main(["export", "--checkpoint", str(checkpoint), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("refvit export: error:")


def test_export_refuses_to_overwrite_the_checkpoint(checkpoint, capsys):
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--format", "npz", "--out", str(checkpoint)]) == 2
    assert "is the checkpoint itself" in capsys.readouterr().err


def test_export_damaged_or_missing_checkpoint(tmp_path, capsys):
    assert cli.main(["export", "--checkpoint", str(tmp_path / "none.npz")]) == 2
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert cli.main(["export", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "does not exist" in err[0] and "bad.npz is damaged" in err[1]
    assert not list(tmp_path.glob("*.weights.*"))
