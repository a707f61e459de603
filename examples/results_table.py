"""Train every ``*_nano`` model on the digits and print a Markdown table of the results.

    python examples/results_table.py --epochs 20 --lr 2e-3 --backend cpu --root runs/nano [--markdown]

Each model trains with ``refvit train`` into ``ROOT/MODEL`` (a finished run is not
trained again; an interrupted one is resumed), then the table is built from the runs'
``metrics.json``: model, parameters, test accuracy, epochs, wall time and images/s.
``--markdown`` prints only the table as Markdown, headed by a line naming the machine, the
settings and the command (what ``examples/readme_figures.py`` puts into the README); without it
the table is aligned plain text.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
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


HEADER = ("model", "parameters", "test accuracy", "epochs", "wall time", "images/s")


def cells(results):
    for name, metrics in results:
        if metrics is None:
            yield (name, "", "failed", "", "", "")
            continue
        yield (name, f"{metrics['parameters']:,}", f"{100 * metrics['test_accuracy']:.1f}%", str(metrics["epochs"]),
               f"{metrics['wall_seconds']:.0f} s", f"{metrics['images_per_second']:.0f}")


def markdown_table(results):
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells(results)]
    return "\n".join(lines)


def text_table(results):
    rows = [HEADER] + list(cells(results))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def machine_line(args):
    from refvit.bench.markdown import cpu_model, versions

    return (f"{cpu_model()}, {os.cpu_count()} cores; {versions()}; {datetime.date.today().isoformat()}; "
            f"{args.dataset}, {args.epochs} epochs, lr {args.lr:g}, backend {args.backend}, one run per model. "
            f"Produced by `python examples/results_table.py --markdown`.")


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
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown, headed by the machine")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else [n for n in list_models() if n.endswith("_nano")]
    results = []
    for name in names:
        out = os.path.join(args.root, name)
        print(f"== {name}", file=sys.stderr, flush=True)
        with contextlib.redirect_stdout(sys.stderr if args.markdown else sys.stdout):
            status = train(name, out, args)
        metrics = None
        if status == 0:
            with open(os.path.join(out, "metrics.json")) as handle:
                metrics = json.load(handle)
        results.append((name, metrics))
    if args.markdown:
        print(f"{machine_line(args)}\n\n{markdown_table(results)}")
    else:
        print(f"\n{args.dataset}, {args.epochs} epoch(s), lr {args.lr:g}, backend {args.backend}:\n")
        print(text_table(results))
    return 0 if all(metrics is not None for _, metrics in results) else 1


if __name__ == "__main__":
    sys.exit(main())
