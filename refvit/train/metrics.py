"""Running averages and the two files a run leaves behind: ``metrics.json`` and ``log.csv``.

``log.csv`` has one row per finished epoch (columns :data:`LOG_COLUMNS`);
``metrics.json`` summarises the run: the last epoch's losses and accuracies, the best test
accuracy, the mean training throughput and the wall time, plus the per-epoch ``history``.
Both are rewritten whole (atomically) after every epoch, from the history that the
checkpoint also carries, so a resumed run continues them seamlessly.
"""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from refvit.train.checkpoint import atomic_write_text

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
               "images_per_second", "epoch_seconds")


def count_correct(logits, labels):
    """How many rows of ``logits (B, K)`` have their largest entry at ``labels (B,)``."""
    return int(np.sum(np.argmax(logits, axis=-1) == labels))


class RunningMean:
    """Weighted mean of per-batch values (weights: batch sizes)."""

    def __init__(self):
        self.total, self.weight = 0.0, 0

    def add(self, value, weight=1):
        self.total += float(value) * weight
        self.weight += weight

    @property
    def value(self):
        return self.total / self.weight if self.weight else float("nan")


def summarise(history, **facts):
    """The ``metrics.json`` dict for a run with per-epoch rows ``history`` and extra ``facts``."""
    last = history[-1] if history else {}
    train_seconds = sum(row["train_seconds"] for row in history)
    train_images = sum(row["train_images"] for row in history)
    return {
        **facts,
        "epochs": len(history),
        "train_loss": last.get("train_loss"),
        "train_accuracy": last.get("train_accuracy"),
        "test_loss": last.get("test_loss"),
        "test_accuracy": last.get("test_accuracy"),
        "best_test_accuracy": max((row["test_accuracy"] for row in history), default=None),
        "images_per_second": train_images / train_seconds if train_seconds else None,
        "wall_seconds": sum(row["epoch_seconds"] for row in history),
        "history": history,
    }


def write_metrics(out_dir, metrics):
    atomic_write_text(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")


def write_log(out_dir, history):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for row in history:
        writer.writerow([_format(row[column]) for column in LOG_COLUMNS])
    atomic_write_text(os.path.join(out_dir, "log.csv"), text.getvalue())


def read_log(path):
    """Rows of a ``log.csv`` as dicts of floats (``epoch`` as int)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{key: (int(value) if key == "epoch" else float(value)) for key, value in row.items()} for row in rows]


def _format(value):
    return f"{value:.6g}" if isinstance(value, float) else value
