"""Image-quality and shape metrics for deblended galaxies, and source matching.

Every metric compares one predicted galaxy image ``pred`` with its noiseless
ground truth ``truth``.  Both are ``(C, H, W)`` or ``(H, W)`` arrays of the
same shape.  Each metric can be computed on the values as given
(``normalize=None``, the default) or after dividing each image by its own
maximum (``normalize='max'``), as the BlendingToolKit and most deblending
papers do.  Max-normalisation hides any error in the total flux (a source
returned at half its brightness scores perfectly), so
`astrodeblend.evaluate.evaluate` reports both.

Conventions
-----------
- PSNR of two identical images is ``inf``.  Tables that average PSNR
  replace ``inf`` by `PSNR_CAP` (100 dB) first, so that one perfect answer
  does not turn a mean into ``inf``.
- Unless ``data_range`` is given, PSNR and SSIM use the range of the truth
  image (``truth.max() - truth.min()``; 1 for a constant truth, and always 1
  with ``normalize='max'``).
- Centroids and second moments use the positive part of the band sum, with
  0-based ``(x, y)`` pixel coordinates (``x`` = column).
- Ellipticity is the "distortion" of the second moments,
  ``e1 = (Qxx - Qyy) / (Qxx + Qyy)``, ``e2 = 2 Qxy / (Qxx + Qyy)``: for an
  elliptical Gaussian with axis ratio ``q`` it has modulus
  ``(1 - q**2) / (1 + q**2)``.

`match_sources` is the one routine that pairs true and found positions;
evaluation, tests and users all go through it.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .errors import InvalidInputError

__all__ = [
    "PSNR_CAP",
    "psnr",
    "ssim",
    "flux_error",
    "centroid",
    "centroid_error",
    "ellipticity",
    "ellipticity_error",
    "match_sources",
    "Matches",
]

#: Finite value (dB) that replaces an infinite PSNR (identical images) in tables.
PSNR_CAP = 100.0

_NORMALIZATIONS = (None, "none", "max")


def _as_array(image, name):
    """Return ``image`` as a float64 ``(C, H, W)`` array (a 2-D input gets C = 1)."""
    if hasattr(image, "data") and not isinstance(image, np.ndarray):  # NDData, GalaxyImage
        image = image.data
    array = np.asarray(image, dtype=float)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or 0 in array.shape:
        raise InvalidInputError(f"{name} must be a non-empty (H, W) or (C, H, W) array, "
                                f"got shape {array.shape}")
    return array


def _normalized(array, normalize):
    """Apply the ``normalize`` option to a ``(C, H, W)`` array."""
    if normalize not in _NORMALIZATIONS:
        raise InvalidInputError(f"normalize must be None or 'max', not {normalize!r}")
    if normalize == "max":
        peak = float(np.max(array))
        if peak > 0:
            return array / peak
    return array


def _pair(pred, truth, normalize):
    """Check and normalise a (pred, truth) pair."""
    pred = _as_array(pred, "pred")
    truth = _as_array(truth, "truth")
    if pred.shape != truth.shape:
        raise InvalidInputError(f"pred shape {pred.shape} does not match truth shape "
                                f"{truth.shape}")
    return _normalized(pred, normalize), _normalized(truth, normalize)


def _data_range(truth, data_range, normalize):
    if data_range is not None:
        data_range = float(data_range)
        if not data_range > 0:
            raise InvalidInputError(f"data_range must be positive, not {data_range}")
        return data_range
    if normalize == "max":
        return 1.0
    span = float(truth.max() - truth.min())
    return span if span > 0 else 1.0


def psnr(pred, truth, *, data_range=None, normalize=None):
    """Peak signal-to-noise ratio of ``pred`` against ``truth``, in dB.

    Parameters
    ----------
    pred, truth : array-like
        ``(C, H, W)`` or ``(H, W)`` images of the same shape.
    data_range : float, optional
        Peak-to-peak range of the values (1 for display images in [0, 1]).
        By default the range of ``truth`` (1 with ``normalize='max'``).
    normalize : {None, 'max'}, optional
        ``'max'`` divides each image by its own maximum first.

    Returns
    -------
    float
        ``10 log10(data_range**2 / MSE)``; ``inf`` when the images are
        identical (tables cap it at `PSNR_CAP`).

    Raises
    ------
    InvalidInputError
        If the shapes differ or an option is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((8, 8)); truth[4, 4] = 1.0
    >>> round(psnr(truth + 0.1, truth, data_range=1.0), 6)  # MSE = 0.01
    20.0
    >>> psnr(truth, truth)
    inf
    >>> round(psnr(0.5 * truth, truth), 3), psnr(0.5 * truth, truth, normalize="max")
    (24.082, inf)
    """
    from skimage.metrics import peak_signal_noise_ratio

    pred, truth = _pair(pred, truth, normalize)
    data_range = _data_range(truth, data_range, normalize)
    if np.array_equal(pred, truth):
        return float("inf")
    return float(peak_signal_noise_ratio(truth, pred, data_range=data_range))


def ssim(pred, truth, *, data_range=None, normalize=None):
    """Structural similarity index of ``pred`` against ``truth``.

    Computed with `skimage.metrics.structural_similarity` over the bands
    (``channel_axis=0``, the mean over bands) with a uniform 7x7
    window, or the largest odd window that fits a smaller image.

    Parameters
    ----------
    pred, truth : array-like
        ``(C, H, W)`` or ``(H, W)`` images of the same shape, at least
        3x3 pixels.
    data_range : float, optional
        Peak-to-peak range of the values; by default the range of ``truth``
        (1 with ``normalize='max'``).
    normalize : {None, 'max'}, optional
        ``'max'`` divides each image by its own maximum first.

    Returns
    -------
    float
        1 for identical images, less otherwise (about 0 for unrelated ones).

    Raises
    ------
    InvalidInputError
        If the shapes differ, the image is smaller than 3x3 or an option is
        invalid.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.random.default_rng(0).random((3, 16, 16))
    >>> ssim(truth, truth)
    1.0
    >>> ssim(np.zeros_like(truth), truth) < 0.01
    True
    """
    from skimage.metrics import structural_similarity

    pred, truth = _pair(pred, truth, normalize)
    data_range = _data_range(truth, data_range, normalize)
    side = min(truth.shape[1:])
    win_size = min(7, side if side % 2 else side - 1)
    if win_size < 3:
        raise InvalidInputError(f"ssim needs images of at least 3x3 pixels, got "
                                f"{truth.shape[1]}x{truth.shape[2]}")
    if np.array_equal(pred, truth):
        return 1.0
    return float(structural_similarity(truth, pred, data_range=data_range, channel_axis=0,
                                       win_size=win_size))


def flux_error(pred, truth, *, normalize=None):
    """Relative error of the total flux, ``(sum(pred) - sum(truth)) / sum(truth)``.

    Parameters
    ----------
    pred, truth : array-like
        ``(C, H, W)`` or ``(H, W)`` images of the same shape, in linear flux
        units (sums over all pixels and bands).
    normalize : {None, 'max'}, optional
        ``'max'`` divides each image by its own maximum first (this is what
        max-normalised benchmarks measure, and why they miss flux errors).

    Returns
    -------
    float
        Signed relative error: 0 for a perfect flux, ``s - 1`` for
        ``pred = s * truth``, -1 for an empty prediction.

    Raises
    ------
    InvalidInputError
        If the shapes differ or ``truth`` has no positive total flux.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.ones((2, 4, 4))
    >>> flux_error(1.25 * truth, truth)
    0.25
    >>> flux_error(1.25 * truth, truth, normalize="max")
    0.0
    """
    pred, truth = _pair(pred, truth, normalize)
    total = float(truth.sum())
    if not total > 0:
        raise InvalidInputError(f"truth has no positive total flux ({total}): "
                                "the relative flux error is undefined")
    return float((pred.sum() - total) / total)


def _moments(image, name):
    """Return (total, x, y, Qxx, Qyy, Qxy) of the positive part of the band sum."""
    plane = np.clip(_as_array(image, name).sum(axis=0), 0, None)
    total = float(plane.sum())
    if not total > 0:
        return 0.0, np.nan, np.nan, np.nan, np.nan, np.nan
    yy, xx = np.indices(plane.shape, dtype=float)
    x = float((plane * xx).sum() / total)
    y = float((plane * yy).sum() / total)
    dx, dy = xx - x, yy - y
    qxx = float((plane * dx * dx).sum() / total)
    qyy = float((plane * dy * dy).sum() / total)
    qxy = float((plane * dx * dy).sum() / total)
    return total, x, y, qxx, qyy, qxy


def centroid(image):
    """Flux-weighted centre ``(x, y)`` of the positive part of an image.

    Parameters
    ----------
    image : array-like
        ``(C, H, W)`` or ``(H, W)``; the bands are summed.

    Returns
    -------
    tuple of float
        0-based ``(x, y)``; ``(nan, nan)`` when no pixel is positive.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((5, 7)); image[1, 4] = 2.0; image[3, 4] = 2.0
    >>> centroid(image)
    (4.0, 2.0)
    """
    _, x, y, *_ = _moments(image, "image")
    return x, y


def centroid_error(pred, truth, *, normalize=None):
    """Distance in pixels between the flux-weighted centres of ``pred`` and ``truth``.

    Parameters
    ----------
    pred, truth : array-like
        ``(C, H, W)`` or ``(H, W)`` images of the same shape.
    normalize : {None, 'max'}, optional
        Accepted for symmetry with the other metrics; a centroid does not
        depend on the scale of an image.

    Returns
    -------
    float
        Euclidean distance (pixels); NaN when either image has no positive
        pixel.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((16, 16)); truth[5:8, 5:8] = 1.0
    >>> pred = np.roll(np.roll(truth, 3, axis=1), 4, axis=0)  # x + 3, y + 4
    >>> centroid_error(pred, truth)
    5.0
    """
    pred, truth = _pair(pred, truth, normalize)
    xp, yp = centroid(pred)
    xt, yt = centroid(truth)
    return float(np.hypot(xp - xt, yp - yt))


def ellipticity(image):
    """Ellipticity ``(e1, e2)`` from the unweighted second moments of an image.

    ``e1 = (Qxx - Qyy) / (Qxx + Qyy)`` and ``e2 = 2 Qxy / (Qxx + Qyy)`` with
    the moments of the positive part of the band sum about its centroid.
    A round source has ``(0, 0)``; an elliptical Gaussian with standard
    deviations ``a`` along x and ``b`` along y has ``e1 = (a**2 - b**2) /
    (a**2 + b**2)``.  Unweighted moments are sensitive to noise far from
    the source: use them on noiseless truths and deblended sources.

    Parameters
    ----------
    image : array-like
        ``(C, H, W)`` or ``(H, W)``; the bands are summed.

    Returns
    -------
    tuple of float
        ``(e1, e2)``; ``(nan, nan)`` when no pixel is positive or the
        source is a single pixel.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> gauss = np.exp(-0.5 * (((xx - 32) / 6.0) ** 2 + ((yy - 32) / 3.0) ** 2))
    >>> e1, e2 = ellipticity(gauss)
    >>> round(e1, 4), round(e2, 4), round((36 - 9) / (36 + 9), 4)
    (0.6, 0.0, 0.6)
    """
    _, _, _, qxx, qyy, qxy = _moments(image, "image")
    trace = qxx + qyy
    if not trace > 0:
        return np.nan, np.nan
    return float((qxx - qyy) / trace), float(2 * qxy / trace)


def ellipticity_error(pred, truth, *, normalize=None):
    """Modulus of the ellipticity difference, ``|e(pred) - e(truth)|``.

    Parameters
    ----------
    pred, truth : array-like
        ``(C, H, W)`` or ``(H, W)`` images of the same shape.
    normalize : {None, 'max'}, optional
        Accepted for symmetry with the other metrics; moments do not depend
        on the scale of an image.

    Returns
    -------
    float
        ``hypot(e1p - e1t, e2p - e2t)``; NaN when either ellipticity is
        undefined.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:48, :48]
    >>> round_ = np.exp(-0.5 * ((xx - 24) ** 2 + (yy - 24) ** 2) / 16)
    >>> ellipticity_error(round_, round_)
    0.0
    """
    pred, truth = _pair(pred, truth, normalize)
    e1p, e2p = ellipticity(pred)
    e1t, e2t = ellipticity(truth)
    return float(np.hypot(e1p - e1t, e2p - e2t))


#: Result of `match_sources`.
Matches = namedtuple("Matches", ["pairs", "distances", "unmatched_true", "unmatched_found"])
Matches.__doc__ = """Result of `match_sources`.

Attributes
----------
pairs : `numpy.ndarray`
    ``(K, 2)`` int array of ``(true_index, found_index)``, sorted by true index.
distances : `numpy.ndarray`
    ``(K,)`` distances of the pairs in pixels.
unmatched_true : `numpy.ndarray`
    Indices of true positions with no partner.
unmatched_found : `numpy.ndarray`
    Indices of found positions with no partner.
"""


def _as_xy(positions, name):
    array = np.asarray(positions, dtype=float)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim == 1 and array.shape[0] == 2:
        array = array[np.newaxis]
    if array.ndim != 2 or array.shape[1] != 2:
        raise InvalidInputError(f"{name} must be an (N, 2) array of (x, y), got shape "
                                f"{array.shape}")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{name} holds non-finite positions")
    return array


def match_sources(true_xy, found_xy, *, max_distance=5.0):
    """Pair true and found positions one-to-one (Hungarian algorithm).

    The pairing minimises the total distance among the assignments that
    pair as many positions as possible within ``max_distance``
    (`scipy.optimize.linear_sum_assignment` on the distance matrix, pairs
    further apart than ``max_distance`` forbidden).  Each position is used
    at most once.

    Parameters
    ----------
    true_xy : array-like
        ``(N, 2)`` true ``(x, y)`` pixel positions.
    found_xy : array-like
        ``(M, 2)`` found ``(x, y)`` pixel positions.
    max_distance : float, optional
        Largest distance (pixels) of a pair.

    Returns
    -------
    Matches
        ``pairs`` ``(K, 2)`` of ``(true_index, found_index)``, their
        ``distances``, ``unmatched_true`` and ``unmatched_found`` indices.

    Raises
    ------
    InvalidInputError
        If the positions are not ``(N, 2)`` finite arrays or
        ``max_distance`` is not positive.

    Examples
    --------
    >>> m = match_sources([[10, 10], [20, 10]], [[19, 11], [50, 50], [10.5, 10]])
    >>> m.pairs.tolist(), m.unmatched_true.tolist(), m.unmatched_found.tolist()
    ([[0, 2], [1, 0]], [], [1])
    """
    from scipy.optimize import linear_sum_assignment

    true_xy = _as_xy(true_xy, "true_xy")
    found_xy = _as_xy(found_xy, "found_xy")
    max_distance = float(max_distance)
    if not max_distance > 0:
        raise InvalidInputError(f"max_distance must be positive, not {max_distance}")
    n, m = len(true_xy), len(found_xy)
    pairs = np.zeros((0, 2), dtype=np.int64)
    distances = np.zeros(0)
    if n and m:
        dist = np.hypot(true_xy[:, None, 0] - found_xy[None, :, 0],
                        true_xy[:, None, 1] - found_xy[None, :, 1])
        allowed = dist <= max_distance
        # A forbidden pair costs more than any set of allowed pairs, so the
        # assignment first maximises the number of allowed pairs.
        forbidden = max_distance * (min(n, m) + 1) + 1.0
        rows, cols = linear_sum_assignment(np.where(allowed, dist, forbidden))
        keep = allowed[rows, cols]
        pairs = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)
        distances = dist[rows[keep], cols[keep]]
    unmatched_true = np.setdiff1d(np.arange(n), pairs[:, 0]).astype(np.int64)
    unmatched_found = np.setdiff1d(np.arange(m), pairs[:, 1]).astype(np.int64)
    return Matches(pairs, distances, unmatched_true, unmatched_found)
