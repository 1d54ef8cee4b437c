"""Galaxies assigned to the train, validation and test splits by a stable hash of their id."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from ..errors import InvalidInputError


# --------------------------------------------------------------------- splits
def _check_fractions(fractions, name="split"):
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be three fractions, not {fractions!r}") from None
    if (len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values)
            or abs(sum(values) - 1.0) > 1e-6):
        raise InvalidInputError(f"{name} must be three fractions >= 0 adding up to 1, "
                                f"not {fractions!r}")
    return values


def _unit_hash(galaxy_id):
    """Map an id to [0, 1) with SHA-256 of its decimal string (stable across runs)."""
    digest = hashlib.sha256(str(int(galaxy_id)).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_galaxies(ids, fractions=(0.8, 0.1, 0.1)):
    """Assign galaxies to the train, validation and test splits by a stable hash of their id.

    Each id is mapped to a number in [0, 1) by the SHA-256 of its decimal
    string; it goes to ``train`` below ``fractions[0]``, to ``validation``
    below ``fractions[0] + fractions[1]`` and to ``test`` otherwise.  The
    assignment of a galaxy depends only on its id and the fractions, not on
    a seed or on the other ids, so the held-out galaxies never change.

    Parameters
    ----------
    ids : sequence of int
        Galaxy ids.
    fractions : (float, float, float), optional
        Expected fractions of train, validation and test galaxies (sum 1).

    Returns
    -------
    dict
        ``{'train': ids, 'validation': ids, 'test': ids}``, each an
        ``int64`` array in the order of ``ids``.

    Raises
    ------
    InvalidInputError
        If the fractions are not three non-negative numbers adding up to 1
        or an id is not an integer.

    Examples
    --------
    >>> parts = split_galaxies(range(100000, 101000))
    >>> {name: len(part) for name, part in parts.items()}
    {'train': 837, 'validation': 83, 'test': 80}
    >>> int(split_galaxies([100123])["train"][0])  # the same wherever it appears
    100123
    """
    lo, mid, _ = _check_fractions(fractions)
    mid += lo
    try:
        array = np.array([int(i) for i in ids], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError("ids must be integers") from None
    u = np.array([_unit_hash(i) for i in array], dtype=np.float64)
    return {"train": array[u < lo], "validation": array[(u >= lo) & (u < mid)],
            "test": array[u >= mid]}
