"""`make_scene`: a scene of the protocol named."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ..image import GalaxyImage
from ._display import blend_paper, blend_reiman
from ._physical import blend_physical
from ._survey import blend_survey

#: Names of the blending protocols, as accepted by `make_scene`.
PROTOCOLS = ("paper", "reiman", "physical", "survey")


def make_scene(images, *, protocol, seed=0, **kwargs):
    """Make a blended scene with the named protocol.

    Parameters
    ----------
    images : sequence of `~astrodeblend.GalaxyImage` or array-like
        Galaxy A first; exactly two for ``paper`` and ``reiman``; any number
        (also none) for ``survey``.
    protocol : {'paper', 'reiman', 'physical', 'survey'}
        The blending protocol.
    seed : int, optional
        Seed of every random draw.
    **kwargs
        Options of `blend_paper`, `blend_reiman`, `blend_physical` or
        `blend_survey`.

    Returns
    -------
    Scene

    Raises
    ------
    InvalidInputError
        For an unknown protocol, a wrong number of images or bad options.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.zeros((1, 48, 48), np.float32); g[0, 22:26, 22:26] = 1
    >>> make_scene([g, g], protocol="reiman", seed=4).protocol
    'reiman'
    """
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"protocol must be one of {', '.join(PROTOCOLS)}, "
                                f"not {protocol!r}")
    if isinstance(images, (np.ndarray, GalaxyImage)) or not hasattr(images, "__len__"):
        raise InvalidInputError("images must be a list of galaxy images")
    images = list(images)
    try:
        if protocol == "survey":
            return blend_survey(images, seed=seed, **kwargs)
        if protocol == "physical":
            return blend_physical(images, seed=seed, **kwargs)
        n = kwargs.pop("n_galaxies", None)
        if len(images) != 2 or n not in (None, 2):
            raise InvalidInputError(f"protocol {protocol!r} blends exactly 2 galaxies, "
                                    f"got {n if n not in (None, 2) else len(images)}")
        function = blend_paper if protocol == "paper" else blend_reiman
        return function(images[0], images[1], seed=seed, **kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"protocol {protocol!r}: {exc}") from None
