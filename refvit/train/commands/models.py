"""``refvit models``: the registered models with their parameter counts and input sizes."""
from __future__ import annotations

COMMAND = "models"


def add_arguments(parser):
    parser.add_argument("--family", help="only this family (dinat, cswin, smt, dualvit, coatnet, ...)")
    parser.add_argument("--nano", action="store_true", help="only the small *_nano models for 32x32 inputs")


def rows(family=None, nano=False):
    """``(name, family, parameters, input size, description)`` per model, building each to count (shapes only:
    no initial values are drawn, which took most of the time)."""
    from refvit.models import list_models, model_info
    from refvit.nn.init import shapes_only
    from refvit.train.commands.common import build_model, parameter_count

    out = []
    for name in list_models(family):
        if nano and not name.endswith("_nano"):
            continue
        info = model_info(name)
        with shapes_only():
            count = parameter_count(build_model(name))
        out.append((name, info.family, count, info.img_size, info.description))
    return out


def format_table(table):
    header = ("model", "family", "parameters", "input", "description")
    lines = [(name, family, f"{count:,}", f"{size}x{size}", text) for name, family, count, size, text in table]
    widths = [max(len(str(row[i])) for row in [header] + lines) for i in range(4)]
    formatted = []
    for row in [header] + lines:
        cells = [str(row[0]).ljust(widths[0]), str(row[1]).ljust(widths[1]), str(row[2]).rjust(widths[2]),
                 str(row[3]).rjust(widths[3]), str(row[4])]
        formatted.append("  ".join(cells).rstrip())
    return "\n".join(formatted)


def run_from_args(args):
    from refvit.errors import UserError
    from refvit.models import list_models

    if args.family and not list_models(args.family):
        families = sorted({name for name in _families()})
        raise UserError(f"{COMMAND}: unknown family {args.family!r}; families: {', '.join(families) or 'none'}")
    table = rows(args.family, args.nano)
    if not table:
        print("no models are registered" + (" (*_nano)" if args.nano else ""))
        return 0
    print(format_table(table))
    return 0


def _families():
    from refvit.models import list_models, model_info

    return {model_info(name).family for name in list_models()}
