"""The examples' ``main`` functions on minimal settings, and the pieces they are built from.

``examples/`` is not a package, so each example is loaded from its file. Training runs on the
``numpy`` backend for one batch of four images (no kernels to compile); figures go through
matplotlib's Agg backend into ``tmp_path``.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

from refvit.autograd import Tensor, no_grad
from refvit.backend import use_backend
from refvit.models import create_model

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples")


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def attention_maps():
    return load_example("attention_maps")


@pytest.fixture(scope="module")
def cross_check():
    return load_example("cross_check")


def recorded_weights(attention_maps, name, rng):
    """Every layer's weights for the centre query of each map of an untrained ``name`` on a random image."""
    model = create_model(name, num_classes=10, img_size=32).eval()
    layers = attention_maps.attention_layers(model)
    modules = [module for group in layers.values() for module in group]
    with use_backend("numpy"), no_grad(), attention_maps.recording(modules) as records:
        model(Tensor(rng.standard_normal((2, 32, 32, 3)).astype(np.float32)))
    assert all("forward" not in module.__dict__ for module in modules)  # the class's forward is back
    result = {}
    for layer, group in layers.items():
        height, width = attention_maps.map_size(group, records)
        query = (height // 2, width // 2)
        result[layer] = (group, query, attention_maps.layer_weights(group, records, query))
    return result


def test_neighbourhood_weights_cover_the_dilated_window(attention_maps, rng):
    layers = recorded_weights(attention_maps, "dinat_nano", rng)
    group, query, weights = layers["levels.0.blocks.1.attn"]  # 8x8 map, kernel 3, dilation 2
    assert group[0].dilation == 2 and weights.shape == (2, 1, 8, 8)
    assert_sums_to_one(weights)
    rows, cols = np.nonzero(weights[0, 0])
    assert sorted(set(rows)) == [2, 4, 6] and sorted(set(cols)) == [2, 4, 6]
    _, _, padded = layers["levels.2.blocks.0.attn"]  # 2x2 map padded to 3x3: padded keys take a share
    assert padded.shape == (2, 4, 2, 2) and np.all(padded.sum(axis=(2, 3)) < 1.0) and np.all(padded > 0)


def test_global_weights_are_softmax_rows_over_the_map(attention_maps, rng):
    layers = recorded_weights(attention_maps, "coatnet_nano", rng)
    _, query, weights = layers["stages.2.blocks.0.attn"]
    assert query == (1, 1) and weights.shape == (2, 4, 2, 2) and np.all(weights > 0)
    assert_sums_to_one(weights)


def test_stripe_weights_form_a_cross(attention_maps, rng):
    layers = recorded_weights(attention_maps, "cswin_nano", rng)
    group, query, weights = layers["stage1.0.attns"]  # 8x8 map, stripes 2 wide, one head per branch
    assert [branch.orientation for branch in group] == ["vertical", "horizontal"] and query == (4, 4)
    assert weights.shape == (2, 2, 8, 8)
    assert_sums_to_one(weights)
    assert set(np.nonzero(weights[0, 0])[1]) == {4, 5} and set(np.nonzero(weights[0, 1])[0]) == {4, 5}


def assert_sums_to_one(weights):
    np.testing.assert_allclose(weights.sum(axis=(2, 3)), 1.0, rtol=1e-5)


def test_attention_maps_trains_then_draws(attention_maps, tmp_path, capsys):
    from matplotlib.image import imread

    out = tmp_path / "run"
    quick = ["--train-quick", "--model", "dinat_nano", "--out", str(out), "--quick-epochs", "1",
             "--quick-batches", "1", "--batch-size", "4", "--backend", "numpy", "--images", "2"]
    assert attention_maps.main(quick) == 0
    png = out / "attention-levels.0.blocks.1.attn.png"
    assert imread(png).ndim == 3  # a readable image
    checkpoint = str(out / "checkpoint.npz")
    assert attention_maps.main(["--checkpoint", checkpoint, "--list-layers"]) == 0
    assert "levels.2.blocks.3.attn: NeighborhoodAttention2D on a 2x2 map" in capsys.readouterr().out
    chosen = tmp_path / "chosen.png"
    assert attention_maps.main(["--checkpoint", checkpoint, "--layer", "levels.1.blocks.0.attn", "--query", "0", "3",
                                "--images", "1", "--png", str(chosen)]) == 0
    assert imread(chosen).ndim == 3 and "query (0, 3)" in capsys.readouterr().out
    assert attention_maps.main(["--checkpoint", checkpoint, "--layer", "head"]) == 2
    assert attention_maps.main(["--checkpoint", checkpoint, "--query", "8", "0"]) == 2
    assert "unknown layer 'head'" in capsys.readouterr().err
    assert attention_maps.main(quick) == 0  # the checkpoint is reused, not trained again
    assert "using the existing" in capsys.readouterr().out


def test_attention_maps_coatnet_nano_draws_its_largest_map_and_says_so(attention_maps, tmp_path, capsys):
    out = tmp_path / "coat"
    quick = ["--train-quick", "--model", "coatnet_nano", "--out", str(out), "--quick-epochs", "1",
             "--quick-batches", "1", "--batch-size", "4", "--backend", "numpy", "--images", "1"]
    assert attention_maps.main(quick) == 0
    printed = capsys.readouterr().out
    # attention only in the last two stages: 2x2 and 1x1 maps at 32x32; the default is the last 2x2 layer
    assert ("stages.2.blocks.1.attn attends on a 2x2 map (4 tokens per query): the largest attention map "
            "coatnet_nano has at 32x32") in printed
    assert (out / "attention-stages.2.blocks.1.attn.png").is_file()
    assert attention_maps.main(["--checkpoint", str(out / "checkpoint.npz"), "--layer", "stages.3.blocks.0.attn",
                                "--images", "1"]) == 0
    assert "1x1 map; coatnet_nano has larger ones (--list-layers)" in capsys.readouterr().out


def test_cross_check_agrees_with_torch(cross_check, capsys):
    assert cross_check.main(["--cases", "mlp", "conv_block"]) == 0
    out = capsys.readouterr().out
    for quantity in ("d input", "d fc1.weight", "d conv.weight", "d dw.bias", "bn.running_var"):
        assert quantity in out
    assert "FAIL" not in out and "all compared quantities agree" in out


def test_cross_check_reports_a_difference(cross_check, rng):
    torch.manual_seed(0)
    case = cross_check.build_case("mlp", torch, rng, None)
    case.ours.act.approximate = "tanh"  # not what torch.nn.GELU() computes
    lines, failures = cross_check.compare(cross_check.run_case(case, torch, rng), rtol=1e-7, atol=1e-7)
    assert failures and any(line.endswith("FAIL") for line in lines)
    case.ours.fc3 = type(case.ours.fc1)(2, 2)
    with pytest.raises(ValueError, match="only in refvit: \\['fc3.bias', 'fc3.weight'\\]"):
        cross_check.load_torch_state(case)


def test_cross_check_without_torch_or_timm(cross_check, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)  # None in sys.modules: the import fails
    assert cross_check.main(["--cases", "coatnet_0"]) == 0
    assert "coatnet_0: skipped, timm is not installed" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "torch", None)
    assert cross_check.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PyTorch is not installed" in err


def test_train_and_plot_titles_the_figure_with_the_model(tmp_path):
    train_and_plot = load_example("train_and_plot")
    out = tmp_path / "run"
    assert train_and_plot.run_title(str(out)) == "run"  # no run yet: the folder's name
    out.mkdir()
    (out / "metrics.json").write_text('{"model": "smt_nano", "dataset": "digits"}')
    assert train_and_plot.run_title(str(out)) == "smt_nano on digits"


def test_receptive_field_writes_under_runs_by_default(tmp_path, monkeypatch):
    receptive_field = load_example("receptive_field")
    monkeypatch.chdir(tmp_path)
    receptive_field.main(["--layers", "1"])
    assert (tmp_path / "runs" / "receptive_field.png").is_file()
