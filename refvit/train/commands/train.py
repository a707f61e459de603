"""``refvit train``: train a model on digits, shapes or a folder of ``.npz`` files.

The defaults train the first available ``*_nano`` model on the digits for a few epochs
on the ``cpu`` backend; everything lands in ``--out``: ``checkpoint.npz`` (resumable
with ``--resume``), ``metrics.json`` and ``log.csv``. ``--out`` is held by a lock file
while the command runs (:mod:`refvit.train.out_dir`).

**Resume: the checkpoint's settings rule.** With ``--resume`` the settings that shape the
run (:data:`RUN_SETTINGS`) are read from the checkpoint; a flag given on the command line
must have the value the run was started with, else the command stops with the list of
differences. So a resumed run is the same as one never stopped, and ``metrics.json``
records the values the run really used. ``--backend`` and ``--quiet`` may differ.

**Fine-tuning.** ``--init-from PATH`` starts a new run from a ``refvit train`` checkpoint or
a weights file (:func:`refvit.models.load_weights`). With a data set of another number of
classes the classifier head (the model's top-level modules named ``*head``) is left as
initialised and the rest loaded. ``--freeze`` trains the head only (the backbone's
parameters get no gradient and are in no optimiser group); ``--backbone-lr-scale F`` gives
the backbone ``F`` times the head's learning rate (:func:`refvit.optim.param_groups_finetune`).
Both are run settings. A data set with ``class_names`` has them saved in ``info["class_names"]``.
"""
from __future__ import annotations

import os
import sys

from refvit.errors import UserError
from refvit.train.commands.common import DEFAULT_MODEL_ORDER

COMMAND = "train"

# flag -> (attribute, default); the settings a run keeps from its first command to its last.
RUN_SETTINGS = {
    "--model": ("model", None),  # None: the first registered of DEFAULT_MODEL_ORDER
    "--dataset": ("dataset", "digits"),
    "--epochs": ("epochs", 20),
    "--batch-size": ("batch_size", 64),
    "--lr": ("lr", 2e-3),
    "--weight-decay": ("weight_decay", 0.05),
    "--warmup-epochs": ("warmup_epochs", 1.0),
    "--label-smoothing": ("label_smoothing", 0.0),
    "--clip-grad": ("clip_grad", None),
    "--limit-batches": ("limit_batches", None),
    "--seed": ("seed", 0),
    "--init-from": ("init_from", None),
    "--freeze": ("freeze", False),
    "--backbone-lr-scale": ("backbone_lr_scale", 1.0),
    "--skip-bad-images": ("skip_bad_images", False),
}


def add_arguments(parser):
    # The run's settings default to None here: "not given", so that --resume can take them from the checkpoint.
    parser.add_argument("--model", help=f"model name (default: the first registered of {', '.join(DEFAULT_MODEL_ORDER)})")
    parser.add_argument("--dataset", help="digits, shapes, a folder of .npz files, or an image folder (one subfolder "
                                          "per class of .png/.jpg files) (default: digits)")
    parser.add_argument("--epochs", type=int, help="passes over the training split (default: 20)")
    parser.add_argument("--batch-size", type=int, help="images per step (default: 64)")
    parser.add_argument("--lr", type=float, help="peak AdamW learning rate (default: 2e-3)")
    parser.add_argument("--weight-decay", type=float,
                        help="AdamW decoupled weight decay; norms, biases and position tables get none (default: 0.05)")
    parser.add_argument("--warmup-epochs", type=float, help="linear warm-up before the cosine decay (default: 1)")
    parser.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (default: 0)")
    parser.add_argument("--clip-grad", type=float, help="clip the gradients' joint norm to this (default: off)")
    parser.add_argument("--backend", default="cpu",
                        help="numpy, cpu or cuda (default: cpu, the Numba kernels)")
    parser.add_argument("--out", help="output folder (default: runs/MODEL-DATASET)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out, with the settings it was started with")
    parser.add_argument("--limit-batches", type=int, help="at most N training and test batches per epoch")
    parser.add_argument("--seed", type=int, help="seed of the initial weights, shuffling and augmentation (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the epoch lines")
    parser.add_argument("--init-from", metavar="PATH",
                        help="start a new run from these weights (a fresh optimiser and schedule): a checkpoint.npz of "
                             "refvit train, or a weights file (.safetensors, .npz, .pth/.pt/.bin) for --model; a data "
                             "set with another number of classes gets a new head. The way to extend a finished run")
    parser.add_argument("--freeze", action="store_true", default=None,
                        help="train only the classifier head; every other parameter keeps its value")
    parser.add_argument("--backbone-lr-scale", type=float, metavar="F",
                        help="the backbone's learning rate is F times the head's (default: 1)")
    parser.add_argument("--skip-bad-images", action="store_true", default=None,
                        help="an image folder's files Pillow cannot read are left out, each named in a warning "
                             "line (default: such a file stops the run)")


def given_settings(args):
    """``{flag: value}`` of the run's settings given on the command line (not ``None``)."""
    return {flag: getattr(args, attribute, None) for flag, (attribute, _) in RUN_SETTINGS.items()
            if getattr(args, attribute, None) is not None}


def _check_values(args):
    from refvit.train.commands.common import check_backend, check_model_name, check_number

    if args.model is not None:
        check_model_name(COMMAND, args.model)
    for flag, minimum, integer, strictly in (("--epochs", 1, True, False), ("--batch-size", 1, True, False),
                                             ("--lr", 0.0, False, True), ("--weight-decay", 0.0, False, False),
                                             ("--warmup-epochs", 0.0, False, False),
                                             ("--label-smoothing", 0.0, False, False),
                                             ("--clip-grad", 0.0, False, True), ("--limit-batches", 1, True, False),
                                             ("--seed", 0, True, False),
                                             ("--backbone-lr-scale", 0.0, False, True)):
        value = getattr(args, RUN_SETTINGS[flag][0])
        if value is not None:
            check_number(COMMAND, flag, value, minimum, integer=integer, strictly=strictly)
    if args.label_smoothing is not None and args.label_smoothing > 1:
        raise UserError(f"{COMMAND}: '--label-smoothing' must be in [0, 1]; got {args.label_smoothing}")
    check_backend(COMMAND, args.backend)
    if args.freeze and args.backbone_lr_scale not in (None, 1.0):
        raise UserError(f"{COMMAND}: '--backbone-lr-scale' has no effect with --freeze (the backbone is not "
                        f"trained); give one of them")
    if getattr(args, "init_from", None) is not None and not os.path.isfile(args.init_from):
        raise UserError(f"--init-from {args.init_from} " + ("is a folder; give its checkpoint.npz" if
                                                            os.path.isdir(args.init_from) else "does not exist"))


def fill_defaults(args):
    """Give every run setting that is still ``None`` its default."""
    from refvit.train.commands.common import default_model_name

    for attribute, default in RUN_SETTINGS.values():
        if getattr(args, attribute, None) is None:
            setattr(args, attribute, default_model_name() if attribute == "model" else default)
    return args


def check_arguments(args):
    """Check the flags' values; fill ``--out`` (and, without ``--resume``, every default)."""
    _check_values(args)
    args.model_given = args.model is not None
    if args.init_from is not None and args.out is None:
        raise UserError("--init-from starts a new run: give it a folder of its own with --out")
    if args.out is None:
        from refvit.train.commands.common import default_model_name

        dataset_name = os.path.basename(os.path.normpath(args.dataset or "digits"))
        args.out = os.path.join("runs", f"{args.model or default_model_name()}-{dataset_name}")
    if not args.resume:
        fill_defaults(args)
    return args


def saved_settings(state):
    """``{flag: value}`` the run in checkpoint ``state`` was started with.

    Checkpoints record them under ``info["settings"]``; for older ones they are gathered
    from ``run`` and ``info``, and settings neither holds are missing from the result.
    """
    info = state.get("info") if isinstance(state.get("info"), dict) else {}
    recorded = info.get("settings")
    if isinstance(recorded, dict):
        return {flag: recorded.get(attribute) for flag, (attribute, _) in RUN_SETTINGS.items() if attribute in recorded}
    run = state.get("run") if isinstance(state.get("run"), dict) else {}
    found = {"--model": run.get("model"), "--epochs": run.get("epochs"), "--batch-size": run.get("batch_size"),
             "--dataset": info.get("dataset"), "--lr": info.get("lr"), "--weight-decay": info.get("weight_decay"),
             "--seed": info.get("seed"), "--label-smoothing": info.get("label_smoothing")}
    return {flag: value for flag, value in found.items() if value is not None}


def _show(flag, value):
    if value is None:
        return f"{flag} {'off' if flag == '--clip-grad' else 'unset'}"
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def _same(given, saved):
    if isinstance(given, (int, float)) and isinstance(saved, (int, float)) and not isinstance(saved, bool):
        return float(given) == float(saved)
    if isinstance(given, str) and isinstance(saved, str) and os.sep in given + saved:
        return os.path.normpath(given) == os.path.normpath(saved)
    return given == saved


def _and(parts):
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def apply_saved_settings(args, state, out):
    """Take the run's settings from the checkpoint; refuse flags given with other values."""
    saved = saved_settings(state)
    given = given_settings(args)
    differing = [flag for flag, value in given.items() if flag in saved and not _same(value, saved[flag])]
    if differing:
        raise UserError(
            f"--resume: the run in {out} was started with {_and([_show(f, saved[f]) for f in differing])}; this "
            f"command gives {_and([_show(f, given[f]) for f in differing])}. Drop these flags to resume the run "
            f"as it was, or choose another --out for a new run")
    for flag, (attribute, _) in RUN_SETTINGS.items():
        if flag in saved:
            setattr(args, attribute, saved[flag])
    return fill_defaults(args)


def resume_command(out):
    return f"refvit train --out {out} --resume"


def run_from_args(args):
    from refvit.train.out_dir import hold_output_folder

    args = check_arguments(args)
    with hold_output_folder(args.out):  # --out problems and a concurrent run: one-line errors before anything runs
        return _run_in_folder(args)


def _run_in_folder(args):
    from refvit.train.checkpoint import load_training_checkpoint
    from refvit.train.loop import CHECKPOINT_NAME

    path = os.path.join(args.out, CHECKPOINT_NAME)
    if args.resume:
        if not os.path.isfile(path):
            raise UserError(f"--resume: {args.out} holds no run to continue ({path} does not exist); start one "
                            f"there without --resume")
        state = load_training_checkpoint(path, resume=True)
        apply_saved_settings(args, state, args.out)
        _check_values(args)  # values read from the checkpoint obey the flags' rules too
        if state["epoch"] >= args.epochs:
            print(f"the run in {args.out} is already complete ({state['epoch']} of {args.epochs} epochs); "
                  f"nothing to do. Its results are in {os.path.join(args.out, 'metrics.json')}")
            return 0
    elif os.path.exists(path):
        raise UserError(f"--out {args.out} already holds a run ({path}); continue it with --resume, or choose "
                        f"another --out")
    init = None
    if args.init_from is not None and not args.resume:  # a resumed run restores its own weights
        init = _initial_weights(args)
    try:
        return _train(args, init)
    except KeyboardInterrupt:
        if os.path.isfile(path):
            print(f"refvit train: interrupted; the last finished epoch is kept in {path}. Continue with: "
                  f"{resume_command(args.out)}", file=sys.stderr)
        else:
            print("refvit train: interrupted before the first epoch finished; nothing was saved", file=sys.stderr)
        return 130  # the status of a run stopped by Ctrl-C; the line above says what was kept


def _is_training_checkpoint(path):
    """True when ``path`` is an ``.npz`` written by :func:`refvit.train.checkpoint.save_checkpoint` (it has ``__meta__``)."""
    import zipfile

    from refvit.train.checkpoint import META_KEY

    if not path.lower().endswith(".npz"):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return f"{META_KEY}.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return True  # unreadable: the checkpoint reader names the file and the damage


def _initial_weights(args):
    """What ``--init-from`` holds: ``{"weights", "model_kwargs", "class_names"}`` for a checkpoint of refvit train,
    whose model becomes ``--model`` (a different one given is an error), or ``{"file": path}`` for a weights file,
    read into ``--model`` once it is built."""
    from refvit.train.checkpoint import load_training_checkpoint

    if not _is_training_checkpoint(args.init_from):
        return {"file": args.init_from}
    state = load_training_checkpoint(args.init_from)
    name = state["run"]["model"]
    if args.model != name and args.model_given:
        raise UserError(f"--init-from {args.init_from} holds {name} weights; this command gives --model "
                        f"{args.model}. Drop --model or give --model {name}")
    args.model = name
    return {"weights": state["model"], "model_kwargs": state["info"]["model_kwargs"],
            "class_names": state["info"].get("class_names")}


def _load_initial_weights(args, model, model_kwargs, init):
    """Load ``init`` (:func:`_initial_weights`) into ``model``; a head of another size is left as initialised."""
    import warnings

    from refvit.models.weights import head_prefixes, load_weights
    from refvit.train.commands.common import weights_mismatch

    if "file" in init:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                load_weights(model, init["file"])
            except UserError as error:
                raise UserError(f"--init-from {init['file']}: {error} (is --model {args.model} the model these "
                                f"weights are for?)") from None
        for warning in caught:
            if issubclass(warning.category, UserWarning) and "classifier head" in str(warning.message):
                print(f"--init-from {init['file']}: a new head for {model_kwargs['num_classes']} classes; the "
                      f"rest of the weights loaded")
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return
    weights, saved_kwargs = dict(init["weights"]), dict(init["model_kwargs"])
    others = {key: value for key, value in saved_kwargs.items() if key != "num_classes"}
    if others != {key: value for key, value in model_kwargs.items() if key != "num_classes"}:
        raise UserError(f"--init-from {args.init_from} holds weights for {saved_kwargs}; --dataset "
                        f"{args.dataset} needs {model_kwargs} (the same image size and channels are needed)")
    if saved_kwargs.get("num_classes") != model_kwargs["num_classes"]:
        prefixes = head_prefixes(model)
        expected = model.state_dict()
        weights = {key: value for key, value in weights.items() if not key.startswith(prefixes)}
        weights.update({key: value.copy() for key, value in expected.items() if key.startswith(prefixes)})
        print(f"--init-from {args.init_from}: a new head for {model_kwargs['num_classes']} classes (the "
              f"checkpoint's has {saved_kwargs.get('num_classes')}); the rest of the weights loaded")
    mismatch = weights_mismatch(model, weights)
    if mismatch is not None:
        raise UserError(f"--init-from {args.init_from} does not fit {args.model}: its weights have {mismatch}")
    model.load_state_dict(weights)


def _optimizer_groups(args, model):
    """The optimiser's parameter groups: the decay/no-decay split, and with ``--freeze`` or
    ``--backbone-lr-scale`` the head and the backbone apart (a frozen backbone gets no gradient)."""
    from refvit.models.weights import head_prefixes
    from refvit.optim import param_groups_finetune, param_groups_weight_decay

    if not args.freeze and args.backbone_lr_scale == 1.0:
        return param_groups_weight_decay(model, args.weight_decay)
    prefixes = head_prefixes(model)
    if not prefixes:
        raise UserError(f"--freeze and --backbone-lr-scale need a classifier head; {args.model} has none")
    if args.freeze:
        for name, parameter in model.named_parameters():
            if not name.startswith(prefixes):
                parameter.requires_grad = False  # no gradient is computed for it, and no update
    return param_groups_finetune(model, args.weight_decay, args.lr, prefixes,
                                 backbone_lr_scale=args.backbone_lr_scale, freeze_backbone=args.freeze)


def _train(args, init=None):
    from refvit.data import make_loaders
    from refvit.models import model_info
    from refvit.nn import random as nn_random
    from refvit.optim import AdamW, CosineWarmupSchedule
    from refvit.train.commands.common import build_model, load_dataset_flag
    from refvit.train.compile_notice import model_dtype, watch_compiles
    from refvit.train.loop import fit

    # resized to the model's input size (the built-in sets and image folders; .npz folders keep their size)
    dataset = load_dataset_flag(COMMAND, args.dataset, size=model_info(args.model).img_size,
                                skip_bad=args.skip_bad_images)
    height, width = dataset.train_images.shape[1:3]
    img_size = height if height == width else (height, width)
    model_kwargs = {"num_classes": dataset.num_classes, "img_size": img_size}
    if dataset.in_chans != 3:  # grey (1) or other channel counts; 3-channel runs keep their saved settings
        model_kwargs["in_chans"] = dataset.in_chans
    nn_random.seed(args.seed)
    model = build_model(args.model, **model_kwargs)
    if init is not None:
        _load_initial_weights(args, model, model_kwargs, init)
    train_loader, test_loader = make_loaders(dataset, args.batch_size, seed=args.seed)
    batches = len(train_loader) if args.limit_batches is None else min(len(train_loader), args.limit_batches)
    optimizer = AdamW(_optimizer_groups(args, model), lr=args.lr)
    total_steps = args.epochs * batches
    schedule = CosineWarmupSchedule(optimizer, total_steps, min(total_steps, round(args.warmup_epochs * batches)))
    settings = {attribute: getattr(args, attribute) for attribute, _ in RUN_SETTINGS.values()}
    info = {"dataset": args.dataset, "model_kwargs": model_kwargs, "mean": dataset.mean, "std": dataset.std,
            "lr": args.lr, "weight_decay": args.weight_decay, "seed": args.seed,
            "label_smoothing": args.label_smoothing, "train_images": int(len(dataset.train_labels)),
            "test_images": int(len(dataset.test_labels)), "settings": settings}
    class_names = getattr(dataset, "class_names", None)
    if class_names is not None:  # index -> name, for eval and predict
        info["class_names"] = [str(name) for name in class_names]
    with watch_compiles(args.backend, model_dtype(model), notice=not args.quiet):  # a line on a cold kernel cache
        metrics = fit(model, train_loader, test_loader, optimizer, schedule, epochs=args.epochs, out_dir=args.out,
                      backend=args.backend, resume=args.resume, limit_batches=args.limit_batches,
                      clip_grad_norm=args.clip_grad, label_smoothing=args.label_smoothing, model_name=args.model,
                      info=info, progress=not args.quiet)
    print(f"{args.model} on {args.dataset}: test accuracy {100 * metrics['test_accuracy']:.1f}% after "
          f"{metrics['epochs']} epoch(s), {metrics['wall_seconds']:.1f} s, {metrics['images_per_second']:.0f} "
          f"images/s ({args.backend}); files in {args.out}")
    return 0
