"""Modules that bench wrappers build once per configuration, with seeded parameters."""
from __future__ import annotations

from refvit.nn import random


def built_once(cache, key, build):
    """``cache[key]``, made by ``build()`` on first use with ``refvit.nn``'s random stream seeded at 0
    (the stream is put back as it was afterwards), so every run times the same parameters."""
    if key not in cache:
        state = random.get_state()
        random.seed(0)
        try:
            cache[key] = build()
        finally:
            random.set_state(state)
    return cache[key]
