"""The `Scene` that every blending protocol returns, and the checks of their inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..image import GalaxyImage, as_galaxy_image

#: Size of a Galaxy Zoo image: the frame in which crops and shifts are defined.
REFERENCE_SIZE = 424

#: Exponent that undoes the display gamma of JPG/PNG images.
DISPLAY_GAMMA = 2.2


@dataclass(repr=False)
class Scene:
    """A blended scene and its ground truth.

    Attributes
    ----------
    blend : `~astrodeblend.GalaxyImage`
        The blended image ``(C, H, W)``, with the WCS (resampled to the
        scene's pixel grid), bands and header of galaxy A, and the header
        card ``PROTOCOL``.
    components : `numpy.ndarray`
        ``float32 (N, C, H, W)``: the noiseless image of each galaxy, in the
        same value space as ``blend``.
    centers : `numpy.ndarray`
        ``float64 (N, 2)``: 0-based ``(x, y)`` centre of each galaxy (and star).
    protocol : str
        ``'paper'``, ``'reiman'``, ``'physical'`` or ``'survey'``.
    params : dict
        JSON-serialisable record of the settings and of every random draw.
    partials : `numpy.ndarray` or None
        ``float32 (N, C, H, W)`` noisy partial images (``paper`` only).

    Examples
    --------
    >>> import numpy as np
    >>> from astrodeblend.blend import blend_reiman
    >>> a = np.zeros((1, 48, 48), np.float32); a[0, 20:28, 20:28] = 1
    >>> scene = blend_reiman(a, a, seed=1)
    >>> scene.n_sources, scene.blend.shape, scene.components.shape
    (2, (1, 9, 9), (2, 1, 9, 9))
    """

    blend: GalaxyImage
    components: np.ndarray
    centers: np.ndarray
    protocol: str
    params: dict
    partials: np.ndarray | None = None

    @property
    def n_sources(self):
        """Number of sources (galaxies and, in ``survey`` scenes, stars) in the scene."""
        return int(self.components.shape[0])

    def __repr__(self):
        return (f"<Scene protocol={self.protocol!r} n_sources={self.n_sources} "
                f"shape={self.blend.shape} seed={self.params.get('seed')!r}>")


# ----------------------------------------------------------------- helpers
def _coerce(images, names):
    """Return the inputs as GalaxyImages of one shape, or raise InvalidInputError."""
    out = []
    for name, image in zip(names, images, strict=True):
        try:
            out.append(as_galaxy_image(image))
        except InvalidInputError as exc:
            raise InvalidInputError(f"galaxy {name}: {exc}") from None
    first = out[0]
    for name, image in zip(names[1:], out[1:], strict=True):
        if image.n_bands != first.n_bands:
            raise InvalidInputError(
                f"galaxy {name} has {image.n_bands} bands but galaxy {names[0]} has "
                f"{first.n_bands}: all images of a scene need the same bands")
        if image.shape != first.shape:
            raise InvalidInputError(
                f"galaxy {name} has shape {image.shape} but galaxy {names[0]} has "
                f"{first.shape}: all images of a scene need the same shape")
    return out


def _is_display(image):
    return bool(image.meta.get("ADBDISP", False))


def _galaxy_names(n):
    return [chr(ord("A") + i) if i < 26 else f"#{i}" for i in range(n)]


def _pair(value, name):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a (low, high) pair, not {value!r}") from None
    return lo, hi
