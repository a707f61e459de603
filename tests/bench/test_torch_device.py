"""``refvit bench --torch-device``: PyTorch's rows and the model comparison on another device.

No GPU here: the option runs for real with ``cpu``, and the placement of a case's tensors is checked on
PyTorch's ``meta`` device (shapes without data), the way ``cuda`` gets them.
"""
import numpy as np
import pytest
import torch

from refvit import cli
from refvit.bench import ON_REQUEST, cases_gpu, collect_cases, markdown, runner
from refvit.bench.torch_worker import synchronizer, tensors_on, time_torch
from tests.bench.test_compare import parse_tables


def case_named(name):
    (case,) = [c for c in collect_cases() if c.name == name]
    return case


def test_a_case_built_inside_tensors_on_has_its_leaves_on_that_device():
    case = case_named("attention (8,4,196,32)")
    args, kwargs = case.make(np.random.default_rng(0), np.float32)
    original = torch.from_numpy
    with tensors_on("meta"):
        run = case.torch_forward(args, kwargs)
        assert torch.zeros(2).device.type == "meta"
    assert torch.from_numpy is original and torch.zeros(2).device.type == "cpu"
    out = run()
    assert out.device.type == "meta" and tuple(out.shape) == (8, 4, 196, 32)
    out.sum().backward()
    with tensors_on("cpu"):
        assert torch.from_numpy(np.zeros(2, np.float32)).device.type == "cpu"


def test_the_batch_8_na2d_case_is_on_request_and_its_pytorch_side_builds_off_the_cpu():
    (case,) = cases_gpu.CASES
    assert case.name == "na2d 7x7 (8,4,56,56,32) rpb" and ON_REQUEST in case.tags and "numpy" not in case.backends
    every = collect_cases()
    assert case.name not in {c.name for c in runner.selected_cases(every, None)}
    # .ci/gpu_check's filter: the batch-8 case and the op rows it names, no other attention case.
    chosen = {c.name for c in runner.selected_cases(every, "na2d 7x7,attention (8,conv2d,train step")}
    assert case.name in chosen and "attention (8,4,196,32)" in chosen and "na2d 7x7 (1,4,56,56,32) rpb" in chosen
    assert not any("stripe" in name or "relative" in name or "vs torch" in name for name in chosen)
    args, kwargs = case.make(np.random.default_rng(0), np.float32)
    assert args[0].shape == (8, 4, 56, 56, 32) and args[3] == 7 and kwargs["rpb"].shape == (4, 13, 13)
    with tensors_on("meta"):
        run = case.torch_forward(args, kwargs)
    out = run()
    assert out.device.type == "meta" and tuple(out.shape) == (8, 4, 56, 56, 32)


def test_pytorch_rows_on_the_cpu_device_time_and_are_labelled(capsys):
    forward, both = time_torch(case_named("nano op gelu (64,4,4,256)"), np.float32, 1, device="cpu")
    assert 0 < forward and 0 < both
    assert synchronizer("cpu")() is None
    assert runner.main(["--filter", "softmax", "--backends", "numpy,torch", "--torch-device", "cpu",
                        "--repeat", "1", "--markdown"]) == 0
    (table,) = parse_tables(capsys.readouterr().out)
    assert table[0] == ["case (forward+backward ms)", "numpy", "torch CPU"]
    assert all(float(cell) > 0 for cell in table[1][1:])


def test_an_unknown_torch_device_is_refused(capsys):
    assert cli.main(["bench", "--filter", "softmax", "--torch-device", "tpu"]) == 2
    assert "'--torch-device' must be cpu or cuda" in capsys.readouterr().err


@pytest.mark.parametrize("backend, label", [("torch", "torch CPU"), ("torch cuda", "torch CUDA"),
                                            ("torch cuda:1", "torch CUDA:1"), ("cuda", "cuda")])
def test_backend_labels(backend, label):
    assert markdown.backend_label(backend) == label
    assert runner.torch_backend_name("cpu") == "torch" and runner.torch_backend_name("cuda") == "torch cuda"


def test_the_comparison_table_names_the_gpu_when_pytorch_ran_there():
    row = dict(model="dinat_nano", mode="train", batch=64, size=32, refvit_s=[0.2, 0.3], torch_s=[0.01, 0.02],
               refvit_rss_mb=[300.0], refvit_rss_base_mb=[200.0], torch_rss_mb=[900.0], torch_rss_base_mb=[800.0])
    (cpu_table,) = parse_tables(markdown.compare_table([dict(row, torch_device="cpu")]))
    (gpu_table,) = parse_tables(markdown.compare_table([dict(row, torch_device="cuda")]))
    assert cpu_table[0][4] == "PyTorch ms" and gpu_table[0][4] == "PyTorch CUDA ms"
    assert gpu_table[1][4] == "15.0 (10.0-20.0)" and gpu_table[1][5] == "0.06 (0.05-0.07)"
