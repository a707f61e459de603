"""``fit``: train a model, evaluate it every epoch, checkpoint it, and resume it exactly.

One training step is the textbook one, with every gradient coming from the ops' own
hand-written backward passes through the tape::

    logits = model(images)                                   # Tensor (B, K)
    loss = F.cross_entropy(logits, labels, label_smoothing)  # 0-d Tensor
    loss.backward()                                          # fills Parameter.grad
    clip_grad_norm_(...); optimizer.step(); schedule.step()

After each epoch the model is evaluated on ``test_loader`` and ``OUT/checkpoint.npz`` is
written atomically with everything the run needs to continue: the model's ``state_dict``,
the optimiser and schedule state, the random streams (``refvit.nn.random`` for dropout and
drop-path, the loader's shuffling, the augmentation) and the per-epoch history. A run
started again with ``resume=True`` continues after the last finished epoch and ends with
the same weights as a run that was never stopped (bit-identical on the ``numpy`` backend).
``OUT/metrics.json`` and ``OUT/log.csv`` are rewritten after every epoch.

A run that diverges stops with :class:`NonFiniteLossError` before anything is written:
the training loss is checked before every update, and after every epoch, before the
checkpoint is written, every tensor of the model's state, every array of the optimiser's
state and the evaluation loss are checked too. The checkpoint, ``metrics.json`` and
``log.csv`` of the last good epoch are left untouched.

``out_dir`` is held by a lock file for the whole run (:mod:`refvit.train.out_dir`): a second
run into it is refused, and a folder that cannot be written is an error before the first
epoch.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time

import numpy as np

from refvit import functional as F
from refvit.autograd import no_grad
from refvit.backend import use_backend
from refvit.errors import UserError
from refvit.nn import random as nn_random
from refvit.optim import clip_grad_norm_
from refvit.train.checkpoint import load_training_checkpoint, save_checkpoint
from refvit.train.metrics import RunningMean, count_correct, summarise, write_log, write_metrics
from refvit.train.out_dir import hold_output_folder
from refvit.train.progress import ProgressBar

CHECKPOINT_NAME = "checkpoint.npz"


class NonFiniteLossError(UserError, RuntimeError):
    """Training diverged: the training loss, a weight, the optimiser's state or the evaluation
    loss became nan or infinite. A :class:`~refvit.errors.UserError` (the remedy is the
    user's: a lower learning rate, clipping), also a ``RuntimeError``."""


def _diverged(epoch, what, kept, batch=None):
    where = f"epoch {epoch}" if batch is None else f"epoch {epoch}, batch {batch}"
    return NonFiniteLossError(f"training diverged in {where}: {what}; {kept} (try a lower learning rate or "
                              f"gradient clipping)")


def _nonfinite_state(model, optimizer):
    """What is not finite in the model's state or the optimiser's, in words; ``None`` if all is."""
    tensors = [(name, _host(value)) for name, value in model.state_dict().items()]
    bad = [name for name, value in tensors if np.issubdtype(np.asarray(value).dtype, np.inexact)
           and not np.isfinite(value).all()]
    if bad:
        return f"{len(bad)} of {len(tensors)} weight tensors are not finite (first: {bad[0]})"
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    entries, bad = 0, []
    for key, state in optimizer.state.items():
        for slot, value in state.items():
            if isinstance(value, np.ndarray) or hasattr(value, "copy_to_host") or np.isscalar(value):
                array = np.asarray(_host(value))
                if not np.issubdtype(array.dtype, np.inexact):
                    continue
                entries += 1
                if not np.isfinite(array).all():
                    bad.append(f"{slot} of {names.get(key, 'a parameter')}")
    if bad:
        return f"{len(bad)} of {entries} optimizer state arrays are not finite (first: {bad[0]})"
    return None


def _host(array):
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)


def _backend_context(backend):
    return use_backend(backend) if backend is not None else contextlib.nullcontext()


def _batch_count(loader, limit):
    """Batches used per epoch: all of the loader's, or at most ``limit``."""
    return len(loader) if limit is None else min(len(loader), limit)


def evaluate(model, loader, backend=None, limit_batches=None):
    """``(mean loss, accuracy, images)`` of ``model`` (in eval mode, no tape) over ``loader``."""
    was_training = model.training
    model.eval()
    loss, correct, seen = RunningMean(), 0, 0
    count = _batch_count(loader, limit_batches)
    try:
        with _backend_context(backend), no_grad():
            for images, labels in itertools.islice(loader, count):
                logits = _host(model(images).data)
                loss.add(float(_host(F.cross_entropy(logits, labels).data)), len(labels))
                correct += count_correct(logits, labels)
                seen += len(labels)
    finally:
        model.train(was_training)
    return loss.value, (correct / seen if seen else float("nan")), seen


def _train_epoch(model, loader, optimizer, schedule, count, clip, label_smoothing, bar, stop_note):
    model.train()
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    loss_mean, correct, seen = RunningMean(), 0, 0
    start = time.perf_counter()
    for number, (images, labels) in enumerate(itertools.islice(loader, count)):  # islice: no extra batch drawn
        model.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        value = float(_host(loss.data))
        if not math.isfinite(value):
            epoch, kept = stop_note
            raise _diverged(epoch, f"the training loss is {value}", kept, batch=number + 1)
        loss.backward()
        if clip is not None:
            clip_grad_norm_(parameters, clip)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        loss_mean.add(value, len(labels))
        correct += count_correct(_host(logits.data), labels)
        seen += len(labels)
        bar.update(len(labels), loss_mean.value, correct / seen)
    bar.close()
    return loss_mean.value, correct / max(seen, 1), seen, time.perf_counter() - start


def _training_state(model, optimizer, schedule, train_loader, epoch, history, run, info):
    return {
        "epoch": epoch,
        "run": run,
        "info": info,
        "model": {key: np.array(_host(value), copy=True) for key, value in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "schedule": None if schedule is None else schedule.state_dict(),
        "random": {"nn": nn_random.get_state(), "train_loader": train_loader.state_dict()},
        "history": history,
    }


def _restore(path, model, optimizer, schedule, train_loader, run):
    state = load_training_checkpoint(path, resume=True)
    saved = state["run"] if isinstance(state["run"], dict) else {}
    changed = [f"{key}={saved.get(key)!r} (now {value!r})" for key, value in run.items()
               if key in saved and saved.get(key) != value]  # keys an older checkpoint lacks are not compared
    if changed:
        raise UserError(f"fit: 'resume' needs the settings the checkpoint {path} was made with; it has "
                        f"{', '.join(changed)}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if schedule is not None and state["schedule"] is not None:
        schedule.load_state_dict(state["schedule"])
    nn_random.set_state(state["random"]["nn"])
    train_loader.load_state_dict(state["random"]["train_loader"])
    return state["epoch"], list(state["history"])


def _save(path, out_dir, state, metrics, history, epoch, kept):
    """Write the checkpoint, ``metrics.json`` and ``log.csv`` of ``epoch``; a failed write (full disk,
    read-only file system) is a one-line :class:`~refvit.errors.UserError` saying what is kept."""
    try:
        save_checkpoint(path, state)
    except UserError as error:
        raise UserError(f"epoch {epoch} could not be saved: {_without_kept(error)}; {kept}") from None
    try:
        write_metrics(out_dir, metrics)
        write_log(out_dir, history)
    except UserError as error:
        raise UserError(f"epoch {epoch} is saved in {path}, but the run's files could not be updated: "
                        f"{_without_kept(error)}") from None


def _without_kept(error):
    text = str(error)
    tail = "; the file keeps its previous contents"
    return text[:-len(tail)] if text.endswith(tail) else text


def _json_ready(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def fit(model, train_loader, test_loader, optimizer, schedule=None, *, epochs=1, out_dir="runs/run", backend=None,
        resume=False, limit_batches=None, clip_grad_norm=None, label_smoothing=0.0, model_name=None, info=None,
        progress=True, stream=None):
    """Train ``model`` for ``epochs`` epochs; return the ``metrics.json`` dict.

    * ``train_loader``/``test_loader``: :class:`refvit.data.DataLoader` (the first shuffles).
    * ``optimizer``, ``schedule``: from :mod:`refvit.optim` (the schedule is stepped per batch).
    * ``backend``: the ops' backend for the run (``None``: the current default).
    * ``limit_batches``: at most this many training and test batches per epoch (quick runs).
    * ``info``: a dict of facts saved with the checkpoint and in ``metrics.json`` (the data
      set, its normalisation, the model's constructor arguments, ...).
    * ``resume``: continue from ``OUT/checkpoint.npz``; without it an existing checkpoint
      there is an error rather than something silently overwritten.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: 'epochs' must be an integer >= 1; got {epochs!r}")
    if limit_batches is not None and (isinstance(limit_batches, bool) or not isinstance(limit_batches, int)
                                      or limit_batches < 1):
        raise ValueError(f"fit: 'limit_batches' must be an integer >= 1 or None; got {limit_batches!r}")
    with hold_output_folder(out_dir, option="out_dir"):
        return _fit(model, train_loader, test_loader, optimizer, schedule, epochs=epochs, out_dir=os.fspath(out_dir),
                    backend=backend, resume=resume, limit_batches=limit_batches, clip_grad_norm=clip_grad_norm,
                    label_smoothing=label_smoothing, model_name=model_name, info=info, progress=progress,
                    stream=stream)


def _fit(model, train_loader, test_loader, optimizer, schedule, *, epochs, out_dir, backend, resume, limit_batches,
         clip_grad_norm, label_smoothing, model_name, info, progress, stream):
    path = os.path.join(out_dir, CHECKPOINT_NAME)
    train_batches = _batch_count(train_loader, limit_batches)
    run = {"model": model_name or type(model).__name__, "epochs": epochs, "batches_per_epoch": train_batches,
           "batch_size": train_loader.batch_size, "label_smoothing": float(label_smoothing),
           "clip_grad_norm": None if clip_grad_norm is None else float(clip_grad_norm)}
    info = dict(info or {})
    facts = {"model": run["model"], "backend": backend, "batch_size": train_loader.batch_size,
             "parameters": int(sum(p.size for p in model.parameters())), "epochs_planned": epochs,
             **_json_ready(info)}
    start_epoch, history = 0, []
    if resume:
        if not os.path.isfile(path):
            raise UserError(f"fit: 'resume' needs a checkpoint; {path} does not exist")
        start_epoch, history = _restore(path, model, optimizer, schedule, train_loader, run)
        if start_epoch < epochs:
            output = sys.stderr if stream is None else stream
            output.write(f"resuming {out_dir} after epoch {start_epoch} of {epochs}\n")
            output.flush()
    elif os.path.exists(path):
        raise UserError(f"fit: {path} exists; resume it (resume=True) or choose another output folder")
    # Overflow and nan on the way to a divergence are reported once, by the checks below, not as NumPy warnings.
    with _backend_context(backend), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(start_epoch, epochs):
            epoch_start = time.perf_counter()
            label = f"epoch {epoch + 1}/{epochs}"
            bar = ProgressBar(train_batches, label, stream=stream, enabled=progress)
            lr = float(optimizer.param_groups[0]["lr"])
            kept = (f"the checkpoint of epoch {epoch} is kept in {path}" if os.path.isfile(path)
                    else "no checkpoint was written yet")
            train_loss, train_accuracy, train_images, train_seconds = _train_epoch(
                model, train_loader, optimizer, schedule, train_batches, clip_grad_norm, label_smoothing, bar,
                (epoch + 1, kept))
            problem = _nonfinite_state(model, optimizer)
            if problem is not None:
                raise _diverged(epoch + 1, problem, kept)
            test_loss, test_accuracy, test_images = evaluate(model, test_loader, limit_batches=limit_batches)
            if test_images and not math.isfinite(test_loss):
                raise _diverged(epoch + 1, f"the evaluation loss is {test_loss}", kept)
            history.append({
                "epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_accuracy": train_accuracy,
                "test_loss": test_loss, "test_accuracy": test_accuracy,
                "images_per_second": train_images / train_seconds if train_seconds else 0.0,
                "epoch_seconds": time.perf_counter() - epoch_start, "train_seconds": train_seconds,
                "train_images": train_images,
            })
            state = _training_state(model, optimizer, schedule, train_loader, epoch + 1, history, run, info)
            _save(path, out_dir, state, summarise(history, **facts), history, epoch + 1, kept)
            row = history[-1]
            bar.message(f"{label}: train loss {train_loss:.4f}  acc {100 * train_accuracy:.1f}%  |  test loss "
                        f"{test_loss:.4f}  acc {100 * test_accuracy:.1f}%  |  {row['epoch_seconds']:.1f} s, "
                        f"{row['images_per_second']:.0f} img/s")
    return summarise(history, **facts)
