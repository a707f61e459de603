"""Train every ``*_nano`` model on the digits and print a Markdown table of the results.

    python examples/results_table.py --epochs 20 --lr 2e-3 --backend cpu --root runs/nano

Each model trains with ``refvit train`` into ``ROOT/MODEL`` (a finished run is not
trained again; an interrupted one is resumed), then the table is built from the runs'
``metrics.json``: model, parameters, test accuracy, epochs, wall time and images/s.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from refvit import cli
from refvit.models import list_models


def train(name, out, args):
    metrics_path = os.path.join(out, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path) as handle:
            if json.load(handle)["epochs"] >= args.epochs:
                return 0
    argv = ["train", "--model", name, "--dataset", args.dataset, "--epochs", str(args.epochs), "--lr", str(args.lr),
            "--backend", args.backend, "--out", out, "--seed", str(args.seed), "--quiet"]
    if args.limit_batches:
        argv += ["--limit-batches", str(args.limit_batches)]
    if os.path.exists(os.path.join(out, "checkpoint.npz")):
        argv.append("--resume")
    return cli.main(argv)


def markdown_table(results):
    lines = ["| model | parameters | test accuracy | epochs | wall time | images/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, metrics in results:
        if metrics is None:
            lines.append(f"| {name} | | failed | | | |")
            continue
        lines.append(f"| {name} | {metrics['parameters']:,} | {100 * metrics['test_accuracy']:.1f}% | "
                     f"{metrics['epochs']} | {metrics['wall_seconds']:.0f} s | {metrics['images_per_second']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--root", default=os.path.join("runs", "nano"))
    parser.add_argument("--limit-batches", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", help="comma-separated subset (default: every *_nano model)")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else [n for n in list_models() if n.endswith("_nano")]
    results = []
    for name in names:
        out = os.path.join(args.root, name)
        print(f"== {name}", file=sys.stderr, flush=True)
        status = train(name, out, args)
        metrics = None
        if status == 0:
            with open(os.path.join(out, "metrics.json")) as handle:
                metrics = json.load(handle)
        results.append((name, metrics))
    print(f"\n{args.dataset}, {args.epochs} epoch(s), lr {args.lr:g}, backend {args.backend}:\n")
    print(markdown_table(results))
    return 0 if all(metrics is not None for _, metrics in results) else 1


if __name__ == "__main__":
    sys.exit(main())
