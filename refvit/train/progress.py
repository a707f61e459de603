"""A progress bar on stderr, written without any library.

On a terminal one line is redrawn in place (``\\r``); when stderr is a file or a pipe
(CI logs), a plain line is printed about ten times per epoch instead, so logs stay short
and readable. Each line shows the batches done, the running loss and accuracy, the
training throughput and an estimate of the time left in the epoch. With ``enabled=False``
the bar is silent but :meth:`ProgressBar.message` lines (one per epoch) are still written.

The first batch of a process compiles the Numba kernels it meets (seconds to minutes on a cold
cache; they are cached on disk for later runs). Throughput and time left are therefore measured from
the end of the first batch on, less any time spent compiling after it
(:func:`refvit.train.compile_notice.compile_seconds`, e.g. a kernel first met later), and a first
batch that took longer than :data:`SLOW_FIRST_BATCH` seconds is named in a line of its own, so a
slow start is not mistaken for a slow run.
"""
from __future__ import annotations

import sys
import time

from refvit.train.compile_notice import compile_seconds


def format_seconds(seconds):
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


SLOW_FIRST_BATCH = 5.0  # seconds


class ProgressBar:
    """``bar = ProgressBar(total_batches, "epoch 1/5")``; ``bar.update(images, loss, accuracy)`` per
    batch; ``bar.close()`` at the end of the epoch."""

    WIDTH = 24

    def __init__(self, total, label, stream=None, enabled=True):
        self.total, self.label = int(total), label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.images = 0, 0
        self.start = time.perf_counter()
        self.after_first = None  # (time, images, compile seconds) at the end of the first batch
        self.compiled_before = compile_seconds()
        self.every = max(1, -(-self.total // 10))
        self.line_length = 0

    def update(self, images, loss, accuracy):
        self.done += 1
        self.images += images
        if self.after_first is None:
            now = time.perf_counter()
            self.after_first = (now, self.images, compile_seconds())
            if self.enabled and now - self.start > SLOW_FIRST_BATCH:
                self.message(f"{self.label}: the first batch took {format_seconds(now - self.start)}, mostly "
                             f"compiling the Numba kernels (cached on disk: later runs start at once)")
        if not self.enabled:
            return
        if self.interactive or self.done % self.every == 0 or self.done == self.total:
            self._write(self.describe(loss, accuracy))

    def describe(self, loss, accuracy):
        now = time.perf_counter()
        if self.done >= 2 and self.after_first is not None:  # from the end of the first batch (see above)
            since, images_then, compiled_then = self.after_first
            elapsed = max(now - since - (compile_seconds() - compiled_then), 1e-9)
            rate = (self.images - images_then) / elapsed
            left = elapsed / (self.done - 1) * (self.total - self.done)
        else:
            elapsed = max(now - self.start - (compile_seconds() - self.compiled_before), 1e-9)
            rate = self.images / elapsed
            left = elapsed / self.done * (self.total - self.done)
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        return (f"{self.label} [{bar}] {self.done}/{self.total} batches  loss {loss:.4f}  "
                f"acc {100 * accuracy:5.1f}%  {rate:.0f} img/s  {format_seconds(left)} left")

    def _write(self, text):
        if self.interactive:
            padding = " " * max(0, self.line_length - len(text))
            self.stream.write("\r" + text + padding)
            self.line_length = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.interactive and self.line_length:
            self.stream.write("\n")
            self.stream.flush()
            self.line_length = 0

    def message(self, text):
        """Print a line of its own (after the bar, if one is showing), also when the bar is disabled."""
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()
