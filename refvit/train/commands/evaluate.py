"""``refvit eval``: the test accuracy of a checkpoint written by ``refvit train``.

The model is rebuilt from the name and constructor arguments saved in the checkpoint, and
the test images are normalised with the training split's mean and std saved with it. When
the training data set had class names (an image folder's subfolders), a second line lists
the class-index map with each class's number of test images.
"""
from __future__ import annotations

COMMAND = "eval"


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.npz written by refvit train")
    parser.add_argument("--dataset", help="digits, shapes, a folder of .npz files or an image folder "
                                          "(default: the training data set)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch (default: 128)")
    parser.add_argument("--backend", default="cpu", help="numpy, cpu or cuda (default: cpu)")
    parser.add_argument("--limit-batches", type=int, default=None, help="at most N test batches")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="an image folder's files Pillow cannot read are left out, each named in a warning line")


def run_from_args(args):
    from refvit.data import DataLoader, Normalize
    from refvit.errors import UserError
    from refvit.train.checkpoint import load_training_checkpoint
    from refvit.train.commands.common import check_backend, check_number, load_dataset_flag, model_from_checkpoint
    from refvit.train.compile_notice import model_dtype, watch_compiles
    from refvit.train.loop import evaluate

    check_number(COMMAND, "--batch-size", args.batch_size, 1, integer=True)
    if args.limit_batches is not None:
        check_number(COMMAND, "--limit-batches", args.limit_batches, 1, integer=True)
    check_backend(COMMAND, args.backend)
    state = load_training_checkpoint(args.checkpoint)
    model = model_from_checkpoint(COMMAND, args.checkpoint, state)
    name, info = state["run"]["model"], state["info"]
    model_kwargs, mean, std = info["model_kwargs"], info["mean"], info["std"]
    dataset_name = args.dataset or info["dataset"]
    img_size = model_kwargs["img_size"]
    named = dataset_name in ("digits", "shapes")
    # the model's input size: the built-in sets take one side, image folders a pair too; .npz folders keep theirs
    size = img_size[0] if named and not isinstance(img_size, int) else img_size
    dataset = load_dataset_flag(COMMAND, dataset_name, size=size, skip_bad=args.skip_bad_images)
    if dataset.test_images.shape[-1] != len(mean):
        raise UserError(f"{COMMAND}: the checkpoint's model takes {len(mean)}-channel images; --dataset "
                        f"{dataset_name} has {dataset.test_images.shape[-1]}")
    loader = DataLoader(dataset.test_images, dataset.test_labels, args.batch_size, augment=Normalize(mean, std))
    with watch_compiles(args.backend, model_dtype(model)):  # a line on a cold kernel cache
        loss, accuracy, images = evaluate(model, loader, backend=args.backend, limit_batches=args.limit_batches)
    print(f"{name} (epoch {state['epoch']}) on {dataset_name}: test accuracy {100 * accuracy:.2f}% "
          f"({images} images), loss {loss:.4f}")
    names = info.get("class_names")
    if names is not None:
        print(class_line(names, dataset.test_labels))
    return 0


def class_line(names, labels, limit=20):
    """``classes: 0 cat (12), 1 dog (10), ...``: the checkpoint's class-index map with each class's
    test-image count (the first ``limit`` classes)."""
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names))
    shown = [f"{index} {name} ({counts[index]})" for index, name in enumerate(names[:limit])]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"classes: {', '.join(shown)}{more}"
