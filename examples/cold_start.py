"""How long `refvit train` waits before its first progress line, on a cold and a warm Numba cache.

    python examples/cold_start.py --models dinat_nano cswin_nano --runs 3

Each run is `refvit train --model M --epochs 1` in a process of its own, with its output piped (so
the progress bar prints plain lines), in a fresh output folder. A cold run gets an empty
`NUMBA_CACHE_DIR`, so every kernel it calls compiles; the warm run after it reuses that cache. For
each run: seconds from the start of the process to the compile notice, to the first progress line,
and to the end (epoch 1 done). The table gives the range (min-max) over the runs, headed by the
machine; `--markdown` prints it as Markdown. `--limit-batches N` stops each epoch after N batches
(the default 0 runs the whole epoch); `--backend numpy` runs the NumPy reference, which compiles nothing.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from refvit.bench.markdown import cpu_model, versions

NOTICE = "compiling "
PROGRESS = "batches"


def timed_run(model, cache_dir, limit_batches, backend="cpu"):
    """One `refvit train` process -> (seconds to the compile notice or None, to the first progress line, to the
    end)."""
    out = Path(tempfile.mkdtemp(prefix="refvit-cold-")) / "run"
    command = [sys.executable, "-m", "refvit", "train", "--model", model, "--epochs", "1", "--out", str(out),
               "--backend", backend]
    if limit_batches:
        command += ["--limit-batches", str(limit_batches)]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    notice = first = None
    for line in process.stdout:
        now = time.perf_counter() - start
        if notice is None and line.startswith(NOTICE):
            notice = now
        if first is None and PROGRESS in line:
            first = now
    if process.wait() != 0:
        raise SystemExit(f"refvit train --model {model} failed (exit status {process.returncode})")
    return notice, first, time.perf_counter() - start


def span(values):
    values = [v for v in values if v is not None]
    if not values:
        return "none"
    low, high = min(values), max(values)
    return f"{low:.1f} s" if len(values) == 1 else f"{low:.1f}-{high:.1f} s"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dinat_nano"])
    parser.add_argument("--runs", type=int, default=3, help="cold runs per model, each followed by a warm one")
    parser.add_argument("--limit-batches", type=int, default=0)
    parser.add_argument("--backend", default="cpu", help="cpu (default) or numpy, which compiles nothing")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for model in args.models:
        cold, warm = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="refvit-numba-") as cache_dir:
                cold.append(timed_run(model, cache_dir, args.limit_batches, args.backend))
                warm.append(timed_run(model, cache_dir, args.limit_batches, args.backend))
        for label, runs in (("cold", cold), ("warm", warm)):
            rows.append((f"`{model}`, {label} cache ({len(runs)} runs)", *(span(column) for column in zip(*runs))))
    header = ("run", "compile notice", "first progress line", "end of epoch 1")
    print(f"{cpu_model()}, {os.cpu_count()} cores; {versions()}; {datetime.date.today().isoformat()}; load average "
          f"{os.getloadavg()[0]:.1f} at the end; `python examples/cold_start.py --models {' '.join(args.models)} "
          f"--runs {args.runs}{f' --limit-batches {args.limit_batches}' if args.limit_batches else ''}`")
    print()
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in (header, *rows):
            print(f"{row[0]:<36} {row[1]:>16} {row[2]:>20} {row[3]:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
