"""Sky level, detection image, and galaxy centres with photutils.

`background_and_noise` is the one robust (sigma-clipped) sky estimate of
astrodeblend: the ``physical`` blending protocol, the detection and the
deblender all use it.  `find_centers` detects and deblends sources on a
noise-weighted band sum (`detection_image`) with
`photutils.segmentation` and returns a catalog table and an integer
segmentation map whose labels match the catalog ``id`` column.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np

from .errors import InvalidInputError
from .image import as_galaxy_image

__all__ = ["Detections", "Sky", "background_and_noise", "detection_image", "estimate_sky",
           "find_centers", "find_groups", "find_no_data", "split_group", "CATALOG_COLUMNS"]

#: Columns of the catalog that `find_centers` returns, in order.
CATALOG_COLUMNS = ("id", "x_centroid", "y_centroid", "ra", "dec", "flux", "bbox_xmin",
                   "bbox_xmax", "bbox_ymin", "bbox_ymax", "area")


class Detections(NamedTuple):
    """What `find_centers` found.

    Attributes
    ----------
    catalog : `~astropy.table.Table`
        One row per source: ``id`` (1..N), ``x_centroid``, ``y_centroid``
        (0-based pixels), ``ra``, ``dec`` (degrees, NaN without a celestial
        WCS), ``flux`` (``(N, C)``: background-subtracted sum of each band in
        the source's segment), ``bbox_xmin``, ``bbox_xmax``, ``bbox_ymin``,
        ``bbox_ymax`` (inclusive pixel bounds) and ``area`` (pixels).
    segmap : `numpy.ndarray`
        ``int32 (H, W)``: 0 for the background, ``id`` inside each source.
    segment_image : `photutils.segmentation.SegmentationImage` or None
        The photutils segmentation image (None when nothing was found).
    """

    catalog: object
    segmap: np.ndarray
    segment_image: object = None


def background_and_noise(image, *, sigma=3.0, maxiters=5, max_pixels=2 ** 16,
                         mask_sources=False):
    """Return the sigma-clipped sky level and noise of each band.

    The median and standard deviation of the pixels that survive iterative
    ``sigma`` clipping (`astropy.stats.sigma_clipped_stats`), per band.
    Masked and non-finite pixels are ignored.  Bands with more than
    ``max_pixels`` pixels are evaluated on a regular sub-grid (every
    *k*-th row and column) of about ``max_pixels`` pixels, which gives the
    same statistics to a fraction of a percent at a fraction of the cost.

    In a small stamp filled by galaxies, clipping alone leaves their faint
    wings in the "sky" and biases the level up.  With ``mask_sources`` the
    pixels of sources (band-combined 3x3 signal-to-noise above 2 after a
    first estimate, grown by 3 pixels) are left out and the statistics are
    computed again on the rest; up to three such passes, each against the
    truer sky of the last, as long as a tenth of the pixels remain.

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage` or array-like
        ``(H, W)`` or ``(C, H, W)`` pixels.
    sigma : float, optional
        Clipping threshold in standard deviations.
    maxiters : int, optional
        Maximum number of clipping iterations.
    max_pixels : int or None, optional
        Sub-sample larger bands to about this many pixels; None uses all.
    mask_sources : bool, optional
        Leave the pixels of detected sources out (see above).

    Returns
    -------
    background, noise : `numpy.ndarray`
        ``float64 (C,)`` each.  A band without valid pixels gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sky = 5 + rng.normal(0, 2, size=(2, 100, 100))
    >>> background, noise = background_and_noise(sky)
    >>> np.round(background, 1), np.round(noise, 0)
    (array([5., 5.]), array([2., 2.]))
    """
    image = as_galaxy_image(image)
    data = image.data
    if image.mask is not None:
        data = np.where(image.mask, np.float32(np.nan), data)
    h, w = data.shape[-2:]
    if max_pixels is not None and h * w > max_pixels:
        step = int(math.ceil(math.sqrt(h * w / max_pixels)))
        data = data[:, ::step, ::step]
    median, std = _clipped_stats(data, sigma=sigma, maxiters=maxiters)
    if mask_sources:
        from scipy.ndimage import binary_dilation, uniform_filter

        for _ in range(3):  # each pass finds fainter wings against a truer sky
            noise = _safe_noise(std, data)
            with warnings.catch_warnings():
                # a band without valid pixels has a NaN level; its S/N is NaN
                warnings.filterwarnings("ignore", category=RuntimeWarning)
                snr = sum(uniform_filter(np.nan_to_num(plane - m), size=3) / (n / 3)
                          for plane, m, n in zip(data, median, noise, strict=True))
            sources = binary_dilation(snr / np.sqrt(len(data)) > 2.0, iterations=3)
            if (~sources).mean() < 0.1:
                break
            sky = np.where(sources[None], np.float32(np.nan), data)
            median, std = _clipped_stats(sky, sigma=sigma, maxiters=maxiters)
    return median, std


def _clipped_stats(data, *, sigma=3.0, maxiters=5, counts=False):
    """Sigma-clipped median and standard deviation of each plane of ``data``.

    The statistics of `astropy.stats.sigma_clipped_stats` with
    ``axis=(1, 2)``, ``cenfunc="median"`` and ``stdfunc="std"``: pixels more
    than ``sigma`` standard deviations from the median are left out, again
    and again until none is (at most ``maxiters`` times).  Each plane is
    sorted once; the pixels kept are then always a run of the sorted values,
    found by bisection, with their sums from cumulative sums, so that an
    iteration costs a few operations instead of passes over the pixels.
    Non-finite pixels are ignored; a plane without any gives NaN.  With
    ``counts``, the number of pixels kept in each plane is returned too.
    """
    planes = np.asarray(data).reshape(len(data), -1)
    median = np.full(len(planes), np.nan)
    std = np.full(len(planes), np.nan)
    kept_pixels = np.zeros(len(planes), dtype=np.int64)
    for i, (values, shift, sums, squares) in enumerate(_sorted_runs(planes)):
        if not values.size:
            continue
        lo, hi = 0, values.size
        for iteration in range(maxiters + 1):
            n = hi - lo
            middle = lo + n // 2
            centre = values[middle] if n % 2 else 0.5 * (values[middle - 1] + values[middle])
            mean = (sums[hi] - sums[lo]) / n
            spread = math.sqrt(max((squares[hi] - squares[lo]) / n - mean * mean, 0.0))
            if iteration == maxiters:
                break
            kept = (int(np.searchsorted(values, centre - sigma * spread, side="left")),
                    int(np.searchsorted(values, centre + sigma * spread, side="right")))
            if kept == (lo, hi) or kept[1] <= kept[0]:
                break
            lo, hi = kept
        median[i] = centre + shift
        std[i] = spread
        kept_pixels[i] = hi - lo
    return (median, std, kept_pixels) if counts else (median, std)


def _sorted_runs(planes, chunk=2 ** 18):
    """Yield `_sorted_sums` of each plane; planes without a non-finite value a block at once.

    A block of whole planes (about ``chunk`` values) takes one sort and one
    pair of cumulative sums, as each plane alone would give them.
    """
    step = max(1, chunk // max(planes.shape[1], 1))
    for start in range(0, len(planes), step):
        block = planes[start:start + step]
        if not (block.size and np.isfinite(block).all()):
            yield from (_sorted_sums(plane) for plane in block)
            continue
        values = np.sort(block, axis=1).astype(np.float64)
        shifts = values[:, values.shape[1] // 2].copy()
        values -= shifts[:, None]  # sums about the middle keep their precision
        sums = np.zeros((len(values), values.shape[1] + 1))
        squares = np.zeros_like(sums)
        np.cumsum(values, axis=1, out=sums[:, 1:])
        np.cumsum(values * values, axis=1, out=squares[:, 1:])
        yield from zip(values, shifts, sums, squares, strict=True)


def _sorted_sums(plane):
    """Return a plane's finite values sorted, less the middle one, it and their cumulative sums."""
    values = np.sort(plane[np.isfinite(plane)]).astype(np.float64)
    if not values.size:
        return values, 0.0, None, None
    shift = values[values.size // 2]
    values -= shift  # sums about the middle keep their precision
    sums = np.concatenate([[0.0], np.cumsum(values)])
    squares = np.concatenate([[0.0], np.cumsum(values * values)])
    return values, shift, sums, squares


def _safe_noise(noise, data=None):
    """Replace zero / non-finite noise levels (noiseless simulations) by a usable value.

    With ``data`` (the ``(C, H, W)`` planes the levels were measured on), a
    band without noise gets the noise of its values' quantisation, the
    smallest step between them over sqrt(12): an 8-bit PNG whose sky is
    exactly 0 has 1/255/sqrt(12) of its range, not 1, which would leave
    every galaxy of its 0-1 values below the detection limit.  Otherwise
    (or when the band holds one value) the smallest good level of the
    other bands, else 1.
    """
    noise = np.array(noise, dtype=np.float64)
    good = np.isfinite(noise) & (noise > 0)
    if good.all():
        return noise
    fallback = noise[good].min() if good.any() else 1.0
    for i in np.flatnonzero(~good):
        step = _quantum(data[i]) if data is not None and i < len(data) else None
        noise[i] = step / math.sqrt(12.0) if step else fallback
    return noise


def _quantum(plane, max_values=2 ** 16):
    """Return the smallest positive step between the finite values of ``plane`` (or None)."""
    values = np.asarray(plane, dtype=np.float64).ravel()
    if values.size > max_values:
        values = values[::int(math.ceil(values.size / max_values))]
    values = np.unique(values[np.isfinite(values)])
    if values.size < 2:
        return None
    step = float(np.diff(values).min())
    return step if step > 0 else None


def _spatial_mask(mask):
    """``(H, W)``: the pixels that a band with data masks (``mask`` is ``(C, H, W)``).

    A band without one usable pixel (a filter that is missing) masks none of
    the other bands' pixels; when no band has any, every pixel is masked.
    """
    mask = np.asarray(mask, dtype=bool)
    dead = mask.all(axis=(1, 2))
    return mask[~dead].any(axis=0) if not dead.all() else np.ones(mask.shape[1:], dtype=bool)


def detection_image(image):
    """Return the noise-weighted sum of the background-subtracted bands.

    Each band has its sigma-clipped sky level subtracted and is divided by
    its sigma-clipped noise (`background_and_noise`); the bands are then
    summed, so that every band counts by its signal-to-noise ratio.
    Masked pixels are 0.

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage` or array-like
        ``(H, W)`` or ``(C, H, W)`` pixels.

    Returns
    -------
    `numpy.ndarray`
        ``float32 (H, W)``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> data = rng.normal(0, 1, size=(3, 50, 50)); data[:, 25, 25] += 20
    >>> det = detection_image(data)
    >>> det.shape, bool(det[25, 25] > 50)
    ((50, 50), True)
    """
    image = as_galaxy_image(image)
    background, noise = background_and_noise(image)
    background = np.nan_to_num(background)
    data = image.filled(0.0)
    noise = _safe_noise(noise, data)
    weights = (1.0 / noise).astype(np.float32)
    det = np.einsum("chw,c->hw", data - background.astype(np.float32)[:, None, None], weights)
    if image.mask is not None:
        det[_spatial_mask(image.mask)] = 0.0
    return det.astype(np.float32, copy=False)


def _empty_catalog(n_bands):
    from astropy.table import Table

    columns = [np.zeros(0, dtype=np.int64)]
    columns += [np.zeros(0, dtype=np.float64) for _ in range(4)]
    columns.append(np.zeros((0, n_bands), dtype=np.float64))
    columns += [np.zeros(0, dtype=np.int64) for _ in range(5)]
    return Table(columns, names=CATALOG_COLUMNS)


def find_centers(image, *, n_sigma=3.0, n_pixels=10, deblend=True, n_levels=32,
                 contrast=0.001, smooth_fwhm=2.0, mask=None, deblend_at=None):
    """Detect and deblend the galaxies of an image and measure their centres.

    The `detection_image` is smoothed with a Gaussian of FWHM
    ``smooth_fwhm`` pixels; sources are the groups of at least ``n_pixels``
    connected pixels above ``n_sigma`` times the detection image's noise
    (`photutils.segmentation.detect_sources`), optionally split by
    multi-threshold deblending (`photutils.segmentation.deblend_sources`).
    Centroids are measured with `photutils.segmentation.SourceCatalog` on
    the smoothed detection image.

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage` or array-like
        ``(H, W)`` or ``(C, H, W)`` pixels, any number of bands.
    n_sigma : float, optional
        Detection threshold above the sky, in units of the detection image's
        noise.
    n_pixels : int, optional
        Minimum number of connected pixels of a source (and of a deblended
        part).
    deblend : bool, optional
        Split overlapping sources.
    n_levels : int, optional
        Number of multi-thresholding levels of the deblending.
    contrast : float, optional
        Fraction of a source's flux that a deblended part must have.
    smooth_fwhm : float or None, optional
        FWHM in pixels of the Gaussian smoothing before detection; None or 0
        for none.
    mask : array-like of bool, optional
        ``(H, W)`` True where pixels are to be ignored (added to the
        image's own mask).
    deblend_at : sequence of (float, float), optional
        ``(x, y)`` pixels: deblend only the sources covering them (or, for
        a pixel in no source, the source nearest to it); the others stay
        whole.  Deblending is the costly step, and a crowded cutout whose
        central galaxy alone matters is much faster this way.  None (the
        default) deblends every source.

    Returns
    -------
    Detections
        ``catalog`` (see `Detections`), ``segmap`` and ``segment_image``.
        When nothing is found the catalog is empty (with all its columns)
        and the map is all zeros.

    Raises
    ------
    InvalidInputError
        If the image or the mask cannot be used, or an option is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> rng = np.random.default_rng(0)
    >>> data = (np.exp(-((xx - 20) ** 2 + (yy - 30) ** 2) / 20.0)
    ...         + np.exp(-((xx - 45) ** 2 + (yy - 35) ** 2) / 20.0)
    ...         + rng.normal(0, 0.01, (64, 64)))
    >>> found = find_centers(data)
    >>> len(found.catalog), found.segmap.shape
    (2, (64, 64))
    >>> [round(float(x)) for x in found.catalog["x_centroid"]]
    [20, 45]
    """
    from photutils.segmentation import (
        SourceCatalog,
        deblend_sources,
        detect_sources,
    )
    from photutils.utils import NoDetectionsWarning
    from scipy.ndimage import gaussian_filter, sum_labels

    image = as_galaxy_image(image)
    if not n_sigma > 0:
        raise InvalidInputError(f"n_sigma must be > 0, not {n_sigma!r}")
    if not isinstance(n_pixels, (int, np.integer)) or n_pixels < 1:
        raise InvalidInputError(f"n_pixels must be a positive integer, not {n_pixels!r}")
    if not isinstance(n_levels, (int, np.integer)) or n_levels < 1:
        raise InvalidInputError(f"n_levels must be a positive integer, not {n_levels!r}")
    if not 0 <= contrast <= 1:
        raise InvalidInputError(f"contrast must be in [0, 1], not {contrast!r}")
    c, h, w = image.shape
    bad = np.zeros((h, w), dtype=bool) if image.mask is None else _spatial_mask(image.mask)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise InvalidInputError(f"mask has shape {mask.shape}, expected {(h, w)}")
        bad = bad | mask
    det = detection_image(image)
    det[bad] = 0.0
    det_bkg, det_noise = background_and_noise(np.where(bad, np.nan, det))
    threshold = float(np.nan_to_num(det_bkg[0])) + n_sigma * float(_safe_noise(det_noise)[0])
    smoothed = det if not smooth_fwhm else gaussian_filter(
        det, smooth_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0))), mode="constant")
    smoothed = np.asarray(smoothed, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segm = detect_sources(smoothed, threshold, int(n_pixels), mask=bad if bad.any() else None)
    if segm is None:
        return Detections(_empty_catalog(c), np.zeros((h, w), dtype=np.int32), None)
    if deblend:
        labels = None if deblend_at is None else _labels_at(segm.data, deblend_at)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The deblending mode of one or more")
            segm = deblend_sources(smoothed, segm, int(n_pixels), n_levels=int(n_levels),
                                   contrast=float(contrast), progress_bar=False,
                                   labels=labels)
    segm.relabel_consecutive()
    catalog = SourceCatalog(det, segm, convolved_data=smoothed,
                            mask=bad if bad.any() else None)
    labels = np.asarray(catalog.labels, dtype=np.int64)
    x = np.asarray(catalog.x_centroid, dtype=np.float64)
    y = np.asarray(catalog.y_centroid, dtype=np.float64)
    ra, dec = image.pixel_to_radec(x, y)
    segmap = np.asarray(segm.data, dtype=np.int32)
    background, _ = background_and_noise(image)
    data = image.filled(0.0) - np.nan_to_num(background).astype(np.float32)[:, None, None]
    flux = np.stack([sum_labels(band, segmap, index=labels) for band in data], axis=1)
    from astropy.table import Table

    area = np.asarray(getattr(catalog.area, "value", catalog.area)).astype(np.int64)
    columns = [labels, x, y, ra, dec, flux.astype(np.float64)]
    columns += [np.asarray(getattr(catalog, name), dtype=np.int64)
                for name in ("bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax")]
    table = Table([*columns, area], names=CATALOG_COLUMNS)
    return Detections(table, segmap, segm)


def _labels_at(segmap, points):
    """Labels of ``segmap`` under ``(x, y)`` points (the nearest label for a point in none)."""
    h, w = segmap.shape
    ys, xs = np.nonzero(segmap)
    labels = set()
    for x, y in points:
        col, row = int(round(x)), int(round(y))
        if 0 <= row < h and 0 <= col < w and segmap[row, col]:
            labels.add(int(segmap[row, col]))
        elif len(ys):
            nearest = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))
            labels.add(int(segmap[ys[nearest], xs[nearest]]))
    return sorted(labels)


class Sky(NamedTuple):
    """What `estimate_sky` measured.

    Attributes
    ----------
    level : `numpy.ndarray`
        ``float32 (C, H, W)`` sky level (constant planes unless a 2-D
        background was fitted).
    noise : `numpy.ndarray`
        ``float64 (C,)`` sigma-clipped standard deviation of the sky pixels
        (in a frame filled by sources, the noise of pixel differences).
    method : str
        How the level was found, for the ``HISTORY`` cards.
    source_mask : `numpy.ndarray`
        ``bool (H, W)``: the pixels left out as sources.
    filled : bool
        Whether the frame was found filled by sources (no sky to clip:
        the level is that of its faintest outskirts).
    """

    level: np.ndarray
    noise: np.ndarray
    method: str
    source_mask: np.ndarray
    filled: bool = False


def _grid_step(h, w, limit=2 ** 14):
    """Step of the regular grid that samples about ``limit`` of ``h x w`` pixels."""
    return max(int(math.ceil(math.sqrt(h * w / limit))), 1)


def _sample_pixels(keep, limit=2 ** 14):
    """Rows and columns of a regular subsample of the ``keep`` pixels, about ``limit`` of them.

    A grid of every ``step``-th row and column where it holds its share of
    the pixels kept; where it does not (a mask of every other row, which a
    grid of step 2 sees whole), every ``k``-th kept pixel in scan order.
    """
    h, w = keep.shape
    step = _grid_step(h, w, limit)
    grid = keep[::step, ::step]
    n_keep = int(np.count_nonzero(keep))
    if step == 1 or np.count_nonzero(grid) >= 0.5 * n_keep / step ** 2:
        rows, cols = np.nonzero(grid)
        return rows * step, cols * step
    index = np.flatnonzero(keep)[::max(int(math.ceil(n_keep / limit)), 1)]
    return index // w, index % w


def _clipped(planes, mask):
    """Sigma-clipped median and standard deviation of each plane outside ``mask``."""
    h, w = planes.shape[-2:]
    # a regular subsample of at most about 2**14 pixels: the median's random
    # error is 0.01 sigma, and the cost no longer grows with the frame
    rows, cols = _sample_pixels(~mask)
    median, std = _clipped_stats(planes[:, rows, cols], sigma=3.0, maxiters=10)
    # a noiseless band: the quantisation of all its values (its sky may hold one value)
    step = _grid_step(h, w)
    return np.nan_to_num(median), _safe_noise(std, planes[:, ::step, ::step])


def _snr(data, level, noise):
    """Band-combined signal-to-noise ``(H, W)`` of ``data`` above ``level`` (noise 1 per pixel)."""
    snr = np.einsum("chw,c->hw", data - level, 1.0 / noise)
    snr /= math.sqrt(len(noise))  # in place: no second full-frame float64 array
    return snr


def _significant_mask(data, level, noise, bad, *, n_sigma=3.0, n_pixels=10, grow=4):
    """Pixels of significant sources: segments of the smoothed S/N image, grown.

    Only groups of ``n_pixels`` above ``n_sigma`` (in the smoothed image's
    own noise) count, so that pure noise masks almost nothing: masking the
    positive half of the noise would bias the sky low.
    """
    from scipy.ndimage import gaussian_filter

    snr = _snr(data, level, noise)
    snr[bad] = 0.0
    smoothed = gaussian_filter(snr.astype(np.float32), 1.0)
    _, s_noise = _clipped(smoothed[None], bad)
    segmap, n = _label_sources(smoothed, n_sigma * float(s_noise[0]), n_pixels, bad)
    if not n:
        return np.zeros(bad.shape, dtype=bool)
    # grow each source by half its radius (at least ``grow``): wings reach far
    radius = np.sqrt(np.bincount(segmap.ravel()) / np.pi)
    reach = np.maximum(0.5 * radius, grow)  # per source
    return _within_reach(segmap, reach)


def _within_reach(segmap, reach):
    """Pixels within ``reach[label]`` of their nearest labelled pixel of ``segmap``.

    `scipy.ndimage.distance_transform_edt` gives each pixel's nearest
    labelled pixel; the distances are computed from those indices a band of
    rows at a time (the values that function computes, without its
    full-frame float64 temporaries: 8 bytes a pixel instead of about 32).
    """
    from scipy.ndimage import distance_transform_edt

    iy, ix = distance_transform_edt(segmap == 0, return_distances=False, return_indices=True)
    h, w = segmap.shape
    out = np.empty((h, w), dtype=bool)
    step = max(1, 2 ** 18 // max(w, 1))
    columns = np.arange(w)
    for y0 in range(0, h, step):
        y1 = min(y0 + step, h)
        fy, fx = iy[y0:y1], ix[y0:y1]
        dy = (fy - np.arange(y0, y1)[:, None]).astype(np.float64)
        dx = (fx - columns).astype(np.float64)
        out[y0:y1] = np.sqrt(dy * dy + dx * dx) <= reach[segmap[fy, fx]]
    return out


def estimate_sky(image, *, box_size=64, mask=None, display=None):
    """Estimate the sky of an image with its sources masked, per band.

    The sources are the groups of at least 10 pixels above 3 sigma of the
    smoothed, band-combined signal-to-noise image, each grown by half its
    equivalent radius (at least 4 pixels), so that the wings of large
    galaxies stay out of the sky.  Masking only significant sources keeps the
    estimate unbiased on pure noise.  Every image gets a plane: its slopes
    fitted (sigma-clipped least squares) to the sky pixels at least 8 px
    from the masked sources, its level the sigma-clipped median of the
    unmasked sky pixels less the slopes, so that a residual sky gradient
    does not pass for faint light.  Images with at least three ``box_size``
    boxes on each side add a 2-D background of what the plane leaves
    (`photutils.background.Background2D`, median in each box, sources
    masked): the boxes alone bend a gradient at the frame's edges (flat
    beyond the outer box centres, their median filter biased at the mesh's
    border; a gradient of 2 sigma across 320 px was off by 0.25 sigma along
    the edges, 0.008 with the plane first).  Display images (JPG, PNG),
    whose stretched values clipped at black hold no additive sky, get a
    constant (the sigma-clipped median), or the 2-D background alone where
    large; a display band whose sky is clipped at black (a fifth of its sky
    pixels or more at its lowest value, as a dark JPG's blue) takes its
    noise from the levels above black, where the clipped spread counted
    the black pixels and fell to a fraction of the noise, and as its level
    the mean of its sky, which smoothing sees, not the median at black
    (``_black_point_sky``).  Two passes: the
    second masks sources found against the first pass's sky.

    A frame filled by one large galaxy has no sky to clip: the spread of
    its unmasked pixels is then the galaxy's light, more than 1.5 times the
    noise that second differences of pixels 3 apart measure (which cancel
    smooth light; 0.7-1.0 times on the sky of the real HST, HSC and SDSS
    cutouts of the test data, 2-8 in frames filled by a galaxy).  Such a
    frame takes that noise, and as its level the sigma-clipped median of
    its faintest 5 % (ranked by the light smoothed over 4 pixels), the
    nearest thing to sky it holds.  Display images (``ADBDISP``: JPG, PNG)
    are not tested: their stretched, quantised values, clipped at black,
    have differences that do not measure the noise.  A band without one
    usable pixel (a filter that is missing: all NaN or masked) masks none
    of the other bands' pixels; its level is 0.

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage` or array-like
        ``(H, W)`` or ``(C, H, W)`` pixels.
    box_size : int, optional
        Box of the 2-D background, in pixels.
    mask : array-like of bool, optional
        ``(H, W)`` pixels to ignore (added to the image's own mask).
    display : bool, optional
        Whether the values are display values (a JPG's); None: the image's
        ``ADBDISP`` card says.

    Returns
    -------
    Sky
        ``level`` ``(C, H, W)``, ``noise`` ``(C,)``, ``method`` and
        ``source_mask``.

    Raises
    ------
    InvalidInputError
        If no pixel is usable.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> data = 10 + rng.normal(0, 1, size=(1, 96, 96))
    >>> yy, xx = np.mgrid[:96, :96]
    >>> data[0] += 50 * np.exp(-((xx - 40) ** 2 + (yy - 50) ** 2) / 30)
    >>> sky = estimate_sky(data)
    >>> round(float(sky.level.mean()), 1), round(float(sky.noise[0]), 1)
    (10.0, 1.0)
    """
    image = as_galaxy_image(image)
    data = image.data
    c, h, w = data.shape
    unusable = ~np.isfinite(data)
    if image.mask is not None:
        unusable |= image.mask
    bad = _spatial_mask(unusable)   # its level 0 in a band without data, its noise the others'
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    if bad.all():
        raise InvalidInputError(f"{image.source or 'image'}: every pixel is masked or "
                                "non-finite")
    data = np.where(bad[None], np.float32(0.0), data).astype(np.float32, copy=False)
    display = bool(image.meta.get("ADBDISP", False)) if display is None else bool(display)
    level, noise = _clipped(data, bad)
    level = np.broadcast_to(level.astype(np.float32)[:, None, None], data.shape)
    sources = np.zeros((h, w), dtype=bool)
    method = "sigma-clipped median, sources masked"
    for _ in range(2):
        sources = _significant_mask(data, level, noise, bad)
        keep = bad | sources
        if (~keep).mean() < 0.05:
            keep = bad  # a frame filled by sources: the clipped level is all there is
        two_d = min(h, w) >= 3 * box_size and (~keep).mean() > 0.3
        if two_d:
            # linear images: the plane first, as for small frames; the box mesh
            # alone bends a sky gradient at the frame's edges (flat beyond the
            # outer box centres, the boxes' median filter biased at the mesh's
            # border), so the boxes follow what the plane leaves
            tilt = np.float32(0.0) if display else _clipped_plane(data, keep)[0]
            try:
                boxes = _background_2d(data - tilt, keep, box_size)
            except ValueError:  # every box of a band more than half masked: no mesh
                two_d = False
        if two_d:
            level = tilt + boxes
            method = (f"{'' if display else 'sigma-clipped plane, plus '}photutils Background2D "
                      f"(box {box_size} px, median){'' if display else ' of the rest'}, "
                      "sources masked")
            _, noise = _clipped(data - level, keep)
        elif not display:  # a plane: a residual gradient would pass for faint light
            level, noise = _clipped_plane(data, keep)
            method = "sigma-clipped plane (median level, fitted slopes), sources masked"
        else:  # display values (stretched, clipped at black) are no additive sky: a level
            median, noise = _clipped(data, keep)
            level = np.broadcast_to(median.astype(np.float32)[:, None, None], data.shape)
            method = "sigma-clipped median, sources masked"
        if display:
            level, noise = _black_point_sky(data, keep, level, noise)
    # a frame filled by one large galaxy (see above; display images untested)
    filled = False
    if not display:
        fine = _difference_noise(data, bad)
        filled = bool(np.all(fine > 0) and np.median(noise / fine) > _FILLED)
    if filled:
        noise = fine
        faint = _faintest(data, level, noise, bad, _FAINTEST)
        median, _ = _clipped(data, ~faint)
        level = np.broadcast_to(median.astype(np.float32)[:, None, None], data.shape)
        sources = ~faint & ~bad
        method = (f"a frame filled by sources: sigma-clipped median of its faintest "
                  f"{_FAINTEST:.0%}")
    return Sky(np.ascontiguousarray(level, dtype=np.float32), noise, method, sources, filled)


#: a display band whose sky pixels sit at its black point this often is clipped there
BLACK_FRACTION = 0.2


def _black_point_sky(data, mask, level, noise):
    """Level and noise of display bands whose sky is clipped at black.

    A display stretch maps the sky's lower half to black in a dark band (a
    Galaxy Zoo JPG's blue: half its sky pixels 0).  Two things go wrong
    there.  The sigma-clipped spread of such a band counts the black pixels
    and falls to a fraction of the noise (0.4 against 1.4 levels), so that
    every noise peak of that band passes for a source; and its median is
    the black point, while the sky's mean, which smoothing and apertures
    see, lies above it, so that the smoothed sky itself rises above the
    detection threshold.  Where at least ``BLACK_FRACTION`` of a band's sky
    pixels (outside ``mask``) hold its lowest value, the noise comes from
    the part above black instead: a Gaussian of level ``mu`` and noise
    ``sigma`` puts ``Phi((t - mu) / sigma)`` of the pixels below ``t``, so
    ``t = mu + sigma * Phi^-1(F(t))`` is a straight line, fitted (least
    squares) at the thresholds ``t`` halfway between consecutive values of
    the sky (exact for quantised 8-bit levels; the first just above black)
    where ``F(t)`` is below 0.95; the larger of the two estimates is kept.
    The band's level rises by the mean of its sky pixels above the level
    (up to 3 noise above it, faint light left out).  Returns ``(C, H, W)``
    levels and ``(C,)`` noise.
    """
    from scipy.special import ndtri

    rows, cols = _sample_pixels(~mask)
    noise = np.array(noise, dtype=np.float64)
    raised = None
    for band, pixels in enumerate(data[:, rows, cols]):
        values = np.sort(pixels)
        if values.size < 100:
            continue
        black = float(values[0])
        below = np.searchsorted(values, black, side="right") / values.size
        if below < BLACK_FRACTION:
            continue
        top = values[int(0.95 * (values.size - 1))]
        levels = np.unique(values[(values > black) & (values <= top)])
        cuts = np.concatenate([[black], levels])
        cuts = 0.5 * (cuts[1:] + cuts[:-1])
        if cuts.size > 64:  # continuous values: a regular subset of the cuts
            cuts = cuts[np.linspace(0, cuts.size - 1, 64).astype(int)]
        fraction = np.searchsorted(values, cuts, side="right") / values.size
        use = fraction < 0.95
        if use.sum() < 2:
            continue
        z = ndtri(fraction[use])
        design = np.column_stack([np.ones(z.size), z])
        (_, sigma), *_ = np.linalg.lstsq(design, cuts[use].astype(np.float64), rcond=None)
        if np.isfinite(sigma) and sigma > noise[band]:
            noise[band] = sigma
        above = pixels - level[band, rows, cols]
        above = above[above <= 3.0 * noise[band]]
        if above.size and float(above.mean()) > 0:
            raised = np.array(level, dtype=np.float32) if raised is None else raised
            raised[band] += np.float32(above.mean())
    return (level if raised is None else raised), noise


#: pixels between the sources' mask and the sky that fits the slopes of a sky plane
SLOPE_MARGIN = 8


def _clipped_plane(data, mask, *, sigma=3.0, iterations=5):
    """Fit a sky plane per band to the pixels outside ``mask``; return it and the noise.

    The slopes come from a least-squares fit of ``a + b x + c y`` to the
    pixels left after clipping at ``sigma`` times their spread around the
    plane (``iterations`` times), on a regular subsample of about 2**14
    pixels (`_sample_pixels`); the level is then the sigma-clipped median of
    the pixels less the slopes, as the constant sky's is, so that faint light left outside
    the mask moves the level no more than it did.  Returns ``(C, H, W)``
    levels and ``(C,)`` noise.
    """
    from scipy.ndimage import binary_dilation

    c, h, w = data.shape
    yc, xc = (h - 1) / 2, (w - 1) / 2
    # the slopes from the sky well away from the sources: a galaxy's faint
    # wings beyond its mask would tilt the plane towards it
    far = ~binary_dilation(mask, iterations=SLOPE_MARGIN)
    if far.mean() < 0.2:
        far = ~mask
    rows, cols = _sample_pixels(far)
    x, y = (cols - xc) / max(w, 1), (rows - yc) / max(h, 1)
    moments = np.column_stack([np.ones(x.size), x, y, x * x, x * y, y * y])
    design = moments[:, :3]  # a + b x + c y
    values = data[:, rows, cols].astype(np.float64)  # (C, n)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    kept = finite
    # every band at once: normal equations of the 3-parameter fit per band;
    # a band stops when its clipping converges (or too few pixels are left)
    active = kept.sum(axis=1) >= 30
    coef = np.zeros((c, 3))
    for _ in range(iterations):
        if not active.any():
            break
        weights = kept.astype(np.float64)
        # the normal matrices from the weighted moments 1, x, y, x2, xy, y2 (one product)
        m = weights @ moments
        normal = m[:, [[0, 1, 2], [1, 3, 4], [2, 4, 5]]]  # (C, 3, 3)
        right = (weights * values) @ design
        # the pseudo-inverse: a degenerate design (sky pixels on one line) fits no slope
        solved = np.einsum("cij,cj->ci", np.linalg.pinv(normal), right)
        coef[active] = solved[active]
        resid = values - coef @ design.T
        count = kept.sum(axis=1)
        mean = (resid * kept).sum(axis=1) / np.maximum(count, 1)
        spread = np.sqrt(((resid - mean[:, None]) ** 2 * kept).sum(axis=1)
                         / np.maximum(count, 1))
        now = finite & (np.abs(resid) <= sigma * spread[:, None])
        stop = ~(spread > 0) | (now.sum(axis=1) < 30) | (now == kept).all(axis=1)
        kept = np.where((active & ~stop)[:, None], now, kept)
        active &= ~stop
    slopes = coef[:, 1:].astype(np.float32)
    tilt = (slopes[:, 0, None, None] * ((np.arange(w, dtype=np.float32) - xc) / max(w, 1))
            + slopes[:, 1, None, None] * ((np.arange(h, dtype=np.float32)[:, None] - yc)
                                          / max(h, 1)))
    median, noise = _clipped(data - tilt, mask)
    tilt += median.astype(np.float32)[:, None, None]
    return tilt, noise


#: a frame is filled by sources when its clipped spread exceeds this many
#: times the noise of pixel differences (0.7-1.0 on the sky of real HST,
#: HSC and SDSS cutouts; 2-8 in frames filled by one galaxy)
_FILLED = 1.5
#: the fraction of such a frame taken as its sky
_FAINTEST = 0.05


def _faintest(data, level, noise, bad, fraction, *, smooth=4.0):
    """Return the usable pixels where the smoothed light is faintest, ``fraction`` of them.

    The band-combined signal-to-noise, smoothed by a Gaussian of ``smooth``
    pixels, ranks the pixels; smoothing makes the choice follow the light,
    not the noise of each pixel.
    """
    from scipy.ndimage import gaussian_filter

    snr = _snr(data, level, noise).astype(np.float32)
    wide = gaussian_filter(np.where(bad, np.float32(0.0), snr), smooth)
    cut = np.quantile(wide[~bad], fraction)
    return (wide <= cut) & ~bad


#: the fewest pixels of one exact value that `find_no_data` takes for a region without data
NO_DATA_PIXELS = 64
#: the share of neighbouring pixels outside the fills above which `find_no_data` finds
#: the values too coarse to tell a fill from sky (levels about a sigma apart or more)
COARSE_REPEATS = 0.25


def find_no_data(data, *, min_pixels=NO_DATA_PIXELS):
    """Find the regions of each band that hold no data: one exact value, repeated.

    Drizzled mosaics, reprojected frames and chip gaps fill the pixels
    without data with a constant (most often 0) instead of NaN.  Measured
    data with noise almost never repeat a value between neighbours; such a
    region does, over many pixels.  Taken as sky, it lowers the noise and
    moves the level, and every noise peak elsewhere becomes a source (an
    HST cutout with 40 % of its frame set to 0 gave 93 sources, 10 with
    those pixels NaN).  A region counts when at least ``min_pixels``
    4-connected pixels are each equal to a neighbour and all hold the same
    value.  In quantised data (16-bit integers with ``BSCALE``, a compressed
    float image's levels) a pixel beside a fill repeats a neighbour by
    chance and joins the region, which then holds two values: the part of
    it that holds its most common value counts instead.  Three kinds of
    images are left alone: count data (every other value an integer),
    where neighbours are equal by chance; data quantised so coarsely that
    more than ``COARSE_REPEATS`` of the neighbouring pixels outside the
    fills are equal (levels about a sigma apart or more); and images
    without noise (a simulation's exact sky), recognised because the
    noise of the other pixels (second differences, as the sky's filled-frame
    test measures it) is less than a fifth of their spread.

    Parameters
    ----------
    data : array-like
        ``(C, H, W)`` or ``(H, W)`` pixels (non-finite pixels are ignored).
    min_pixels : int, optional
        The smallest region.

    Returns
    -------
    `numpy.ndarray`
        ``bool``, the shape of ``data``: True where a band holds no data.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.random.default_rng(0).normal(5, 1, (1, 40, 60)).astype(np.float32)
    >>> data[:, :, :15] = 0.0                  # a drizzle edge
    >>> no_data = find_no_data(data)
    >>> int(no_data.sum()), bool(no_data[0, :, 15:].any())
    (600, False)
    """
    from scipy.ndimage import label, maximum, minimum

    data = np.asarray(data, dtype=np.float32)
    planes = data.reshape(-1, *data.shape[-2:])
    out = np.zeros(planes.shape, dtype=bool)
    for band, plane in enumerate(planes):
        right = plane[:, 1:] == plane[:, :-1]
        down = plane[1:] == plane[:-1]
        if int(right.sum()) + int(down.sum()) < min_pixels // 2:
            continue  # measured data: nothing repeats (the usual case, at no cost)
        flat = np.zeros(plane.shape, dtype=bool)
        flat[:, 1:] |= right
        flat[:, :-1] |= right
        flat[1:] |= down
        flat[:-1] |= down
        labels, n = label(flat)
        if not n:
            continue
        regions = np.flatnonzero(np.bincount(labels.ravel())[1:] >= min_pixels) + 1
        if not regions.size:
            continue
        same = (np.asarray(minimum(plane, labels, regions))
                == np.asarray(maximum(plane, labels, regions)))
        empty = np.isin(labels, regions[same])
        for region in regions[~same]:
            # quantised data (BSCALE integers, a compressed float image's
            # levels) repeat values by chance, and such a pixel touching the
            # region joins it: keep the region's own value, as regions of it
            inside = labels == region
            values, counts = np.unique(plane[inside], return_counts=True)
            part, _ = label(inside & (plane == values[np.argmax(counts)]))
            big = np.flatnonzero(np.bincount(part.ravel())[1:] >= min_pixels) + 1
            if big.size:
                empty |= np.isin(part, big)
        if not empty.any():
            continue
        rest = np.isfinite(plane) & ~empty
        pairs = rest[:, 1:] & rest[:, :-1]
        if (right & pairs).sum() > COARSE_REPEATS * max(int(pairs.sum()), 1):
            continue  # levels so coarse that the sky repeats itself: no telling a fill
        values = plane[rest].astype(np.float64)
        if values.size < min_pixels or np.all(values == np.round(values)):
            continue  # count data, or hardly any data left
        spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
        fine = _difference_noise(np.where(rest, plane, np.float32(0.0))[None], ~rest)[0]
        if not fine > 0.2 * spread:
            continue  # no noise: a constant sky is sky
        out[band] = empty
    return out.reshape(data.shape)


def _difference_noise(data, bad, lag=3, max_values=2 ** 12):
    """Noise of each band from second differences of pixels ``lag`` apart.

    ``d = x[i] - (x[i - lag] + x[i + lag]) / 2`` along rows and columns
    cancels light that varies slowly (a galaxy's outskirts, a sky
    gradient) and, at ``lag`` 3, most of the correlation of resampled
    noise; its median absolute deviation, scaled to a Gaussian's sigma and
    by ``sqrt(1.5)``, is the pixel noise.  About ``max_values`` differences
    per band, on every k-th row and column (a 2 % error); 0 for a band
    too small to tell.
    """
    c, h, w = data.shape
    out = np.zeros(c)
    if min(h, w) <= 2 * lag:
        return out
    step = max(int(2 * h * w / max_values), 1)
    mid, left, right = slice(lag, -lag), slice(None, -2 * lag), slice(2 * lag, None)
    for band in range(c):
        d = []
        # along every k-th row, then (transposed) along every k-th column
        for plane, mask in ((data[band, ::step], bad[::step]),
                            (data[band, :, ::step].T, bad[:, ::step].T)):
            diff = plane[:, mid] - 0.5 * (plane[:, left] + plane[:, right])
            d.append(diff[~(mask[:, mid] | mask[:, left] | mask[:, right])])
        d = np.concatenate(d)
        if d.size >= 100:
            out[band] = 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(1.5)
    return out


def _background_2d(data, mask, box_size):
    """Photutils' 2-D background of each band: box medians, bilinear between box centres.

    The low-resolution mesh is `photutils.background.Background2D`'s
    ``background_mesh`` (`_box_mesh`: median of each box's sigma-clipped
    pixels, boxes more than half masked left out and filled from their
    neighbours, a 3x3 median filter of the boxes), for every band at once;
    it is resized to the frame as photutils' own zoom interpolator does
    (`_zoom_mesh`), but bilinear: as smooth a sky.
    """
    mesh = _box_mesh(data, mask, box_size)
    return np.stack([_zoom_mesh(plane, box_size, data.shape[1:]) for plane in mesh])


#: `_box_mesh`: photutils' Background2D defaults that `estimate_sky` uses
_MESH_SIGMA, _MESH_MAXITERS, _MESH_EXCLUDE = 3.0, 10, 0.5


def _box_mesh(data, mask, box_size):
    """`photutils.background.Background2D`'s ``background_mesh`` of every band.

    The same mesh as ``Background2D(plane, box_size, mask=mask,
    filter_size=3, sigma_clip=SigmaClip(sigma=3, maxiters=10),
    bkg_estimator=MedianBackground(), exclude_percentile=50)`` for each
    plane (a test compares them): boxes of ``box_size`` from the first pixel,
    partial boxes along the last row and column; each box's median after
    sigma clipping, left out (NaN) where no more than half a full box's
    pixels are kept; the boxes left out filled by inverse-distance weighting
    of the others (photutils' ``ShepardIDWInterpolator``, 10 neighbours);
    then a 3x3 median filter that ignores the mesh's outside.  The sigma
    clipping is `_clipped_stats`' (each box sorted once), for all bands in
    one pass: a fifth to a half of photutils' cost per band.

    Raises
    ------
    ValueError
        If every box of a band is left out.
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from photutils.utils import ShepardIDWInterpolator

    c, h, w = data.shape
    b = int(box_size)
    ny, nx = h // b, w // b
    y1, x1 = ny * b, nx * b
    data = np.where(mask[None], np.float32(np.nan), data).astype(np.float32, copy=False)
    mesh = np.full((c, ny + (y1 < h), nx + (x1 < w)), np.nan)

    def medians(boxes):  # (n, pixels) -> the medians of boxes with enough pixels kept
        median, _, n_kept = _clipped_stats(boxes, sigma=_MESH_SIGMA, maxiters=_MESH_MAXITERS,
                                           counts=True)
        median[n_kept <= (1 - _MESH_EXCLUDE) * b * b] = np.nan
        return median

    core = data[:, :y1, :x1].reshape(c, ny, b, nx, b).transpose(0, 1, 3, 2, 4)
    mesh[:, :ny, :nx] = medians(core.reshape(-1, b * b)).reshape(c, ny, nx)
    if y1 < h:  # the last row of boxes, partial
        row = data[:, y1:, :x1].reshape(c, h - y1, nx, b).transpose(0, 2, 1, 3)
        mesh[:, ny, :nx] = medians(row.reshape(c * nx, -1)).reshape(c, nx)
    if x1 < w:  # the last column, partial
        mesh[:, :ny, nx] = medians(data[:, :y1, x1:].reshape(c * ny, -1)).reshape(c, ny)
    if y1 < h and x1 < w:
        mesh[:, ny, nx] = medians(data[:, y1:, x1:].reshape(c, -1))
    for plane in mesh:
        empty = np.isnan(plane)
        if empty.all():
            raise ValueError(f"every box of {b} px holds half its pixels or fewer unmasked")
        if empty.any():
            fill = ShepardIDWInterpolator(np.column_stack(np.nonzero(~empty)), plane[~empty])
            plane[empty] = fill(np.column_stack(np.nonzero(empty)), n_neighbors=10, power=1.0)
    padded = np.pad(mesh, ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(sliding_window_view(padded, (3, 3), axis=(1, 2)), axis=(-2, -1))


def _zoom_mesh(mesh, box_size, shape):
    """Resize a background mesh to ``shape``: bilinear, box centres on the mesh values.

    What photutils' ``BkgZoomInterpolator(order=1)`` does (`scipy.ndimage.zoom`
    by the box size with ``grid_mode=True``, cropped to the frame): each
    mesh value sits at the centre of its box, the frame is the straight
    line between centres and flat beyond the outer ones; a flat mesh gives
    a flat frame.  Interpolated along one axis, then the other.
    """
    mesh = np.asarray(mesh, dtype=np.float32)

    def along(n_pixels, n_boxes):  # each pixel's left centre and the weight of the right one
        u = np.clip((np.arange(n_pixels) + 0.5) / box_size - 0.5, 0, n_boxes - 1)
        left = np.minimum(np.floor(u).astype(np.intp), max(n_boxes - 2, 0))
        right = np.minimum(left + 1, n_boxes - 1)
        return left, right, (u - left).astype(np.float32)

    top, bottom, fy = along(shape[0], mesh.shape[0])
    rows = mesh[top] + fy[:, None] * (mesh[bottom] - mesh[top])
    left, right, fx = along(shape[1], mesh.shape[1])
    full = rows[:, left] + fx[None, :] * (rows[:, right] - rows[:, left])
    return np.clip(full, mesh.min(), mesh.max())


#: 8-connectivity, as photutils' default
_EIGHT = np.ones((3, 3), dtype=bool)


def _label_sources(image, threshold, n_pixels, mask=None):
    """Label the groups of at least ``n_pixels`` 8-connected pixels above ``threshold``.

    The segmentation of `photutils.segmentation.detect_sources` (pixels
    strictly above the threshold, ``mask`` pixels left out, labels 1..N in
    scan order), without its import and per-call costs, which dominate on
    small images.  Returns the ``int32`` label image and N.
    """
    from scipy.ndimage import label

    with np.errstate(invalid="ignore"):
        above = image > threshold
    if mask is not None:
        above &= ~mask
    labels, n = label(above, structure=_EIGHT)
    if n:
        keep = np.bincount(labels.ravel(), minlength=n + 1) >= n_pixels
        keep[0] = False
        if not keep[1:].all():
            remap = np.zeros(n + 1, dtype=labels.dtype)
            n = int(keep.sum())
            remap[keep] = np.arange(1, n + 1)
            labels = remap[labels]
    return labels.astype(np.int32, copy=False), n


def _multithreshold(data, inside, n_pixels, n_levels, contrast, *, mode="exponential"):
    """Split one source by multi-thresholding and watershed, as photutils does.

    The algorithm of `photutils.segmentation.deblend_sources` for one
    source (``inside``: its pixels): ``n_levels`` thresholds between the
    source's minimum and maximum (exponentially spaced when the minimum is
    positive), a segment replaced by its children wherever a higher
    threshold splits it into groups of ``n_pixels``, watershed from these
    markers, and parts holding less than ``contrast`` of the source's flux
    merged away, faintest first.  Returns the parts (``int32``, 1..K in the
    order of their markers) or None when the source stays whole.
    """
    from scipy.ndimage import label, maximum_filter, sum_labels
    from skimage.segmentation import watershed

    values = data[inside]
    low, high, total = np.nanmin(values), np.nanmax(values), np.nansum(values)
    if low == high:
        return None
    if mode == "exponential" and low <= 0:
        mode = "linear"
    steps = np.linspace(0.0, 1.0, n_levels + 2)
    thresholds = (low * (high / low) ** steps if mode == "exponential"
                  else np.linspace(low, high, n_levels + 2))[1:-1]
    # every group above a threshold holds a local maximum above it: where
    # fewer than two maxima are above, nothing can split, so no labelling
    lifted = np.where(inside, data, -np.inf)
    maxima = np.sort(lifted[(lifted == maximum_filter(lifted, footprint=_EIGHT)) & inside])
    if maxima.size < 2:
        return None
    thresholds = thresholds[thresholds < maxima[-2]]
    if not thresholds.size:
        return None

    def level(threshold):  # None for fewer than two groups
        labels, n = _label_sources(data, threshold, n_pixels, ~inside)
        return labels if n >= 2 else None

    markers = level(thresholds[0])
    for threshold in thresholds[1:]:
        upper = level(threshold)
        if upper is None:
            continue
        if markers is None:
            markers = upper
            continue
        # a segment with two or more children at this level is replaced by them
        both = (markers > 0) & (upper > 0)
        span = int(upper.max()) + 1  # (parent, child) pairs as one integer each
        pairs = np.unique(markers[both].astype(np.int64) * span + upper[both])
        parents, n_children = np.unique(pairs // span, return_counts=True)
        split = parents[n_children >= 2]
        if split.size:
            replaced = np.isin(markers, split)
            kept = (markers > 0) & ~replaced | replaced & (upper > 0)
            markers = label(kept, structure=_EIGHT)[0]
    if markers is None:
        return None
    if mode == "exponential" and len(np.unique(markers)) - 1 > 200:
        return _multithreshold(data, inside, n_pixels, n_levels, contrast, mode="linear")
    while True:
        markers = watershed(-data, markers, mask=inside, connectivity=_EIGHT)
        labels = np.unique(markers)
        labels = labels[labels != 0]
        if labels.size == 1:
            return None
        share = sum_labels(data, markers, index=labels) / total
        if not (share < contrast).any():
            break
        markers[markers == labels[np.argmin(share)]] = 0
    remap = np.zeros(int(labels.max()) + 1, dtype=np.int32)
    remap[labels] = np.arange(1, labels.size + 1)
    return remap[markers]


def find_groups(snr, bad, *, n_sigma=2.0, n_pixels=8, smooth_sigma=1.0, bridge=2,
                filled=None):
    """Find blend groups: connected regions of significant signal.

    Masked pixels within ``bridge`` pixels of unmasked ones, and the masked
    pixels ``filled`` marks, keep the value ``snr`` gives them (the pipeline
    fills them from their surroundings,
    `~astrodeblend.footprints.fill_masked`, blocks enclosed by data whole,
    `~astrodeblend.footprints.inpainted_regions`), so that a masked column,
    a cosmic ray or a block on a galaxy's core does not cut it into two
    groups or hide its peak; the rest of a masked region is left out.

    Parameters
    ----------
    snr : `numpy.ndarray`
        ``(H, W)`` band-combined signal-to-noise image (sky subtracted,
        noise 1 per pixel), masked pixels filled (non-finite values count
        as 0).
    bad : `numpy.ndarray`
        ``bool (H, W)``, masked pixels.
    n_sigma : float, optional
        Threshold in units of the smoothed image's noise.
    n_pixels : int, optional
        Minimum number of connected pixels.
    smooth_sigma : float, optional
        Gaussian smoothing (sigma, pixels) before thresholding.
    bridge : int, optional
        Masked pixels this close (pixels, 8-connected) to unmasked ones
        may join a group; 0 leaves every masked pixel out (but ``filled``).
    filled : `numpy.ndarray`, optional
        ``bool (H, W)``, masked pixels filled well enough to join a group.

    Returns
    -------
    segmap : `numpy.ndarray`
        ``int32 (H, W)``, 0 for the sky, 1..N for the groups.
    smoothed : `numpy.ndarray`
        The smoothed S/N image, in units of its own noise.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:64, :64]
    >>> snr = rng.normal(0, 1, (64, 64)) + 30 * np.exp(-((xx - 20) ** 2 + (yy - 30) ** 2) / 20)
    >>> segmap, _ = find_groups(snr, np.zeros((64, 64), bool))
    >>> int(segmap.max()), int(segmap[30, 20])
    (1, 1)
    """
    from scipy.ndimage import binary_dilation, gaussian_filter

    bad = np.asarray(bad, dtype=bool)
    outside = bad
    if bridge and bad.any() and not bad.all():
        outside = bad & ~binary_dilation(~bad, structure=_EIGHT, iterations=int(bridge))
    if filled is not None:
        outside = outside & ~np.asarray(filled, dtype=bool)
    snr = np.where(outside | ~np.isfinite(snr), np.float32(0.0), snr).astype(np.float32)
    smoothed = gaussian_filter(snr, smooth_sigma) if smooth_sigma else snr
    _, s_noise = _clipped(smoothed[None], bad)
    smoothed = (smoothed / float(s_noise[0])).astype(np.float32)
    segmap, _ = _label_sources(smoothed, n_sigma, n_pixels, outside)
    return segmap, smoothed


def split_group(smoothed, segmap, label, *, n_pixels=8, n_levels=32, contrast=0.005,
                box=None):
    """Return the ``(x, y)`` peaks of the multi-threshold deblending of one group.

    The deblending is that of `photutils.segmentation.deblend_sources`
    (the same parts, pixel for pixel), computed without its per-level
    overheads and only at the levels where two maxima stand above the
    threshold.

    Parameters
    ----------
    smoothed : `numpy.ndarray`
        The smoothed detection image of `find_groups`.
    segmap : `numpy.ndarray`
        The group map of `find_groups`.
    label : int
        The group to split.
    n_pixels, n_levels, contrast : optional
        As `photutils.segmentation.deblend_sources`.
    box : tuple of slice, optional
        The group's bounding box ``(rows, columns)``, as
        `scipy.ndimage.find_objects` gives it for every group at once;
        found from ``segmap`` when not given (a pass over the frame: a
        caller splitting many groups of a large frame should give it).

    Returns
    -------
    list of (float, float)
        Flux-weighted centroids of the parts (one for an unsplit group).
    """
    if box is None:
        ys, xs = np.nonzero(segmap == label)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    else:
        y0, y1, x0, x1 = box[0].start, box[0].stop, box[1].start, box[1].stop
    inside = segmap[y0:y1, x0:x1] == label
    image = np.where(inside, smoothed[y0:y1, x0:x1], 0.0).astype(np.float32)
    parts = inside.astype(np.int32)
    if inside.sum() >= 2 * n_pixels:
        split = _multithreshold(image, inside, n_pixels, n_levels, contrast)
        if split is not None:
            parts = split
    peaks = []
    for part in np.unique(parts[parts > 0]):
        weight = np.where(parts == part, np.clip(image, 0, None), 0.0)
        total = weight.sum()
        if total <= 0:
            continue
        yy, xx = np.mgrid[:weight.shape[0], :weight.shape[1]]
        peaks.append((float((weight * xx).sum() / total + x0),
                      float((weight * yy).sum() / total + y0)))
    return peaks
