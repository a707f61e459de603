"""Weights files: load_weights / save_weights / create_model(pretrained=...) through .safetensors,
.npz and PyTorch files; containers, dtypes, a new head; damaged and refused files; and saved
refvit weights loading into the PyTorch references with the same logits."""
import os
import warnings

import numpy as np
import pytest
import torch

from refvit.autograd import Tensor
from refvit.errors import UserError
from refvit.models import create_model, load_weights, read_weights, save_weights
from refvit.testing import assert_close

FORMATS = ["safetensors", "npz", "pth", "pt", "bin"]


def _randomise(model, seed, scale=0.15):
    """Every float parameter and BatchNorm statistic drawn at random (float64 models)."""
    rng = np.random.default_rng(seed)
    for key, value in model.state_dict().items():
        if value.dtype.kind != "f":
            continue
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif value.ndim == 1 and key.endswith("weight") and "gamma" not in key:  # norm scales
            value[...] = 1.0 + 0.1 * rng.standard_normal(value.shape)
        else:
            value[...] = scale * rng.standard_normal(value.shape)
    return model


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key].astype(sa[key].dtype), err_msg=key)


@pytest.fixture(scope="module")
def trained():
    return _randomise(create_model("dinat_nano", dtype=np.float64), seed=1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format(tmp_path, trained, fmt):
    path = tmp_path / f"w.{fmt}"
    assert save_weights(trained, path) == str(path)
    fresh = create_model("dinat_nano", dtype=np.float64)
    result = load_weights(fresh, path)
    assert result.missing == [] and result.unexpected == [] and result.kept_head == []
    _same_state(trained, fresh)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "pth"])
def test_create_model_pretrained(tmp_path, trained, fmt):
    path = tmp_path / f"w.{fmt}"
    save_weights(trained, path)
    _same_state(trained, create_model("dinat_nano", dtype=np.float64, pretrained=str(path)))


def test_dtypes_are_converted_to_the_model(tmp_path, trained):
    path = tmp_path / "w.safetensors"
    save_weights(trained, path)
    model = create_model("dinat_nano")  # float32
    load_weights(model, path)
    for key, value in model.state_dict().items():
        assert value.dtype == (np.float32 if value.dtype.kind == "f" else value.dtype)
        np.testing.assert_array_equal(value, trained.state_dict()[key].astype(value.dtype))


def test_torch_saved_state_dict_loads(tmp_path, trained):
    """A plain torch.save of a state_dict (float32 and float16 tensors) loads."""
    state = {key: torch.from_numpy(value.copy()).float() for key, value in trained.state_dict().items()}
    state["norm.weight"] = state["norm.weight"].half()
    path = tmp_path / "torch.pth"
    torch.save(state, path)
    model = create_model("dinat_nano")
    load_weights(model, path)
    np.testing.assert_array_equal(model.state_dict()["head.weight"], state["head.weight"].numpy())
    np.testing.assert_array_equal(model.state_dict()["norm.weight"], state["norm.weight"].float().numpy())


def test_torch_bfloat16_and_safetensors_package_files_load(tmp_path, trained):
    import safetensors.numpy
    import safetensors.torch

    arrays = {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in trained.state_dict().items()}
    safetensors.numpy.save_file(arrays, str(tmp_path / "np.safetensors"))
    model = create_model("dinat_nano")
    load_weights(model, tmp_path / "np.safetensors")
    np.testing.assert_array_equal(model.state_dict()["head.bias"], arrays["head.bias"])
    bf16 = {key: torch.from_numpy(value).to(torch.bfloat16) for key, value in arrays.items()}
    safetensors.torch.save_file(bf16, str(tmp_path / "bf16.safetensors"))
    load_weights(model, tmp_path / "bf16.safetensors")
    np.testing.assert_array_equal(model.state_dict()["head.bias"], bf16["head.bias"].float().numpy())


@pytest.mark.parametrize("container", ["model", "state_dict", "nested", "ddp"])
def test_containers_are_unwrapped(tmp_path, trained, container):
    state = {key: torch.from_numpy(value.copy()) for key, value in trained.state_dict().items()}
    if container == "ddp":
        content = {f"module.{key}": value for key, value in state.items()}
    elif container == "nested":
        content = {"epoch": 3, "model": {"state_dict": state}}
    else:
        content = {container: state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 7}
    torch.save(content, tmp_path / "c.pth")
    model = create_model("dinat_nano", dtype=np.float64)
    load_weights(model, tmp_path / "c.pth")
    _same_state(trained, model)


@pytest.mark.parametrize("ema_key", ["model_ema", "state_dict_ema"])
def test_ema_copy_is_chosen_with_ema(tmp_path, trained, ema_key):
    plain = {key: torch.zeros(value.shape, dtype=torch.float64) for key, value in trained.state_dict().items()}
    ema = {key: torch.from_numpy(value.copy()) for key, value in trained.state_dict().items()}
    torch.save({"state_dict" if ema_key == "state_dict_ema" else "model": plain, ema_key: ema}, tmp_path / "e.pth")
    model = create_model("dinat_nano", dtype=np.float64)
    load_weights(model, tmp_path / "e.pth", ema=True)
    _same_state(trained, model)
    _same_state(trained, create_model("dinat_nano", dtype=np.float64, pretrained=str(tmp_path / "e.pth"),
                                      pretrained_ema=True))
    load_weights(model, tmp_path / "e.pth")
    assert not np.any(model.state_dict()["head.weight"])
    torch.save({"model": plain}, tmp_path / "no_ema.pth")
    with pytest.raises(UserError, match="has no EMA copy .*'model'"):
        load_weights(model, tmp_path / "no_ema.pth", ema=True)


def test_refvit_train_checkpoint_loads(tmp_path, trained):
    from refvit.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.npz", {"epoch": 1, "model": dict(trained.state_dict())})
    model = create_model("dinat_nano", dtype=np.float64)
    load_weights(model, tmp_path / "checkpoint.npz")
    _same_state(trained, model)


def test_new_num_classes_keeps_the_fresh_head(tmp_path, trained):
    save_weights(trained, tmp_path / "w.npz")
    fresh = create_model("dinat_nano", num_classes=4, dtype=np.float64)
    head_before = {key: fresh.state_dict()[key].copy() for key in ("head.weight", "head.bias")}
    with pytest.warns(UserWarning, match="classifier head does not match.*head.weight, head.bias"):
        result = load_weights(fresh, tmp_path / "w.npz")
    assert result.kept_head == ["head.weight", "head.bias"] and result.missing == []
    for key, value in head_before.items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value)
    np.testing.assert_array_equal(fresh.state_dict()["norm.weight"], trained.state_dict()["norm.weight"])
    with pytest.warns(UserWarning, match="2 file keys dropped"):
        headless = create_model("dinat_nano", num_classes=0, pretrained=str(tmp_path / "w.npz"))
    expected = trained.state_dict()["norm.bias"].astype(np.float32)
    np.testing.assert_array_equal(headless.state_dict()["norm.bias"], expected)


def test_token_label_head_dropped_for_a_model_without_one(tmp_path):
    with_aux = create_model("dualvit_nano", token_label=True)
    save_weights(with_aux, tmp_path / "d.safetensors")
    without = create_model("dualvit_nano", token_label=False)
    with pytest.warns(UserWarning, match="aux_head.weight"):
        result = load_weights(without, tmp_path / "d.safetensors")
    assert sorted(result.dropped_head) == ["aux_head.bias", "aux_head.weight"] and result.kept_head == []
    save_weights(without, tmp_path / "no_aux.npz")
    with pytest.warns(UserWarning, match="2 model keys left as initialised: aux_head.weight, aux_head.bias"):
        result = load_weights(create_model("dualvit_nano", token_label=True), tmp_path / "no_aux.npz")
    assert result.kept_head == ["aux_head.weight", "aux_head.bias"] and result.dropped_head == []


def test_coatnet_new_head_keeps_only_the_classifier_fresh(tmp_path):
    save_weights(create_model("coatnet_nano"), tmp_path / "c.npz")
    with pytest.warns(UserWarning):
        result = load_weights(create_model("coatnet_nano", num_classes=3), tmp_path / "c.npz")
    assert result.kept_head == ["head.fc.weight", "head.fc.bias"]


def test_same_head_loads_without_a_warning(tmp_path, trained):
    save_weights(trained, tmp_path / "w.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(create_model("dinat_nano"), tmp_path / "w.npz")


# ---- bad files


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "pth"])
def test_truncated_file_is_a_user_error(tmp_path, trained, fmt):
    path = tmp_path / f"w.{fmt}"
    save_weights(trained, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=f"weights file .*w.{fmt} is not a readable"):
        load_weights(create_model("dinat_nano"), path)


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "pth"])
def test_wrong_keys_are_listed(tmp_path, trained, fmt):
    model = create_model("dinat_nano", dtype=np.float64)
    state = dict(trained.state_dict())
    state["extra.weight"] = np.ones(3)
    del state["norm.bias"]
    path = tmp_path / f"w.{fmt}"
    _write(path, state)
    with pytest.raises(UserError, match="does not fit dinat_nano: .*missing keys: norm.bias.*unexpected keys: "
                                        "extra.weight"):
        load_weights(model, path)
    result = load_weights(model, path, strict=False)
    assert result.missing == ["norm.bias"] and result.unexpected == ["extra.weight"]


def test_wrong_shapes_are_listed_even_when_not_strict(tmp_path, trained):
    state = dict(trained.state_dict())
    state["norm.weight"] = np.ones(5)
    _write(tmp_path / "w.npz", state)
    for strict in (True, False):
        with pytest.raises(UserError, match=r"mis-shaped keys: norm.weight: expected shape \(128,\); got shape \(5,\)"):
            load_weights(create_model("dinat_nano"), tmp_path / "w.npz", strict=strict)


def test_other_model_is_refused(tmp_path, trained):
    save_weights(trained, tmp_path / "w.safetensors")
    with pytest.raises(UserError, match="does not fit smt_nano: .*missing keys"):
        load_weights(create_model("smt_nano"), tmp_path / "w.safetensors")


class Payload:
    """Unpickling this creates the file ``marker``: what an unsafe load would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_pickle_bearing_pth_is_refused(tmp_path, trained):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"head.bias": torch.zeros(10)}, "args": Payload(marker)}, path)
    with pytest.raises(UserError, match="evil.pth was refused: .* never unpickles"):
        load_weights(create_model("dinat_nano"), path)
    assert not marker.exists()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", head=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UserError, match="holds Python objects"):
        read_weights(tmp_path / "o.npz")


@pytest.mark.parametrize("name, content, match", [
    ("w.h5", b"x", "unknown extension '.h5'"),
    ("empty.npz", b"", "is empty"),
    ("text.safetensors", b"hello world, not a tensor file", "not a readable .safetensors"),
    ("text.pth", b"hello world", "not a readable PyTorch file"),
])
def test_unreadable_files(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=match):
        read_weights(tmp_path / name)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_weights(tmp_path / "nope.npz")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        read_weights(tmp_path / "d.npz")


def test_not_a_state_dict(tmp_path):
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, tmp_path / "x.pth")
    with pytest.raises(UserError, match="holds no state_dict.*'epoch', 'args'"):
        read_weights(tmp_path / "x.pth")


def test_save_to_unknown_extension(tmp_path, trained):
    with pytest.raises(UserError, match="unknown extension '.h5'"):
        save_weights(trained, tmp_path / "w.h5")


def test_missing_safetensors_package_is_named(tmp_path, trained, monkeypatch):
    import sys

    save_weights(trained, tmp_path / "w.safetensors")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(UserError, match=r"needs the safetensors package.*refvit\[safetensors\]"):
        read_weights(tmp_path / "w.safetensors")
    with pytest.raises(UserError, match=r"needs the safetensors package"):
        save_weights(trained, tmp_path / "x.safetensors")


def _write(path, state):
    path = str(path)
    if path.endswith(".npz"):
        np.savez(path, **state)
    elif path.endswith(".safetensors"):
        import safetensors.numpy

        safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, path)
    else:
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)


# ---- refvit weights into the PyTorch references: same logits


def _torch_file(model, tmp_path, fmt):
    """Save ``model`` in ``fmt`` and read the file back with PyTorch's own tools."""
    path = tmp_path / f"w.{fmt}"
    save_weights(model, path)
    if fmt == "safetensors":
        import safetensors.torch

        return safetensors.torch.load_file(str(path))
    return torch.load(path, weights_only=True)


def _logits(model, images):
    return model(Tensor(images)).data


@pytest.mark.parametrize("name, fmt", [("dinat_nano", "safetensors"), ("nat_nano", "pth")])
def test_nat_family_weights_load_into_torch(tmp_path, rng, name, fmt):
    from refvit.models.dinat import NANO, dinat_dilations
    from refvit.torch_ports import dinat as dinat_torch

    ours = _randomise(create_model(name, dtype=np.float64), seed=2).eval()
    pattern = (2, 1, 1) if name == "dinat_nano" else (1, 1, 1)
    theirs = dinat_torch.NAT(NANO["embed_dim"], NANO["mlp_ratio"], NANO["depths"], NANO["num_heads"],
                             NANO["kernel_size"], dinat_dilations(NANO["depths"], pattern)).double().eval()
    theirs.load_state_dict(_torch_file(ours, tmp_path, fmt))
    images = rng.standard_normal((2, 32, 32, 3))
    with torch.no_grad():
        expected = theirs(dinat_torch.nchw(images)).numpy()
    assert_close(_logits(ours, images), expected, name=f"{name}: logits")


def test_cswin_weights_load_into_torch(tmp_path, rng):
    from refvit.torch_ports import cswin as cswin_torch
    from tests.models.test_cswin import NANO

    ours = _randomise(create_model("cswin_nano", dtype=np.float64), seed=3, scale=0.08).eval()
    theirs = cswin_torch.CSWin(32, 10, NANO["embed_dim"], NANO["depth"], NANO["split_size"],
                               NANO["num_heads"]).double().eval()
    theirs.load_state_dict(_torch_file(ours, tmp_path, "safetensors"))
    images = rng.standard_normal((2, 32, 32, 3))
    with torch.no_grad():
        expected = theirs(cswin_torch.nchw(images)).detach().numpy()
    assert_close(_logits(ours, images), expected, name="cswin_nano: logits")


def test_dualvit_weights_load_into_torch(tmp_path, rng):
    from refvit.torch_ports import dualvit as ref
    from tests.models.test_dualvit import NANO

    ours = _randomise(create_model("dualvit_nano", dtype=np.float64), seed=4).eval()
    theirs = ref.DualViT(10, NANO["stem_hidden_dim"], NANO["embed_dims"], NANO["num_heads"], NANO["mlp_ratios"],
                         NANO["depths"], tokens=4, pool=4).double().eval()
    official = _torch_file(ours, tmp_path, "pth")
    # the test port nests the official model's semantic-token parts under ``semantic_init.``
    theirs.load_state_dict({key: official[key.replace("semantic_init.", "")] for key in theirs.state_dict()})
    assert len(official) == len(theirs.state_dict())
    images = rng.standard_normal((2, 32, 32, 3))
    with torch.no_grad():
        expected = theirs(ref.nchw(images)).detach().numpy()
    assert_close(_logits(ours, images), expected, name="dualvit_nano: logits")


def test_coatnet_weights_feed_the_torch_reference(tmp_path, rng):
    from refvit.torch_ports import coatnet as reference

    ours = _randomise(create_model("coatnet_nano", dtype=np.float64), seed=5, scale=0.2).eval()
    sd = _torch_file(ours, tmp_path, "safetensors")
    assert set(sd) == set(ours.state_dict())
    images = rng.standard_normal((2, 32, 32, 3))
    with torch.no_grad():
        expected = reference.coatnet(torch.tensor(images.transpose(0, 3, 1, 2).copy()), sd, ours.cfg.depths,
                                     ours.cfg.block_types).numpy()
    assert_close(_logits(ours, images), expected, name="coatnet_nano: logits", rtol=1e-8, atol=1e-10)


def test_smt_weights_feed_the_torch_reference(tmp_path, rng):
    from refvit.torch_ports import smt as reference

    ours = _randomise(create_model("smt_nano", dtype=np.float64), seed=6).eval()
    sd = _torch_file(ours, tmp_path, "pth")
    assert set(sd) == set(ours.state_dict())
    images = rng.standard_normal((2, 32, 32, 3))
    with torch.no_grad():
        expected = reference.model(sd, torch.tensor(images.transpose(0, 3, 1, 2).copy()),
                                   sa_heads=(-1, -1, 4, 8)).numpy()
    assert_close(_logits(ours, images), expected, name="smt_nano: logits")


def _torch_state(model, shift=0.0):
    return {key: torch.from_numpy(np.array(value + (shift if value.dtype.kind == "f" else 0)))
            for key, value in model.state_dict().items()}  # np.array: 0-d counters stay arrays


# The containers the official training scripts write around a state_dict (their pickled objects, such as
# CSWin's `args` and SMT's `config`, left out: those files are refused, see test_pickle_bearing_pth_is_refused).
RELEASE_LAYOUTS = {
    "nat_nano": lambda sd, ema: sd,  # NAT, DiNAT: the state_dict itself
    "coatnet_nano": lambda sd, ema: sd,  # timm: model.state_dict()
    "cswin_nano": lambda sd, ema: {"epoch": 299, "arch": "cswin", "state_dict": sd, "state_dict_ema": ema,
                                   "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
                                   "version": 2, "metric": 82.7},
    "smt_nano": lambda sd, ema: {"model": sd, "optimizer": {"state": {}, "param_groups": []},
                                 "lr_scheduler": {"last_epoch": 299}, "max_accuracy": 82.2, "epoch": 299,
                                 "scaler": {"scale": 65536.0}},
    "dualvit_nano": lambda sd, ema: {"model": {"state_dict": sd}, "epoch": 299},
}


@pytest.mark.parametrize("name", sorted(RELEASE_LAYOUTS))
def test_official_release_layouts_load(tmp_path, name):
    source = _randomise(create_model(name, dtype=np.float64), seed=5, scale=0.05)
    ema_source = create_model(name, dtype=np.float64)
    ema_state = _torch_state(source, shift=1.0)
    ema_source.load_state_dict({key: value.numpy() for key, value in ema_state.items()})
    torch.save(RELEASE_LAYOUTS[name](_torch_state(source), ema_state), tmp_path / "release.pth")
    model = create_model(name, dtype=np.float64, pretrained=str(tmp_path / "release.pth"))
    _same_state(source, model)
    if name == "cswin_nano":  # the training script's EMA copy, with pretrained_ema=True
        _same_state(ema_source, create_model(name, dtype=np.float64, pretrained=str(tmp_path / "release.pth"),
                                             pretrained_ema=True))
    if name == "dualvit_nano":  # a token-labelling release into a model without the aux head: listed, dropped
        assert "aux_head.weight" in source.state_dict()
        with pytest.warns(UserWarning, match=r"2 file keys dropped.*aux_head\.weight, aux_head\.bias"):
            plain = create_model(name, dtype=np.float64, token_label=False, pretrained=str(tmp_path / "release.pth"))
        np.testing.assert_array_equal(plain.state_dict()["head.weight"], source.state_dict()["head.weight"])
