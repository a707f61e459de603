"""``refvit bench --markdown``: the results as Markdown tables, headed by a line naming the machine.

Every figure is a list of samples (one per run, or per round for the PyTorch comparison); a cell
shows one sample as it is and several as ``median (min-max)``, so tables of several runs merged
(``examples/readme_figures.py``) keep their spread.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics

TORCH_LABEL = "torch CPU"


def backend_label(backend):
    """A backend's column heading: ``torch`` is PyTorch on the CPU, ``torch cuda`` PyTorch on the GPU."""
    if backend == "torch":
        return TORCH_LABEL
    if backend.startswith("torch cuda"):
        return "torch CUDA" + backend[len("torch cuda"):]
    return backend


def cpu_model(path="/proc/cpuinfo"):
    """The CPU's model name from ``/proc/cpuinfo`` (the platform's processor string elsewhere)."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions():
    """``numpy x, numba y, torch z`` (torch's version read without importing it)."""
    from importlib import metadata

    parts = []
    for package in ("numpy", "numba", "torch"):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


def machine_line(runs, rounds=None, date=None):
    """The header line: CPU model, cores, versions, date, and how many runs (and rounds) the figures span."""
    date = date or datetime.date.today().isoformat()
    spans = f"{runs} run{'s' if runs != 1 else ''}" + (f" of {rounds} round{'s' if rounds != 1 else ''}"
                                                       if rounds else "")
    return (f"{cpu_model()}, {os.cpu_count()} cores; {versions()}; {date}; {spans}; "
            f"cells with several samples: median (min-max)")


def samples(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def cell(values, digits=1, scale=1.0):
    """One sample as ``12.3``; several as ``12.3 (11.0-14.2)``; none as an empty cell."""
    values = [scale * v for v in samples(values) if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-"
            f"{max(values):.{digits}f})")


def table(header, rows, align):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ops_table(rows):
    """Forward+backward milliseconds of every case (rows) on every backend (columns)."""
    backends = []
    for row in rows:
        if row["backend"] not in backends:
            backends.append(row["backend"])
    by_case = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["backend"]] = row["forward_backward_ms"]
    header = ["case (forward+backward ms)"] + [backend_label(b) for b in backends]
    body = [[case] + [cell(times.get(b, [])) for b in backends] for case, times in by_case.items()]
    return table(header, body, ["---"] + ["---:"] * len(backends))


def _ratio_cell(row, side):
    from refvit.bench.compare import paired_ratio, ratios  # the row's statistic, defined with the comparison

    theirs, ours = samples(row.get(f"{side}_s", [])), samples(row["refvit_s"])
    if not theirs:
        return ""
    row = dict(row, **{f"{side}_s": theirs, "refvit_s": ours})
    per_round, median = ratios(row, side), paired_ratio(row, side)
    if len(per_round) == 1:
        return f"{median:.2f}"
    return f"{median:.2f} ({min(per_round):.2f}-{max(per_round):.2f})"


def _memory_cell(row, side):
    peaks, bases = samples(row.get(f"{side}_rss_mb", [])), samples(row.get(f"{side}_rss_base_mb", []))
    if not peaks:
        return ""
    growth = [p - b for p, b in zip(peaks, bases)]
    return f"{statistics.median(peaks):.0f} (+{statistics.median(growth):.0f})"


def compare_table(rows):
    """refvit against PyTorch: times (ms), the ratio PyTorch / refvit, and peak memory (MiB)."""
    compiled = any(row.get("compile_s") for row in rows)
    on_gpu = any(row.get("torch_device", "cpu") != "cpu" for row in rows)
    torch_ms = "PyTorch CUDA ms" if on_gpu else "PyTorch ms"
    header = ["model", "pass", "batch", "refvit cpu ms", torch_ms, "PyTorch / refvit"]
    if compiled:
        header += ["torch.compile ms", "compiled / refvit"]
    header += ["refvit peak RSS MiB (+ after build)", "PyTorch peak RSS MiB (+ after build)"]
    body = []
    for row in rows:
        line = [row["model"], "training step" if row["mode"] == "train" else "inference",
                f"{row['batch']}x{row['size']}x{row['size']}", cell(row["refvit_s"], scale=1e3),
                cell(row.get("torch_s", []), scale=1e3), _ratio_cell(row, "torch")]
        if compiled:
            line += [cell(row.get("compile_s", []), scale=1e3), _ratio_cell(row, "compile")]
        line += [_memory_cell(row, "refvit"), _memory_cell(row, "torch")]
        body.append(line)
    return table(header, body, ["---"] * 3 + ["---:"] * (len(header) - 3))
