"""Seeded random generators shared by the scene makers (`blend`, `segment`).

Every random draw of astrodeblend comes from ``numpy.random.default_rng``
with an explicit seed, never from a global generator.
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import InvalidInputError


def _is_seed(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def make_rng(seed):
    """Return ``numpy.random.default_rng(seed)`` for an integer (or integer list) seed.

    Raises
    ------
    InvalidInputError
        If ``seed`` is not a non-negative integer or a non-empty list of them.
    """
    ok = _is_seed(seed) or (isinstance(seed, (list, tuple)) and bool(seed)
                            and all(_is_seed(s) for s in seed))
    if not ok:
        raise InvalidInputError(f"seed must be a non-negative integer, not {seed!r}")
    return np.random.default_rng(seed)


def json_seed(seed):
    """Return a seed as JSON-able data (an int or a list of ints)."""
    return [int(s) for s in seed] if isinstance(seed, (list, tuple)) else int(seed)
