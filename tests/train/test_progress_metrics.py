"""Progress bar output on terminals and in logs; metric helpers."""
import io

import numpy as np

from refvit.train.metrics import RunningMean, count_correct, summarise
from refvit.train.progress import ProgressBar, format_seconds


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_about_ten_times_per_epoch_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(95, "epoch 1/2", stream=stream)
    for _ in range(95):
        bar.update(8, 0.5, 0.25)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("epoch 1/2 [########################] 95/95 batches  loss 0.5000  acc  25.0%")
    assert lines[-1].endswith("0:00 left") and "img/s" in lines[-1]


def test_one_redrawn_line_on_a_terminal():
    stream = Terminal()
    bar = ProgressBar(3, "epoch 1/1", stream=stream)
    for _ in range(3):
        bar.update(4, 1.0, 0.5)
    bar.message("done")
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\ndone\n") and text.count("\n") == 2


def test_disabled_bar_still_prints_messages():
    stream = io.StringIO()
    bar = ProgressBar(2, "x", stream=stream, enabled=False)
    bar.update(1, 0.0, 1.0)
    bar.message("epoch line")
    assert stream.getvalue() == "epoch line\n"


def test_helpers():
    assert format_seconds(59.6) == "1:00" and format_seconds(3725) == "1:02:05"
    assert count_correct(np.array([[0.1, 0.9], [2.0, 1.0], [0.0, 3.0]]), np.array([1, 1, 1])) == 2
    mean = RunningMean()
    mean.add(1.0, 3)
    mean.add(3.0, 1)
    assert mean.value == 1.5
    rows = [dict(epoch=e, train_loss=1.0 / e, train_accuracy=0.5, test_loss=1.0, test_accuracy=a, lr=0.1,
                 images_per_second=10.0, epoch_seconds=2.0, train_seconds=1.0, train_images=10)
            for e, a in ((1, 0.6), (2, 0.4))]
    summary = summarise(rows, model="m")
    assert summary["model"] == "m" and summary["epochs"] == 2 and summary["test_accuracy"] == 0.4
    assert summary["best_test_accuracy"] == 0.6 and summary["images_per_second"] == 10.0
    assert summary["wall_seconds"] == 4.0


def test_a_slow_first_batch_is_named_and_left_out_of_the_rate(monkeypatch):
    from refvit.train import progress

    clock = iter([0.0, 40.0, 40.0, 41.0])  # start; batch 1 ends (compiling) and is drawn; batch 2 is drawn
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    bar = ProgressBar(3, "epoch 1/1", stream=stream)
    bar.update(10, 1.0, 0.5)
    bar.update(10, 1.0, 0.5)
    lines = stream.getvalue().splitlines()
    assert "the first batch took 0:40, mostly compiling the Numba kernels" in lines[0]
    assert "10 img/s  0:01 left" in lines[-1]  # 10 images in the second second, not 20 in 41 s
