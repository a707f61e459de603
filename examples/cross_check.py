"""Cross-check refvit modules against PyTorch ones: one state_dict, float64, outputs and every gradient.

    python examples/cross_check.py                        # every case below that can run here
    python examples/cross_check.py --cases mlp conv_block --backend cpu
    python examples/cross_check.py --cases coatnet_0 --img-size 64

The recipe, for anyone porting a PyTorch module to refvit:

1. Build both modules with the same parameter and buffer names (refvit's modules use PyTorch's
   names and parameter shapes). The cases: ``mlp``, timm's ``Mlp`` written with ``torch.nn`` vs
   ``refvit.nn.Mlp``; ``conv_block``, a 3x3 convolution, ``BatchNorm2d`` (training mode, so batch
   statistics and the running-statistics update are checked too), GELU and a strided depthwise
   convolution, written twice; ``coatnet_0``, ``timm.create_model("coatnet_0_224")`` vs
   ``refvit.models.create_model("coatnet_0")`` in evaluation mode, when timm is installed.
2. Copy the weights: ``ours.load_state_dict({k: v.detach().numpy() for k, v in sd.items()})``
   with ``sd = theirs.state_dict()``; the key lists must be equal (differences are listed).
3. Lay the input out for each side. refvit's feature maps are channels-last ``(B, H, W, C)``,
   PyTorch's channels-first ``(B, C, H, W)``: every 4-D input, output and upstream gradient is
   moved with ``transpose(0, 3, 1, 2)`` on the way to PyTorch and ``transpose(0, 2, 3, 1)`` on
   the way back. Parameters have PyTorch's shapes on both sides and are compared as they are.
4. Run both forward in float64, back-propagate one random upstream gradient through both, and
   compare the outputs, the input gradients, every parameter's gradient and every buffer with
   ``refvit.testing.assert_close``. A table gives each quantity's largest absolute difference
   and that difference relative to the largest PyTorch value.

PyTorch is optional for refvit; without it this example says so in one line and exits with 2.
The exit status is 1 when a comparison fails, 0 when all agree.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

import numpy as np

from refvit import nn
from refvit.autograd import Tensor
from refvit.backend import use_backend
from refvit.testing import assert_close

CASES = ("mlp", "conv_block", "coatnet_0")


# ---- the PyTorch modules (torch is imported only when a case runs)


def torch_modules(torch):
    """The two hand-written PyTorch modules, as classes built on ``torch.nn``."""
    tnn = torch.nn

    class TorchMlp(tnn.Module):
        """timm's ``Mlp``: ``fc2(drop2(norm(drop1(act(fc1(x))))))``."""

        def __init__(self, in_features, hidden_features):
            super().__init__()
            self.fc1 = tnn.Linear(in_features, hidden_features)
            self.act = tnn.GELU()
            self.drop1 = tnn.Dropout(0.0)
            self.norm = tnn.Identity()
            self.fc2 = tnn.Linear(hidden_features, in_features)
            self.drop2 = tnn.Dropout(0.0)

        def forward(self, x):
            return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))

    class TorchConvBlock(tnn.Module):
        """``dw(act(bn(conv(x))))`` on ``(B, C, H, W)``."""

        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.conv = tnn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
            self.bn = tnn.BatchNorm2d(out_channels)
            self.act = tnn.GELU()
            self.dw = tnn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1, groups=out_channels)

        def forward(self, x):
            return self.dw(self.act(self.bn(self.conv(x))))

    return TorchMlp, TorchConvBlock


class ConvBlock(nn.Module):
    """The refvit side of ``conv_block``: the same names, on ``(B, H, W, C)``."""

    def __init__(self, in_channels, out_channels, dtype=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False, dtype=dtype)
        self.bn = nn.BatchNorm2d(out_channels, dtype=dtype)
        self.act = nn.GELU()
        self.dw = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1, groups=out_channels, dtype=dtype)

    def forward(self, x):
        return self.dw(self.act(self.bn(self.conv(x))))


@dataclass
class Case:
    name: str
    theirs: object        # a torch.nn.Module
    ours: nn.Module
    x: np.ndarray         # the input in refvit's layout
    training: bool


def build_case(name, torch, rng, img_size):
    """A :class:`Case`, or a string saying why it cannot run here."""
    TorchMlp, TorchConvBlock = torch_modules(torch)
    if name == "mlp":
        return Case(name, TorchMlp(16, 48), nn.Mlp(16, 48, dtype=np.float64), rng.standard_normal((2, 5, 16)), True)
    if name == "conv_block":
        theirs = TorchConvBlock(3, 8)
        with torch.no_grad():  # away from the defaults (ones, zeros), so that every term is checked
            theirs.bn.weight.uniform_(0.5, 1.5)
            theirs.bn.bias.normal_(0.0, 0.5)
            theirs.bn.running_mean.normal_(0.0, 0.5)
            theirs.bn.running_var.uniform_(0.5, 1.5)
        return Case(name, theirs, ConvBlock(3, 8, dtype=np.float64), rng.standard_normal((2, 7, 6, 3)), True)
    if name == "coatnet_0":
        try:
            timm = importlib.import_module("timm")
        except ImportError:
            return "timm is not installed (pip install timm)"
        from refvit.models import create_model

        size = img_size or 224
        kwargs = {} if size == 224 else {"img_size": size}
        theirs = timm.create_model("coatnet_0_224", pretrained=False, **kwargs)
        ours = create_model("coatnet_0", img_size=size, dtype=np.float64)
        return Case(name, theirs, ours, rng.standard_normal((1, size, size, 3)), False)
    raise ValueError(f"cross_check: unknown case {name!r}; choose from {', '.join(CASES)}")


# ---- running both sides and comparing


def to_torch_layout(a):
    """refvit's channels-last map -> PyTorch's channels-first; other ranks as they are."""
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def from_torch_layout(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def load_torch_state(case):
    """Copy ``case.theirs``'s ``state_dict`` into ``case.ours``; a ``ValueError`` if the names differ."""
    state = {k: v.detach().numpy() for k, v in case.theirs.state_dict().items()}
    ours = list(case.ours.state_dict())
    if set(state) != set(ours):
        only_theirs, only_ours = sorted(set(state) - set(ours)), sorted(set(ours) - set(state))
        raise ValueError(f"{case.name}: the state_dict names differ; only in torch: {only_theirs or 'none'}; "
                         f"only in refvit: {only_ours or 'none'}")
    case.ours.load_state_dict(state)


def run_case(case, torch, rng):
    """Both sides forward and backward; ``[(quantity, refvit array, torch array in refvit's layout)]``."""
    theirs = case.theirs.double().train(case.training)
    load_torch_state(case)
    ours = case.ours.train(case.training)
    x_ours = Tensor(case.x, requires_grad=True)
    out = ours(x_ours)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    x_theirs = torch.tensor(to_torch_layout(case.x), requires_grad=True)
    expected = theirs(x_theirs)
    expected.backward(torch.from_numpy(to_torch_layout(upstream)))
    rows = [("output", host(out.data), from_torch_layout(expected.detach().numpy())),
            ("d input", host(x_ours.grad), from_torch_layout(x_theirs.grad.numpy()))]
    their_parameters = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        grad = their_parameters[name].grad
        rows.append((f"d {name}", host(parameter.grad), None if grad is None else grad.numpy()))
    their_buffers = dict(theirs.named_buffers())
    rows += [(name, host(buffer), their_buffers[name].numpy()) for name, buffer in ours.named_buffers()
             if name in their_buffers]
    return rows


def compare(rows, rtol, atol):
    """Table lines and failure messages for ``rows`` of :func:`run_case`."""
    width = max(len(name) for name, _, _ in rows)
    lines = [f"  {'quantity':<{width}}  {'shape':<16} {'max abs diff':>12} {'rel to max':>10}  result"]
    failures = []
    for name, actual, expected in rows:
        if actual is None or expected is None:
            result, abs_diff, rel_diff = "FAIL", float("nan"), float("nan")
            failures.append(f"{name}: a gradient on one side only (refvit {actual is not None}, "
                            f"torch {expected is not None})")
        else:
            diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
            abs_diff = float(diff.max()) if diff.size else 0.0
            rel_diff = abs_diff / max(float(np.abs(expected).max()) if diff.size else 0.0, np.finfo(np.float64).tiny)
            try:
                assert_close(actual, expected, rtol=rtol, atol=atol, name=name)
                result = "ok"
            except AssertionError as error:
                result = "FAIL"
                failures.append(str(error))
        shape = "x".join(map(str, np.shape(actual if actual is not None else expected))) or "()"
        lines.append(f"  {name:<{width}}  {shape:<16} {abs_diff:12.3e} {rel_diff:10.3e}  {result}")
    return lines, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="which pairs to compare")
    parser.add_argument("--backend", default="numpy", help="refvit backend: numpy, cpu or cuda (default: numpy)")
    parser.add_argument("--img-size", type=int, help="image size of coatnet_0 (default: 224)")
    parser.add_argument("--rtol", type=float, default=1e-7, help="relative tolerance (default: 1e-7)")
    parser.add_argument("--atol", type=float, default=1e-7, help="absolute tolerance (default: 1e-7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the input and the upstream gradient")
    args = parser.parse_args(argv)
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        print("cross_check: PyTorch is not installed; install its CPU build (pip install 'refvit[torch]', see the README for the CPU wheel); nothing to compare against", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    failed = 0
    for name in args.cases:
        case = build_case(name, torch, rng, args.img_size)
        if isinstance(case, str):
            print(f"{name}: skipped, {case}")
            continue
        with use_backend(args.backend):
            try:
                rows = run_case(case, torch, rng)
            except ValueError as error:
                print(f"{name}: FAIL, {error}")
                failed += 1
                continue
        lines, failures = compare(rows, args.rtol, args.atol)
        mode = "training" if case.training else "evaluation"
        print(f"{name}: refvit ({args.backend}) vs torch {torch.__version__}, float64, {mode} mode, "
              f"input {'x'.join(map(str, case.x.shape))}")
        print("\n".join(lines))
        for failure in failures:
            print(f"  {failure}")
        failed += bool(failures)
    print("all compared quantities agree" if not failed else f"{failed} case(s) disagree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
