"""Training without PyTorch: :func:`fit`, :func:`evaluate`, checkpoints and the run's files.

See ``docs/training.md`` and the ``refvit train`` / ``refvit eval`` / ``refvit models`` commands.
"""
from refvit.train.checkpoint import load_checkpoint, save_checkpoint
from refvit.train.loop import CHECKPOINT_NAME, NonFiniteLossError, evaluate, fit
from refvit.train.metrics import read_log
from refvit.train.progress import ProgressBar

__all__ = ["CHECKPOINT_NAME", "NonFiniteLossError", "ProgressBar", "evaluate", "fit", "load_checkpoint",
           "read_log", "save_checkpoint"]
