"""``refvit export``: the weights of a ``refvit train`` checkpoint as a weights file.

``refvit export --checkpoint runs/x/checkpoint.npz --format safetensors`` writes
``runs/x/checkpoint.weights.safetensors`` (or ``--out FILE``): the model's ``state_dict``
under PyTorch's key names, which the PyTorch model loads with ``load_state_dict``. The model
is rebuilt from the checkpoint (its name and constructor arguments) so the weights are
checked to fit it before they are written.
"""
from __future__ import annotations

import os

COMMAND = "export"
FORMATS = ("safetensors", "npz", "pth")


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.npz written by refvit train")
    parser.add_argument("--format", default=None, choices=FORMATS,
                        help="safetensors (needs the safetensors extra), npz, or pth (needs PyTorch); default: "
                             "the --out file's extension, else safetensors")
    parser.add_argument("--out", default=None,
                        help="the file to write (default: next to the checkpoint, CHECKPOINT.weights.FORMAT)")


def default_out(checkpoint, fmt):
    stem = os.path.splitext(os.fspath(checkpoint))[0]
    return f"{stem}.weights.{fmt}"


def run_from_args(args):
    from refvit.errors import UserError
    from refvit.models.weights import save_weights
    from refvit.train.checkpoint import load_training_checkpoint
    from refvit.train.commands.common import model_from_checkpoint

    fmt = args.format
    if args.out is not None:
        extension = os.path.splitext(args.out)[1].lower().lstrip(".")
        if fmt is None:
            if extension not in FORMATS:
                raise UserError(f"{COMMAND}: '--out {args.out}' has no extension refvit writes "
                                f"(.{', .'.join(FORMATS)}); add one or pass --format")
            fmt = extension
        elif extension != fmt:
            raise UserError(f"{COMMAND}: '--out {args.out}' does not end in .{fmt}, the --format given")
    fmt = fmt or "safetensors"
    out = args.out or default_out(args.checkpoint, fmt)
    if os.path.abspath(out) == os.path.abspath(args.checkpoint):
        raise UserError(f"{COMMAND}: '--out {out}' is the checkpoint itself; choose another file")
    state = load_training_checkpoint(args.checkpoint)
    model = model_from_checkpoint(COMMAND, args.checkpoint, state)
    save_weights(model, out)
    count = len(model.state_dict())
    print(f"wrote {out}: {state['run']['model']} (epoch {state['epoch']}), {count} tensors, {fmt}; load it with "
          f"refvit.models.load_weights(model, path) or, in PyTorch, model.load_state_dict(...)")
    return 0
