"""The ``refvit train``, ``refvit eval`` and ``refvit models`` subcommands (one module each,
with ``add_arguments(parser)`` and ``run_from_args(args)``; shared pieces in ``common``)."""
