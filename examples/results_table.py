"""Train every ``*_nano`` model on the digits and print a Markdown table of the results.

    python examples/results_table.py --epochs 20 --lr 2e-3 --backend cpu --root runs/nano [--runs 3] [--markdown]

Each model trains with ``refvit train`` into ``ROOT/MODEL`` (a finished run is not
trained again; an interrupted one is resumed), then the table is built from the runs'
``metrics.json``: model, parameters, test accuracy, epochs, wall time and images/s.
With ``--runs N`` every model trains N times with the same seed, into ``ROOT/MODEL/run-K``,
the models taking turns (run 1 of each, then run 2 of each, ...) so that a change in the
machine's load spreads over all of them; each figure that moved between runs is given as
the median and the range (min-max).
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
import statistics
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


def spread(values, fmt, unit=""):
    """One figure over the runs: the value if every run printed the same, else the median and (min-max)."""
    texts = {fmt.format(v) for v in values}
    if len(texts) == 1:
        return texts.pop() + unit
    return f"{fmt.format(statistics.median(values))}{unit} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def cells(results):
    """Table rows from ``(name, runs)``: ``runs`` is the list of each run's metrics, or None if one failed."""
    for name, runs in results:
        if runs is None:
            yield (name, "", "failed", "", "", "")
            continue
        yield (name, f"{runs[0]['parameters']:,}", spread([100 * m["test_accuracy"] for m in runs], "{:.1f}", "%"),
               spread([m["epochs"] for m in runs], "{}"), spread([m["wall_seconds"] for m in runs], "{:.0f}", " s"),
               spread([m["images_per_second"] for m in runs], "{:.0f}"))


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
            f"{args.dataset}, {args.epochs} epochs, lr {args.lr:g}, backend {args.backend}, {runs_text(args.runs)}. "
            f"Produced by `python examples/results_table.py --markdown{'' if args.runs == 1 else f' --runs {args.runs}'}`.")


def runs_text(runs):
    if runs == 1:
        return "one run per model"
    return f"{runs} runs per model with the same seed, cells that moved between runs: median (min-max)"


def run_dir(root, name, index, runs):
    return os.path.join(root, name) if runs == 1 else os.path.join(root, name, f"run-{index + 1}")


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
    parser.add_argument("--runs", type=int, default=1, help="training runs per model (figures: median and range)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown, headed by the machine")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    names = args.models.split(",") if args.models else [n for n in list_models() if n.endswith("_nano")]
    runs = {name: [] for name in names}
    for index in range(args.runs):
        for name in names:
            if runs[name] is None:
                continue
            out = run_dir(args.root, name, index, args.runs)
            print(f"== {name}" + (f", run {index + 1} of {args.runs}" if args.runs > 1 else ""), file=sys.stderr,
                  flush=True)
            with contextlib.redirect_stdout(sys.stderr if args.markdown else sys.stdout):
                status = train(name, out, args)
            if status != 0:
                runs[name] = None
                continue
            with open(os.path.join(out, "metrics.json")) as handle:
                runs[name].append(json.load(handle))
    results = [(name, runs[name]) for name in names]
    if args.markdown:
        print(f"{machine_line(args)}\n\n{markdown_table(results)}")
    else:
        print(f"\n{args.dataset}, {args.epochs} epoch(s), lr {args.lr:g}, backend {args.backend}:\n")
        print(text_table(results))
    return 0 if all(metrics is not None for _, metrics in results) else 1


if __name__ == "__main__":
    sys.exit(main())
