"""Regenerate the README's benchmark and results tables, and its timing of the main command.

    python examples/readme_figures.py --runs 3

* ``bench``: runs ``refvit bench --markdown --json`` ``--runs`` times (each a process of its own,
  one round of the PyTorch comparison each, so the sides alternate run after run) and gives each
  figure as the median and the range (min-max) over the runs;
* ``official``: ``refvit bench --markdown --filter official`` (the official sizes against PyTorch,
  ``--official-rounds`` rounds of ``--official-repeat`` timed steps after a warm-up step, each round's
  figure the median of its steps; slow, so not part of the default). This machine moves between a fast
  state and one 1.3-1.5x slower for minutes at a time, and a round of one step reads whichever state that
  step fell in: a single step per round moved smt_tiny's ratio from 0.94 to 0.64 between two runs;
* ``results``: ``examples/results_table.py --markdown --runs N`` (trains every ``*_nano`` model
  ``--results-runs`` times in a fresh directory unless ``--results-root`` names finished runs);
* ``train-time``: the README's main command, ``refvit train``, timed ``--train-runs`` times on a
  warm Numba cache (each in a fresh output directory).

Each table replaces the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in the
README (``--readme``); ``--only`` picks some of ``bench,official,results,train-time`` (by default all
but ``official``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from refvit.bench import markdown  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")
PARTS = ("bench", "official", "results", "train-time")
BENCH_FILTER = ("conv2d depthwise,na2d 7x7,stripe_attention CSWin-T stage 1,multiscale_dwconv SMT-T s1,attention (8,"
                "MBConv,dualvit_block,train step dinat_nano,vs torch")


def replace_between(text, name, body):
    """``text`` with everything between ``<!-- name:begin -->`` and ``<!-- name:end -->`` replaced by ``body``
    (on lines of its own); the markers stay. Raises ``ValueError`` unless each marker is there exactly once."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"readme_figures: expected one {begin} before one {end}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body.strip()}\n{end}{tail}"


def rewrite(path, name, body):
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write(replace_between(text, name, body))


def merge_runs(results):
    """The ``refvit bench --json`` results of several runs as one: every figure a list over the runs."""
    rows, compared = {}, {}
    for result in results:
        for row in result["rows"]:
            merged = rows.setdefault((row["case"], row["backend"]), dict(row, forward_backward_ms=[]))
            merged["forward_backward_ms"].append(row["forward_backward_ms"])
        for row in result["compare"]:
            merged = compared.setdefault((row["case"], row["mode"]), {k: v for k, v in row.items()
                                                                       if not isinstance(v, list)})
            for key, value in row.items():
                if isinstance(value, list):
                    merged.setdefault(key, []).extend(value)
    return list(rows.values()), list(compared.values())


def bench_markdown(runs, repeat, filter_text, backends, compile_too):
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(runs):
            path = os.path.join(tmp, f"run{index}.json")
            command = [sys.executable, "-m", "refvit", "bench", "--markdown", "--json", path, "--rounds", "1",
                       "--repeat", str(repeat), "--backends", backends, "--filter", filter_text]
            subprocess.run(command + (["--compile"] if compile_too else []), check=True, stdout=subprocess.DEVNULL)
            with open(path) as handle:
                results.append(json.load(handle))
    rows, compared = merge_runs(results)
    gflops = [r["matmul_gflops"] for r in results]
    command = f"python examples/readme_figures.py --only bench --runs {runs} --backends {backends}"
    parts = [f"{markdown.machine_line(runs)}; float32 1024x1024 matmul {markdown.cell(gflops, 0)} GFLOP/s. "
             f"Produced by `{command}`."]
    if rows:
        parts.append(markdown.ops_table(rows))
    if compared:
        parts.append(markdown.compare_table(compared))
    return "\n\n".join(parts)


def official_markdown(rounds, repeat):
    command = [sys.executable, "-m", "refvit", "bench", "--markdown", "--filter", "official", "--rounds", str(rounds),
               "--repeat", str(repeat)]
    table = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return f"{table.strip()}\n\nProduced by `{' '.join(['refvit'] + command[3:])}`."


def results_markdown(root, epochs, runs):
    command = [sys.executable, os.path.join(HERE, "results_table.py"), "--markdown", "--epochs", str(epochs),
               "--root", root, "--runs", str(runs)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def train_time_markdown(runs):
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "refvit", "train", "--quiet", "--out", os.path.join(tmp, str(index))],
                           check=True, stdout=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - start)
    took = (f"{seconds[0]:.0f} s in one run" if runs == 1 else
            f"{min(seconds):.0f}-{max(seconds):.0f} s over {runs} runs, median {statistics.median(seconds):.0f} s")
    return (f"On {markdown.cpu_model()} with {os.cpu_count()} cores, `refvit train` on a warm Numba cache took {took} ("
            f"`python examples/readme_figures.py --only train-time --train-runs {runs}`; "
            f"{markdown.versions()}; load average {os.getloadavg()[0]:.1f} at the end).")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=README)
    parser.add_argument("--only", default="bench,results,train-time",
                        help="comma-separated subset of " + ",".join(PARTS))
    parser.add_argument("--official-rounds", type=int, default=3)
    parser.add_argument("--official-repeat", type=int, default=5,
                        help="timed training steps per round at the official sizes (the median is the round's)")
    parser.add_argument("--runs", type=int, default=3, help="runs of refvit bench")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement in refvit bench")
    parser.add_argument("--filter", default=BENCH_FILTER, help="refvit bench's --filter")
    parser.add_argument("--backends", default="cpu,torch",
                        help="refvit bench's --backends (numpy adds the reference's column; it is slow)")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile column (slow to compile)")
    parser.add_argument("--results-root", help="finished results_table.py runs to reuse (default: train afresh)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--results-runs", type=int, default=3, help="training runs per model for the results table")
    parser.add_argument("--train-runs", type=int, default=3)
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    if "bench" in parts:
        rewrite(args.readme, "bench", bench_markdown(args.runs, args.repeat, args.filter, args.backends, args.compile))
    if "official" in parts:
        rewrite(args.readme, "official", official_markdown(args.official_rounds, args.official_repeat))
    if "results" in parts:
        if args.results_root:
            body = results_markdown(args.results_root, args.epochs, args.results_runs)
        else:
            with tempfile.TemporaryDirectory() as root:
                body = results_markdown(root, args.epochs, args.results_runs)
        rewrite(args.readme, "results", body)
    if "train-time" in parts:
        # one untimed run first, so the Numba cache is warm whatever ran before
        subprocess.run([sys.executable, "-m", "refvit", "train", "--quiet", "--epochs", "1", "--out",
                        tempfile.mkdtemp()], check=True, stdout=subprocess.DEVNULL)
        rewrite(args.readme, "train-time", train_time_markdown(args.train_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
