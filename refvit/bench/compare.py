"""Whole models against their PyTorch ports: inference passes and training steps, refvit / PyTorch.

Each row times one model on each side, every side in a process of its own
(:mod:`refvit.bench.model_worker`), the sides alternating over ``rounds`` rounds (the order
reversed every other round) so that the machine's load drifts over both alike. A row reports
each side's median seconds over the rounds with their range, the median of the per-round ratios
PyTorch time / refvit time (above 1 means refvit is faster) with their range, and each side's peak
resident memory. A round's two processes run one after the other, so its ratio compares the sides
in one state of the machine; the ratio of the two medians could compare one side's fast rounds with
the other's slow ones (on a 2-core machine that moves between a fast and a 1.3-1.5x slower state for
minutes at a time, single-step rounds gave smt_tiny 0.94 in one run and 0.64 in the next). The
``torch.compile`` column (``compile=True``) excludes the compilation, which the first calls of each
process do before the timed ones.

PyTorch runs on ``torch_device``: ``cpu``, or ``cuda`` (``refvit bench --torch-device cuda``), where
the port and the batch live on the GPU and each timed call ends with a synchronisation; the row
keeps the device (``torch_device``). refvit's side runs on its ``cpu`` backend either way.

The ``*_nano`` models run at batch 64 of 32x32 images, inference and training; the official sizes
at batch 2 of 224x224, training only, and only when the filter names them (their names hold
``official``), since they take minutes.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass

from refvit.errors import UserError
from refvit.models import list_models

OFFICIAL = ("dinat_mini", "cswin_tiny", "smt_tiny", "coatnet_0")
WORKER_TIMEOUT_S = 3600


@dataclass(frozen=True)
class CompareCase:
    name: str
    model: str
    batch: int
    size: int
    modes: tuple
    official: bool = False


def compare_cases():
    """The nano rows (batch 64, 32x32, inference and training) and the official-size ones (batch 2, 224x224)."""
    nano = [CompareCase(f"vs torch {m} (64,32,32,3)", m, 64, 32, ("infer", "train"))
            for m in list_models() if m.endswith("_nano")]
    official = [CompareCase(f"vs torch official {m} (2,224,224,3)", m, 2, 224, ("train",), official=True)
                for m in OFFICIAL]
    return nano + official


def selected(cases, filter_text, select):
    """The cases ``select`` picks by name; official-size ones only when the filter names them."""
    chosen = set(select([c.name for c in cases], filter_text))
    return [c for c in cases if c.name in chosen and (not c.official or (filter_text and (
        "official" in filter_text or c.model in filter_text)))]


def run_worker(side, case, repeat, torch_device="cpu"):
    command = [sys.executable, "-m", "refvit.bench.model_worker", side, case.model, str(case.batch), str(case.size),
               str(repeat), ",".join(case.modes), torch_device]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=WORKER_TIMEOUT_S)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"bench: timing {case.model} on the {side} side failed: {last}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def time_case(case, rounds, repeat, sides, torch_device="cpu"):
    """``{side: [worker result per round]}``, the sides alternating, their order reversed every other round."""
    results = {side: [] for side in sides}
    for index in range(rounds):
        for side in (sides if index % 2 == 0 else tuple(reversed(sides))):
            results[side].append(run_worker(side, case, repeat, torch_device))
    return results


def rows_of(case, results, torch_device="cpu"):
    """One row per mode: per-round seconds and peak memory of each side (JSON-ready)."""
    rows = []
    for mode in case.modes:
        row = dict(case=case.name, model=case.model, mode=mode, batch=case.batch, size=case.size,
                   torch_device=torch_device)
        for side, runs in results.items():
            row[f"{side}_s"] = [r[mode] for r in runs]
            row[f"{side}_rss_mb"] = [r[f"{mode}_rss_mb"] for r in runs]
            row[f"{side}_rss_base_mb"] = [r["rss_base_mb"] for r in runs]
            if side == "compile":
                row["compile_compile_s"] = [r[f"{mode}_compile_s"] for r in runs]
        rows.append(row)
    return rows


def spread(values):
    """``(median, min, max)`` of a non-empty list."""
    return statistics.median(values), min(values), max(values)


def ratios(row, side):
    """Per-round PyTorch / refvit ratios of ``side`` (``torch`` or ``compile``), round by round."""
    return [theirs / ours for theirs, ours in zip(row[f"{side}_s"], row["refvit_s"])]


def paired_ratio(row, side):
    """The median of the per-round ratios (:func:`ratios`): the row's ratio."""
    return statistics.median(ratios(row, side))


def text_line(row):
    parts = [f"{row['case']:<40} {row['mode']:<6}"]
    device = row.get("torch_device", "cpu")
    for side in ("refvit", "torch", "compile"):
        if f"{side}_s" in row:
            median, low, high = spread([1e3 * s for s in row[f"{side}_s"]])
            label = side if side == "refvit" or device == "cpu" else f"{side} {device}"
            parts.append(f"{label} {median:9.1f} ms ({low:.1f}-{high:.1f})")
            if side != "refvit":
                r = ratios(row, side)
                parts.append(f"x{paired_ratio(row, side):.2f} ({min(r):.2f}-{max(r):.2f})")
            parts.append(f"{max(row[f'{side}_rss_mb']):.0f} MB")
    return "  ".join(parts)


def run_compare(cases, rounds=3, repeat=5, compile_too=False, out=None, torch_device="cpu"):
    """Time the cases (PyTorch on ``torch_device``); print one line per row to ``out``; return the rows."""
    sides = ("refvit", "torch", "compile") if compile_too else ("refvit", "torch")
    rows = []
    for case in cases:
        for row in rows_of(case, time_case(case, rounds, repeat, sides, torch_device), torch_device):
            rows.append(row)
            print(text_line(row), file=out or sys.stdout, flush=True)
    return rows
