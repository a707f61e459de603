"""Train a model with ``refvit train`` (unless the run exists) and plot its curves from ``log.csv``.

    python examples/train_and_plot.py --out runs/demo --model coatnet_nano --epochs 5
    python examples/train_and_plot.py --out runs/demo            # only plot an existing run

Every option other than ``--out`` and ``--png`` is passed on to ``refvit train``. The figure
(loss on the left, accuracy on the right, training and test per epoch) is written to
``--png`` (default: ``OUT/curves.png``). Needs matplotlib (``pip install 'refvit[examples]'``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from refvit import cli
from refvit.train import read_log


def plot(rows, png, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in rows]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [row["train_loss"] for row in rows], "o-", label="train")
    loss_axes.plot(epochs, [row["test_loss"] for row in rows], "s-", label="test")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axes.plot(epochs, [100 * row["train_accuracy"] for row in rows], "o-", label="train")
    accuracy_axes.plot(epochs, [100 * row["test_accuracy"] for row in rows], "s-", label="test")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)


def run_title(out):
    """The figure's title: the run's model and data set from its ``metrics.json``, else the folder's name."""
    try:
        with open(os.path.join(out, "metrics.json")) as file:
            metrics = json.load(file)
        return f"{metrics['model']} on {metrics['dataset']}"
    except (OSError, ValueError, KeyError, TypeError):
        return os.path.basename(os.path.normpath(out))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the run's folder (refvit train --out)")
    parser.add_argument("--png", help="where to write the figure (default: OUT/curves.png)")
    args, train_options = parser.parse_known_args(argv)
    log = os.path.join(args.out, "log.csv")
    if not os.path.exists(log) or train_options:
        resume = ["--resume"] if os.path.exists(os.path.join(args.out, "checkpoint.npz")) else []
        status = cli.main(["train", "--out", args.out, *train_options, *resume])
        if status:
            return status
    rows = read_log(log)
    png = args.png or os.path.join(args.out, "curves.png")
    plot(rows, png, title=run_title(args.out))
    print(f"{len(rows)} epoch(s) plotted to {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
