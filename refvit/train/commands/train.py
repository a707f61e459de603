"""``refvit train``: train a model on digits, shapes or a folder of ``.npz`` files.

The defaults train the first available ``*_nano`` model on the digits for a few epochs
on the ``cpu`` backend; everything lands in ``--out``: ``checkpoint.npz`` (resumable
with ``--resume``), ``metrics.json`` and ``log.csv``.
"""
from __future__ import annotations

import os

from refvit.train.commands.common import DEFAULT_MODEL_ORDER

COMMAND = "train"


def add_arguments(parser):
    parser.add_argument("--model", help=f"model name (default: the first registered of {', '.join(DEFAULT_MODEL_ORDER)})")
    parser.add_argument("--dataset", default="digits", help="digits, shapes, or a folder of .npz files (default: digits)")
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training split (default: 20)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: 2e-3)")
    parser.add_argument("--weight-decay", type=float, default=0.05,
                        help="AdamW decoupled weight decay; norms, biases and position tables get none (default: 0.05)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay (default: 1)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default: 0)")
    parser.add_argument("--clip-grad", type=float, default=None, help="clip the gradients' joint norm to this (default: off)")
    parser.add_argument("--backend", default="cpu",
                        help="numpy, cpu or cuda (default: cpu, the Numba kernels)")
    parser.add_argument("--out", help="output folder (default: runs/MODEL-DATASET)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--limit-batches", type=int, default=None, help="at most N training and test batches per epoch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, shuffling and augmentation")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the epoch lines")


def check_arguments(args):
    from refvit.backend import BACKENDS
    from refvit.train.commands.common import check_model_name, check_number, default_model_name

    args.model = check_model_name(COMMAND, args.model) if args.model else default_model_name()
    check_number(COMMAND, "--epochs", args.epochs, 1, integer=True)
    check_number(COMMAND, "--batch-size", args.batch_size, 1, integer=True)
    check_number(COMMAND, "--lr", args.lr, 0.0, strictly=True)
    check_number(COMMAND, "--weight-decay", args.weight_decay, 0.0)
    check_number(COMMAND, "--warmup-epochs", args.warmup_epochs, 0.0)
    check_number(COMMAND, "--label-smoothing", args.label_smoothing, 0.0)
    if args.label_smoothing > 1:
        raise ValueError(f"{COMMAND}: '--label-smoothing' must be in [0, 1]; got {args.label_smoothing}")
    if args.clip_grad is not None:
        check_number(COMMAND, "--clip-grad", args.clip_grad, 0.0, strictly=True)
    if args.limit_batches is not None:
        check_number(COMMAND, "--limit-batches", args.limit_batches, 1, integer=True)
    if args.backend not in BACKENDS:
        raise ValueError(f"{COMMAND}: '--backend' must be one of {', '.join(BACKENDS)}; got {args.backend!r}")
    if args.out is None:
        dataset_name = os.path.basename(os.path.normpath(args.dataset))
        args.out = os.path.join("runs", f"{args.model}-{dataset_name}")
    return args


def run_from_args(args):
    from refvit.backend import use_backend
    from refvit.data import load_dataset, make_loaders
    from refvit.models import model_info
    from refvit.nn import random as nn_random
    from refvit.optim import AdamW, CosineWarmupSchedule, param_groups_weight_decay
    from refvit.train.commands.common import build_model
    from refvit.train.loop import fit

    args = check_arguments(args)
    with use_backend(args.backend):  # a clear error now if the backend cannot run here
        pass
    named = args.dataset in ("digits", "shapes")
    dataset = load_dataset(args.dataset, size=model_info(args.model).img_size) if named else load_dataset(args.dataset)
    height, width = dataset.train_images.shape[1:3]
    img_size = height if height == width else (height, width)
    model_kwargs = {"num_classes": dataset.num_classes, "img_size": img_size}
    nn_random.seed(args.seed)
    model = build_model(args.model, **model_kwargs)
    train_loader, test_loader = make_loaders(dataset, args.batch_size, seed=args.seed)
    batches = len(train_loader) if args.limit_batches is None else min(len(train_loader), args.limit_batches)
    optimizer = AdamW(param_groups_weight_decay(model, args.weight_decay), lr=args.lr)
    total_steps = args.epochs * batches
    schedule = CosineWarmupSchedule(optimizer, total_steps, min(total_steps, round(args.warmup_epochs * batches)))
    info = {"dataset": args.dataset, "model_kwargs": model_kwargs, "mean": dataset.mean, "std": dataset.std,
            "lr": args.lr, "weight_decay": args.weight_decay, "seed": args.seed,
            "label_smoothing": args.label_smoothing, "train_images": int(len(dataset.train_labels)),
            "test_images": int(len(dataset.test_labels))}
    metrics = fit(model, train_loader, test_loader, optimizer, schedule, epochs=args.epochs, out_dir=args.out,
                  backend=args.backend, resume=args.resume, limit_batches=args.limit_batches,
                  clip_grad_norm=args.clip_grad, label_smoothing=args.label_smoothing, model_name=args.model,
                  info=info, progress=not args.quiet)
    print(f"{args.model} on {args.dataset}: test accuracy {100 * metrics['test_accuracy']:.1f}% after "
          f"{metrics['epochs']} epoch(s), {metrics['wall_seconds']:.1f} s, {metrics['images_per_second']:.0f} "
          f"images/s ({args.backend}); files in {args.out}")
    return 0
