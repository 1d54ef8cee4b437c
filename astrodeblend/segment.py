"""Partial images of each galaxy: the segmentation of the seed paper.

The paper segments a blend "by the inverse of the blend": each galaxy keeps
the pixels of the blend where it is the brightest source, zero elsewhere,
and noise is added.  The network then restores the full galaxy from its
partial, noisy image.  `partial_images` does this either from the known
components of a simulated scene or, for real images, from a detection
segmentation map (`astrodeblend.detect.find_centers`).
"""

from __future__ import annotations

import numpy as np

from ._random import make_rng
from .errors import InvalidInputError
from .image import as_galaxy_image

__all__ = ["partial_images"]


def partial_images(blend, components=None, *, segmap=None, noise_sigma=0.02, seed=0):
    """Return the partial image of each galaxy of a blend.

    With ``components`` (the truth of a simulated scene), galaxy *i* keeps
    the blend's pixels where it is the brightest component (components
    summed over bands; ties go to the first galaxy, so galaxy A keeps the
    pixels where A >= B), zero elsewhere.  Without components, source *i*
    keeps the blend's pixels inside segment *i* of ``segmap`` (labels
    ``1..N``, e.g. ``find_centers(blend).segmap``).  Gaussian noise of
    standard deviation ``noise_sigma`` is then added to every partial image.

    Parameters
    ----------
    blend : `~astrodeblend.GalaxyImage` or array-like
        ``(C, H, W)`` or ``(H, W)`` blended image (masked pixels count as 0).
    components : array-like, optional
        ``(N, C, H, W)`` noiseless images of the galaxies.
    segmap : array-like of int, optional
        ``(H, W)`` segmentation map, used when ``components`` is None.
    noise_sigma : float, optional
        Standard deviation of the added noise (0 for none).
    seed : int, optional
        Seed of the noise (``numpy.random.default_rng``).

    Returns
    -------
    `numpy.ndarray`
        ``float32 (N, C, H, W)``.

    Raises
    ------
    InvalidInputError
        If neither ``components`` nor ``segmap`` is given or their shapes do
        not match the blend.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[[2.0, 1.0, 0.0]]]); b = np.array([[[0.0, 1.5, 3.0]]])
    >>> blend = np.maximum(a, b)
    >>> partial_images(blend, np.stack([a, b]), noise_sigma=0)[:, 0, 0]
    array([[2. , 0. , 0. ],
           [0. , 1.5, 3. ]], dtype=float32)
    """
    rng = make_rng(seed)
    data = as_galaxy_image(blend).filled(0.0)
    c, h, w = data.shape
    if noise_sigma is None or not noise_sigma >= 0:
        raise InvalidInputError(f"noise_sigma must be >= 0, not {noise_sigma!r}")
    if components is not None:
        truth = np.asarray(components, dtype=np.float32)
        if truth.ndim == 3 and c == 1:
            truth = truth[:, None]
        if truth.ndim != 4 or truth.shape[1:] != (c, h, w) or truth.shape[0] < 1:
            raise InvalidInputError(f"components must have shape (N, {c}, {h}, {w}), "
                                    f"not {truth.shape}")
        owner = truth.sum(axis=1).argmax(axis=0)
        n = truth.shape[0]
    elif segmap is not None:
        owner = np.asarray(segmap)
        if owner.shape != (h, w) or owner.dtype.kind not in "iu":
            raise InvalidInputError(f"segmap must be an integer ({h}, {w}) map, "
                                    f"not {owner.dtype} {owner.shape}")
        n = int(owner.max(initial=0))
        owner = owner - 1  # segment i -> galaxy i - 1; background -> -1
    else:
        raise InvalidInputError("partial_images needs components or a segmap")
    keep = owner[None] == np.arange(n)[:, None, None]
    partials = np.where(keep[:, None], data[None], np.float32(0.0)).astype(np.float32)
    if noise_sigma > 0:
        partials += rng.standard_normal(partials.shape, dtype=np.float32) * np.float32(noise_sigma)
    return partials
