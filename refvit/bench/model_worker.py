"""Time one model on one side (refvit, PyTorch eager or ``torch.compile``) in a process of its own.

``python -m refvit.bench.model_worker SIDE MODEL BATCH SIZE REPEAT MODES [DEVICE]`` (``MODES``: ``infer``,
``train`` or ``infer,train``; ``DEVICE``: where the PyTorch sides run, ``cpu`` by default or ``cuda``)
prints one JSON line: the median seconds of an inference pass and of a
training step (forward, cross-entropy, backward, AdamW with weight decay 0.05 on weights and none
on norms, biases and tables), and the process's peak resident memory (:func:`rss_mb`) after building
the model (``rss_base_mb``) and after each mode's timed calls (``infer_rss_mb``, ``train_rss_mb``).
Inference is timed before training, so ``train_rss_mb`` is the peak of the training steps.
Both sides build refvit's model seeded at 0;
the PyTorch sides load its ``state_dict`` into the port (:mod:`refvit.torch_ports.build`) and check,
before timing, that the logits agree at float32 tolerance (refvit's ``numpy`` backend computes its
side of that check, so Numba's threads never run next to torch's). ``torch.compile`` is called
before timing and its compilation (the first calls) is not timed; ``compile_s`` reports it.
On ``cuda`` the port (after the logits check, on the CPU), the batch and the labels move to the GPU,
and every timed call ends with ``torch.cuda.synchronize()``; ``device_peak_mb`` is then the GPU
memory PyTorch allocated at its peak.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

from refvit.bench.timing import measure

SIDES = ("refvit", "torch", "compile")
NUM_CLASSES = 10
CHECK_BATCH = 2


def rss_mb(status="/proc/self/status"):
    """This process's peak resident set so far, in MiB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` (KiB) is the same figure elsewhere,
    but Linux carries a parent's ``ru_maxrss`` over ``fork`` and ``exec``, so in a worker started by a
    large ``refvit bench`` process it would report the parent's peak.
    """
    try:
        with open(status) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def inputs(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, size, size, 3)).astype(np.float32), rng.integers(0, NUM_CLASSES, batch)


def seeded_model(name, size):
    from refvit.bench._seeded import built_once
    from refvit.models import create_model

    return built_once({}, name, lambda: create_model(name, img_size=size, num_classes=NUM_CLASSES,
                                                     dtype=np.float32))


def refvit_steps(model, images, labels):
    """(inference, training step) functions of no arguments on the ``cpu`` backend."""
    from refvit import functional as F
    from refvit.autograd import Tensor, no_grad
    from refvit.backend import use_backend
    from refvit.optim import AdamW, param_groups_weight_decay

    optimizer = AdamW(param_groups_weight_decay(model, 0.05), lr=1e-4)
    x = Tensor(images)

    def infer():
        model.eval()
        with use_backend("cpu"), no_grad():
            model(x)

    def train():
        model.train()
        model.zero_grad()
        with use_backend("cpu"):
            F.cross_entropy(model(x), labels).backward()
            optimizer.step()

    return infer, train


def check_logits(model, port, images):
    """Raise ``AssertionError`` unless refvit's logits (``numpy`` backend) and the port's agree."""
    import torch

    from refvit.autograd import Tensor, no_grad
    from refvit.backend import use_backend
    from refvit.testing.compare import assert_close
    from refvit.torch_ports.build import nchw

    model.eval()
    port.eval()
    with use_backend("numpy"), no_grad():
        ours = model(Tensor(images)).data
    with torch.no_grad():
        theirs = port(nchw(images)).numpy()
    assert_close(ours, theirs, name="logits")
    return float(np.max(np.abs(ours - theirs)))


def torch_steps(name, model, port, images, labels, compiled, device="cpu"):
    """(inference, training step) functions of the port on ``device``, compiled with ``torch.compile`` when
    asked; each ends with waiting for the device (:func:`refvit.bench.torch_worker.synchronizer`)."""
    import torch
    import torch.nn.functional as F

    from refvit.bench.torch_worker import synchronizer
    from refvit.optim import param_groups_weight_decay
    from refvit.torch_ports.build import nchw, official_names

    port.to(device)
    sync = synchronizer(device)
    decayed = {id(p) for p in param_groups_weight_decay(model, 0.05)[0]["params"]}
    by_name = {key: p for key, p in model.named_parameters()}
    decay, no_decay = [], []
    for key, parameter in port.named_parameters():
        (decay if id(by_name[official_names(port)[key]]) in decayed else no_decay).append(parameter)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-4)
    run = torch.compile(port) if compiled else port
    x, y = nchw(images).to(device), torch.from_numpy(labels).to(device)

    def infer():
        port.eval()
        with torch.no_grad():
            run(x)
        sync()

    def train():
        port.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(run(x), y).backward()
        optimizer.step()
        sync()

    return infer, train


def time_side(side, name, batch, size, repeat, modes, device="cpu"):
    """The JSON-ready result of one side (see the module's docstring); ``device`` is the PyTorch sides'."""
    images, labels = inputs(batch, size)
    model = seeded_model(name, size)
    result = {"side": side, "model": name, "device": "cpu" if side == "refvit" else device}
    if side == "refvit":
        infer, train = refvit_steps(model, images, labels)
    else:
        import torch

        from refvit.torch_ports.build import torch_model

        torch.set_num_threads(os.cpu_count() or 1)
        port = torch_model(name, model, size)
        result["logits_max_abs_diff"] = check_logits(model, port, images[:CHECK_BATCH])
        infer, train = torch_steps(name, model, port, images, labels, side == "compile", device)
    steps = {"infer": infer, "train": train}
    result["rss_base_mb"] = rss_mb()
    for mode in modes:
        if side == "compile":
            start = time.perf_counter()
            steps[mode]()
            steps[mode]()
            result[f"{mode}_compile_s"] = time.perf_counter() - start
        result[mode] = measure(steps[mode], repeat=repeat)
        result[f"{mode}_rss_mb"] = rss_mb()
    if result["device"].startswith("cuda"):
        import torch

        result["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(argv):
    side, name, batch, size, repeat, modes = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5]
    device = argv[6] if len(argv) > 6 else "cpu"
    if side not in SIDES:
        raise SystemExit(f"model_worker: the side must be one of {', '.join(SIDES)}; got {side!r}")
    print(json.dumps(time_side(side, name, batch, size, repeat, modes.split(","), device)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
