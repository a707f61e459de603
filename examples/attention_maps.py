"""Draw where one query looks in an attention layer of a trained model, for a few test images.

    python examples/attention_maps.py --checkpoint runs/dinat_nano-digits/checkpoint.npz
    python examples/attention_maps.py --train-quick --model coatnet_nano --out runs/attention-coatnet
    python examples/attention_maps.py --checkpoint CKPT --list-layers
    python examples/attention_maps.py --checkpoint CKPT --layer levels.0.blocks.0.attn --query 2 5

The model is rebuilt from a ``checkpoint.npz`` written by ``refvit train`` (as ``refvit eval``
does). With ``--train-quick`` a model is first trained for a few batches into ``--out`` (well
under a minute on two cores; an existing checkpoint there is reused). One forward pass over the
chosen test images records the inputs of every attention module (each module's ``forward`` is
wrapped for the pass and restored after it); the attention weights of the chosen layer are then
recomputed from those inputs:

* ``NeighborhoodAttention2D`` (``nat_*``, ``dinat_*``): ``qkv`` and the ``na2d`` op's NumPy
  reference give the softmax weights over the query's ``k x k`` (dilated) neighbourhood, which
  are placed on the map at the keys' positions (``refvit.ops._neighborhood.axis_windows``);
* ``Attention2d`` (``coatnet_*``): ``softmax(scale q k^T + relative position bias)``, one row;
* ``LePEAttention`` branches of a CSWin block (``cswin_*``): ``softmax(scale q k^T)`` inside the
  query's vertical and horizontal stripes; the layer is the block's ``attns``, both branches.

Before drawing, the recomputation is checked against the module's own result (its output, or
the ``stripe_attention`` op's output at the query). Each row of the figure is one image: the
image with the query's patch outlined, the weights averaged over the heads, and a few heads,
drawn over the image. Default layer: the last one on the largest map; default query: the centre
token. CoAtNet has attention only in its last two stages: ``coatnet_nano`` at its 32x32 input
works there on 2x2 and 1x1 maps, so its default is a 2x2 map (a stage-3 block, each query over
all four tokens), the largest it has; the command says so when it draws a map that small. The
NAT, DiNAT and CSWin nano models attend from their first stage on (8x8 maps at 32x32). Needs
matplotlib, and scikit-learn for the digits (``pip install 'refvit[examples]'``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

from refvit import cli
from refvit.autograd import Tensor, no_grad
from refvit.backend import use_backend
from refvit.models import create_model
from refvit.nn.coatnet.attention import Attention2d
from refvit.nn.cswin import LePEAttention
from refvit.nn.nat import NeighborhoodAttention2D
from refvit.ops import na2d, stripe_attention
from refvit.ops._neighborhood import axis_windows
from refvit.testing import assert_close
from refvit.train import load_checkpoint

CHECK_TOLERANCE = dict(rtol=1e-4, atol=1e-5)  # float32 models: the same math in a different order


# ---- the model and the images


def host(value):
    """A NumPy array from a ``Tensor``/``Parameter``, a device array or an array."""
    if isinstance(value, Tensor):
        value = value.data
    return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value)


def load_run(path):
    """``(name, model in eval mode, checkpoint state)`` from a ``refvit train`` checkpoint."""
    state = load_checkpoint(path)
    try:
        name, model_kwargs = state["run"]["model"], state["info"]["model_kwargs"]
    except (KeyError, TypeError):
        raise ValueError(f"attention_maps: {path} was not written by refvit train (no model settings in it)") from None
    model = create_model(name, **model_kwargs)
    model.load_state_dict(state["model"])
    return name, model.eval(), state


def pick_test_images(state, count):
    """The first test image of each of the first ``count`` classes: ``(images, labels)``, not normalised."""
    from refvit.data import load_dataset

    info = state["info"]
    img_size = info["model_kwargs"]["img_size"]
    name = info["dataset"]
    named = name in ("digits", "shapes")
    dataset = load_dataset(name, size=img_size if isinstance(img_size, int) else img_size[0]) if named \
        else load_dataset(name)
    labels = dataset.test_labels
    first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)][:count]
    return dataset.test_images[first], labels[first]


# ---- recording the attention modules' inputs


def attention_layers(model):
    """``{layer name: [attention modules]}``: one module per layer, a CSWin block's branches together."""
    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, (NeighborhoodAttention2D, Attention2d)):
            layers[name] = [module]
        elif isinstance(module, LePEAttention):
            layers.setdefault(name.rsplit(".", 1)[0], []).append(module)
    return layers


@contextlib.contextmanager
def recording(modules):
    """Within the block, every call of a module in ``modules`` stores ``(inputs, output)`` as NumPy
    arrays in the yielded dict (by ``id(module)``); each module's own ``forward`` is put back after."""
    records = {}

    def wrap(module):
        original = module.forward

        def forward(*args, **kwargs):
            out = original(*args, **kwargs)
            records[id(module)] = ([host(a) for a in args], host(out))
            return out

        module.forward = forward  # an instance attribute shadows the class's forward

    for module in modules:
        wrap(module)
    try:
        yield records
    finally:
        for module in modules:
            del module.forward


# ---- recomputing one query's weights, per kind of layer


def neighborhood_weights(module, x, out, query):
    """``(B, heads, H, W)``: the na2d softmax of ``query`` placed at its neighbours' positions."""
    batch, height, width, _ = x.shape
    pad_h, pad_w = module.padding(height, width)  # small maps are zero-padded before qkv (see the module)
    x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    qkv = x @ host(module.qkv.weight).T + host(module.qkv.bias)
    heads, d = module.num_heads, module.head_dim
    q, k, v = qkv.reshape(batch, height + pad_h, width + pad_w, 3, heads, d).transpose(3, 0, 4, 1, 2, 5)
    rpb = None if module.rpb is None else host(module.rpb)
    attended, cache = na2d.forward(q, k, v, module.kernel_size, dilation=module.dilation, rpb=rpb,
                                   scale=module.scale, backend="numpy")
    merged = attended.transpose(0, 2, 3, 1, 4).reshape(batch, height + pad_h, width + pad_w, heads * d)
    projected = merged[:, :height, :width] @ host(module.proj.weight).T + host(module.proj.bias)
    assert_close(projected, out, name="NA output recomputed from its input", **CHECK_TOLERANCE)
    row, col = query
    key_rows = axis_windows(height + pad_h, module.kernel_size, module.dilation).keys[row]
    key_cols = axis_windows(width + pad_w, module.kernel_size, module.dilation).keys[col]
    weights = np.zeros((batch, heads, height + pad_h, width + pad_w), attended.dtype)
    kernel = module.kernel_size
    slots = cache.attn[:, :, row, col].reshape(batch, heads, kernel, kernel)  # slot u*k + w: key row u, column w
    weights[:, :, key_rows[:, None], key_cols[None, :]] = slots
    return weights[:, :, :height, :width]  # weights on padded tokens fall outside the image


def global_weights(module, x, out, query):
    """``(B, heads, H, W)``: row ``query`` of ``softmax(scale q k^T + bias)`` of a CoAtNet ``Attention2d``."""
    batch, height, width, _ = x.shape
    with no_grad():
        q, k, v = (host(part) for part in module.split_heads(module.qkv(Tensor(x))))  # (B, heads, N, d)
        bias = 0.0 if module.rel_pos is None else host(module.rel_pos.get_bias())  # (heads, N, N)
    logits = module.dim_head ** -0.5 * (q @ k.transpose(0, 1, 3, 2)) + bias
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    merged = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, height, width, -1)
    with no_grad():
        projected = host(module.proj(Tensor(merged)))
    assert_close(projected, out, name="attention output recomputed from its input", **CHECK_TOLERANCE)
    row, col = query
    return probs[:, :, row * width + col].reshape(batch, -1, height, width)


def stripe_weights(branch, q, k, v, query):
    """``(B, heads, H, W)``: the softmax of ``query`` over its stripe in one CSWin branch, zero elsewhere."""
    batch, height, width, _ = q.shape
    stripe_h, stripe_w = branch.stripe_size(height, width)
    if height % stripe_h or width % stripe_w:
        raise ValueError(f"attention_maps: maps the stripes do not divide are not drawn; got {height}x{width} "
                         f"with stripes {stripe_h}x{stripe_w}")
    heads, d = branch.num_heads, branch.head_dim
    q, k, v = (a.reshape(batch, height, width, heads, d).transpose(0, 3, 1, 2, 4) for a in (q, k, v))
    row, col = query
    top, left = row // stripe_h * stripe_h, col // stripe_w * stripe_w
    window = (slice(None), slice(None), slice(top, top + stripe_h), slice(left, left + stripe_w))
    logits = branch.scale * np.einsum("bhc,bhxyc->bhxy", q[:, :, row, col], k[window])
    probs = np.exp(logits - logits.max(axis=(2, 3), keepdims=True))
    probs /= probs.sum(axis=(2, 3), keepdims=True)
    attended, _ = stripe_attention.forward(q, k, v, (stripe_h, stripe_w), scale=branch.scale, backend="numpy")
    assert_close(np.einsum("bhxy,bhxyc->bhc", probs, v[window]), attended[:, :, row, col],
                 name="stripe attention at the query recomputed from its input", **CHECK_TOLERANCE)
    weights = np.zeros((batch, heads, height, width), probs.dtype)
    weights[window] = probs
    return weights


def layer_weights(modules, records, query):
    """``(B, heads, H, W)`` weights of ``query`` for one layer (a CSWin block: both branches' heads)."""
    maps = []
    for module in modules:
        inputs, out = records[id(module)]
        if isinstance(module, NeighborhoodAttention2D):
            maps.append(neighborhood_weights(module, inputs[0], out, query))
        elif isinstance(module, Attention2d):
            maps.append(global_weights(module, inputs[0], out, query))
        else:
            maps.append(stripe_weights(module, *inputs[:3], query))
    return np.concatenate(maps, axis=1)


SMALL_MAP = 4  # tokens: a map this small is named when drawn (CoAtNet's stage 3 at 32x32 is 2x2)


def map_size(modules, records):
    return records[id(modules[0])][0][0].shape[1:3]


# ---- drawing


def draw(images, labels, predictions, weights, query, title, png, max_heads=4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    count, heads, height, width = weights.shape
    shown = min(heads, max_heads) if heads > 1 else 0
    columns = 2 + shown
    figure, axes = plt.subplots(count, columns, figsize=(2.1 * columns + 0.6, 2.1 * count + 0.6), squeeze=False,
                                constrained_layout=True)
    img_h, img_w = images.shape[1:3]
    cell_h, cell_w = img_h / height, img_w / width
    for i in range(count):
        picture = np.clip(images[i], 0.0, 1.0)
        panels = [("image", None), ("mean of heads", weights[i].mean(axis=0))]
        panels += [(f"head {h}", weights[i, h]) for h in range(shown)]
        largest = max(float(weights[i].max()), 1e-12)  # one colour scale per row
        coloured = None
        for j, (name, attention) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(picture, extent=(0, img_w, img_h, 0))
            if attention is not None:  # tokens outside the query's window stay uncoloured
                coloured = ax.imshow(np.ma.masked_equal(attention, 0.0), cmap="inferno", alpha=0.75, vmin=0.0,
                                     vmax=largest, extent=(0, img_w, img_h, 0), interpolation="nearest")
            ax.add_patch(Rectangle((query[1] * cell_w, query[0] * cell_h), cell_w, cell_h, fill=False,
                                   edgecolor="cyan", linewidth=1.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"label {labels[i]}, predicted {predictions[i]}", fontsize=8)
        figure.colorbar(coloured, ax=axes[i, -1], fraction=0.08, pad=0.04).ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=9)
    figure.savefig(png, dpi=100)
    plt.close(figure)


# ---- the command


def quick_train(args):
    """Train ``args.model`` for a few batches into ``args.out`` unless a checkpoint is there:
    ``(its path, refvit train's exit status)``."""
    checkpoint = os.path.join(args.out, "checkpoint.npz")
    if os.path.exists(checkpoint):
        print(f"using the existing {checkpoint} (remove it to train again)")
        return checkpoint, 0
    status = cli.main(["train", "--model", args.model, "--out", args.out, "--epochs", str(args.quick_epochs),
                       "--limit-batches", str(args.quick_batches), "--batch-size", str(args.batch_size),
                       "--warmup-epochs", "0.5", *(["--backend", args.backend] if args.backend else [])])
    return checkpoint, status


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a checkpoint.npz written by refvit train")
    parser.add_argument("--train-quick", action="store_true", help="first train --model for a few batches into --out")
    parser.add_argument("--model", default="dinat_nano",
                        help="model for --train-quick (default: dinat_nano; coatnet_nano attends only on 2x2 and "
                             "1x1 maps at its 32x32 input, and the 2x2 one is drawn)")
    parser.add_argument("--out", help="run folder for --train-quick (default: runs/attention-MODEL)")
    parser.add_argument("--quick-epochs", type=int, default=4, help="epochs of --train-quick (default: 4)")
    parser.add_argument("--quick-batches", type=int, default=15,
                        help="batches per epoch of --train-quick (default: 15)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of --train-quick (default: 64)")
    parser.add_argument("--backend", help="backend of --train-quick (default: refvit train's)")
    parser.add_argument("--layer", help="attention layer to draw (default: the last one on the largest map; see "
                                        "--list-layers)")
    parser.add_argument("--list-layers", action="store_true",
                        help="print the attention layers and their maps, then stop")
    parser.add_argument("--query", type=int, nargs=2, metavar=("ROW", "COL"), help="query token on the layer's map "
                        "(default: the centre)")
    parser.add_argument("--images", type=int, default=4, help="test images, one per class (default: 4)")
    parser.add_argument("--png", help="the figure (default: attention-LAYER.png next to the checkpoint)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.train_quick:
        parser.error("give --checkpoint or --train-quick")
    if args.images < 1:
        parser.error(f"'--images' must be at least 1; got {args.images}")
    if args.train_quick and args.out is None:
        args.out = os.path.join("runs", f"attention-{args.model}")
    return args


def main(argv=None):
    args = parse_args(argv)
    checkpoint, status = quick_train(args) if args.train_quick else (args.checkpoint, 0)
    if status:
        return status
    try:
        name, model, state = load_run(checkpoint)
    except (FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    layers = attention_layers(model)
    if not layers:
        print(f"attention_maps: {name} has no attention layer this example can draw", file=sys.stderr)
        return 2
    images, labels = pick_test_images(state, args.images)
    mean, std = np.asarray(state["info"]["mean"]), np.asarray(state["info"]["std"])
    normalised = ((images - mean) / std).astype(images.dtype)
    modules = [module for group in layers.values() for module in group]
    with use_backend("numpy"), no_grad(), recording(modules) as records:
        predictions = host(model(Tensor(normalised))).argmax(axis=1)
    sizes = {layer: tuple(map_size(group, records)) for layer, group in layers.items()}
    if args.list_layers:
        for layer, size in sizes.items():
            print(f"{layer}: {type(layers[layer][0]).__name__} on a {size[0]}x{size[1]} map")
        return 0
    largest = max(h * w for h, w in sizes.values())
    layer = args.layer or [candidate for candidate, (h, w) in sizes.items() if h * w == largest][-1]
    if layer not in layers:
        print(f"attention_maps: unknown layer {layer!r}; {name} has {', '.join(layers)}", file=sys.stderr)
        return 2
    height, width = sizes[layer]
    query = tuple(args.query) if args.query else (height // 2, width // 2)
    if not (0 <= query[0] < height and 0 <= query[1] < width):
        print(f"attention_maps: '--query' must lie on the {height}x{width} map of {layer}; got {query}",
              file=sys.stderr)
        return 2
    weights = layer_weights(layers[layer], records, query)
    if height * width <= SMALL_MAP:
        print(f"{layer} attends on a {height}x{width} map ({height * width} tokens per query): the largest "
              f"attention map {name} has at {images.shape[1]}x{images.shape[2]}" if height * width == largest
              else f"{layer} attends on a {height}x{width} map; {name} has larger ones (--list-layers)")
    png = args.png or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), f"attention-{layer}.png")
    title = f"{name} (epoch {state['epoch']}), {layer}\nquery {query} on the {height}x{width} map"
    draw(images, labels, predictions, weights, query, title, png)
    print(f"{layer} of {name}: query {query}, {weights.shape[1]} head(s), {len(images)} image(s) -> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
