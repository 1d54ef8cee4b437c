"""Real galaxy stamps cleaned of their neighbours, for the ``survey`` protocol."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._random import make_rng
from ..errors import InvalidInputError
from ..image import GalaxyImage, as_galaxy_image
from ._physical import linear_flux


def _half_light_radius(plane, x, y):
    """Radius (pixels) around ``(x, y)`` holding half of the positive flux of ``plane``."""
    yy, xx = np.indices(plane.shape)
    r = np.hypot(xx - x, yy - y).ravel()
    flux = np.clip(plane, 0, None).ravel()
    order = np.argsort(r)
    cumulative = np.cumsum(flux[order])
    if cumulative[-1] <= 0:
        return 0.0
    return float(r[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]) + 0.5


def _isolate(data, *, n_sigma=2.0, grow=2):
    """Find the central source of a linear, sky-subtracted ``(C, H, W)`` stamp.

    Sources are detected and deblended (`astrodeblend.detect.find_centers`).
    The central source is the connected group of segments under the centre
    pixel (or the nearest to the centre), so that the arms and knots of a
    spiral stay with it, less its deblended parts centred more than 2.5
    half-light radii of the central part away: touching neighbours.

    Returns ``(central, others, x, y)``: boolean ``(H, W)`` maps of the central
    source and of every other source (grown by ``grow`` pixels), and the
    flux-weighted centre of the central source; None when nothing is detected.
    """
    from scipy.ndimage import binary_dilation, label

    from ..detect import find_centers

    c, h, w = data.shape
    finite = np.isfinite(data).all(axis=0)
    values = np.where(np.isfinite(data), data, 0.0)
    # only the source at the centre needs deblending: its neighbours' segments
    # are masked whole (deblending every source of a 424 px cutout is 20x slower)
    detections = find_centers(values, n_sigma=n_sigma, n_pixels=5, deblend=True,
                              mask=~finite, deblend_at=[((w - 1) / 2, (h - 1) / 2)])
    segmap = np.asarray(detections.segmap)
    if not segmap.any():
        return None
    parents, _ = label(segmap > 0)
    cy, cx = (h - 1) // 2, (w - 1) // 2
    child = int(segmap[cy, cx])
    catalog = detections.catalog
    xs = np.asarray(catalog["x_centroid"], float)
    ys = np.asarray(catalog["y_centroid"], float)
    labels = np.asarray(catalog["id"], int)
    if child == 0:
        d = np.hypot(xs - (w - 1) / 2, ys - (h - 1) / 2)
        d[~np.isfinite(d)] = np.inf
        child = int(labels[int(np.argmin(d))])
    plane = np.clip(values.sum(axis=0), 0, None)
    core = segmap == child
    yy, xx = np.indices((h, w))
    flux = float(plane[core].sum())
    if flux > 0:
        x0, y0 = float((plane * xx)[core].sum() / flux), float((plane * yy)[core].sum() / flux)
        radius = _half_light_radius(np.where(core, plane, 0.0), x0, y0)
    else:
        x0, y0, radius = (w - 1) / 2, (h - 1) / 2, 1.0
    central = parents == parents[core][0]
    for k, label_k in enumerate(labels):
        if label_k == child or not np.isfinite(xs[k]):
            continue
        part = segmap == label_k
        if central[part].any() and math.hypot(xs[k] - x0, ys[k] - y0) > max(2.5 * radius, 6):
            central &= ~part
    others = (segmap > 0) & ~central
    if grow > 0 and others.any():
        others = binary_dilation(others, iterations=int(grow)) & ~central
    plane = np.where(central, plane, 0.0)
    total = plane.sum()
    if not total > 0:
        return None
    return central, others, float((plane * xx).sum() / total), float((plane * yy).sum() / total)


def clean_stamp(image, *, n_sigma=2.0, grow=2, fill="noise", seed=0):
    """Isolate the central galaxy of a real stamp: sky subtracted, neighbours removed.

    The image is turned into linear flux (`linear_flux`; display images are
    linearised), a sigma-clipped sky level is subtracted per band, sources are
    detected and deblended (`astrodeblend.detect.find_centers`) and every
    source but the central one, grown by ``grow`` pixels, is replaced by
    noise of the image's sky level or by zero.  The central source is the
    group of touching segments under the centre pixel (or the nearest to the
    centre), so that the arms of a spiral stay with it, less its deblended
    parts centred more than 2.5 half-light radii away (touching neighbours).
    Masked and non-finite pixels are treated the same way.

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage` or array-like
        The stamp ``(H, W)`` or ``(C, H, W)``, the galaxy near its centre.
    n_sigma : float, optional
        Detection threshold of the segments, in units of the sky noise.
    grow : int, optional
        Pixels by which the other sources' segments are grown.
    fill : {'noise', 'zero'}, optional
        What replaces the other sources: Gaussian noise of the sky's
        standard deviation (seeded by ``seed``), or zero.
    seed : int, optional
        Seed of the fill noise.

    Returns
    -------
    `~astrodeblend.GalaxyImage`
        Linear flux without ``ADBDISP`` card, no mask, with the header cards
        ``ADBCLEAN = True``, ``ADBCX``/``ADBCY`` (0-based centre of the
        galaxy) and ``ADBNMASK`` (pixels replaced), and a HISTORY line.

    Raises
    ------
    InvalidInputError
        If ``fill`` is unknown or no source is detected in the stamp.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> data = np.exp(-((xx - 32) ** 2 + (yy - 31) ** 2) / 30.0)
    >>> data += 0.8 * np.exp(-((xx - 8) ** 2 + (yy - 50) ** 2) / 8.0)
    >>> data += np.random.default_rng(0).normal(0, 0.01, data.shape)
    >>> clean = clean_stamp(data, fill="zero")
    >>> bool(clean.data[0, 50, 8] == 0), bool(clean.data[0, 31, 32] > 0.9)
    (True, True)
    """
    from ..detect import background_and_noise

    if fill not in ("noise", "zero"):
        raise InvalidInputError(f"fill must be 'noise' or 'zero', not {fill!r}")
    image = as_galaxy_image(image)
    rng = make_rng(seed)
    data = linear_flux(image, subtract_sky=False)
    bad = ~np.isfinite(image.data) if image.mask is None else (image.mask |
                                                               ~np.isfinite(image.data))
    background, noise = background_and_noise(np.where(bad, np.nan, data), mask_sources=True)
    data = data - background.astype(np.float32)[:, None, None]
    data[bad] = np.nan
    found = _isolate(data, n_sigma=n_sigma, grow=grow)
    if found is None:
        raise InvalidInputError(f"{image.source or 'stamp'}: no source detected above "
                                f"{n_sigma} sigma")
    central, others, x, y = found
    replace = others[None] | (bad & ~central[None])
    if fill == "noise":
        values = rng.standard_normal(data.shape).astype(np.float32) * np.asarray(
            noise, np.float32)[:, None, None]
    else:
        values = np.zeros_like(data)
    data = np.where(replace, values, data)
    data[~np.isfinite(data)] = 0.0
    meta = image.meta.copy()
    meta.remove("ADBDISP", ignore_missing=True, remove_all=True)
    meta["ADBCLEAN"] = (True, "central galaxy isolated, sky subtracted")
    meta["ADBCX"] = (x, "0-based x of the central galaxy")
    meta["ADBCY"] = (y, "0-based y of the central galaxy")
    meta["ADBNMASK"] = (int(replace.any(axis=0).sum()), "pixels of other sources replaced")
    meta.add_history(f"astrodeblend clean_stamp n_sigma={n_sigma} grow={grow} fill={fill}")
    return GalaxyImage(data.astype(np.float32), wcs=image.wcs, meta=meta, unit=image.unit,
                       bands=image.bands, source=image.source)


def read_clean_stamps(folder, *, pattern="*.fits", max_size=256, n_sigma=2.0, grow=2,
                      fill="noise", seed=0, skip=("psf", "mask", "catalog")):
    """Read a folder of real galaxy stamps (FITS) and isolate each central galaxy.

    Every image HDU of every FITS file below ``folder`` (recursively) whose
    name contains none of ``skip`` (case-insensitive) becomes one stamp:
    ``(H, W)`` images and ``(C, H, W)`` cubes of up to 5 bands, centre-cropped
    to at most ``max_size`` pixels per side, then cleaned by `clean_stamp`.
    Table HDUs, empty HDUs and stamps without a detected source are left out.

    Parameters
    ----------
    folder : str or `~pathlib.Path`
        Folder of FITS files, e.g. ``shared/data/fits``.
    pattern : str, optional
        Glob of the files (matched recursively).
    max_size : int, optional
        Largest side kept (central crop).
    n_sigma, grow, fill : optional
        Options of `clean_stamp`.
    seed : int, optional
        Seed of the fill noise; stamp ``i`` uses ``[seed, i]``.
    skip : sequence of str, optional
        Files whose name contains one of these are ignored (PSFs, masks,
        catalogs).

    Returns
    -------
    list of `~astrodeblend.GalaxyImage`
        The cleaned stamps, sorted by file name and HDU; ``source`` is
        ``'path[hdu]'``.

    Raises
    ------
    InvalidInputError
        If ``folder`` is not a folder or holds no usable stamp.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> yy, xx = np.mgrid[:48, :48]
    >>> data = np.exp(-((xx - 24) ** 2 + (yy - 24) ** 2) / 20.0) + 0.01 * np.sin(xx * yy)
    >>> fits.PrimaryHDU(data.astype(np.float32)).writeto(folder / "g.fits")
    >>> stamps = read_clean_stamps(folder)
    >>> len(stamps), stamps[0].shape
    (1, (1, 48, 48))
    """
    from astropy.io import fits

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"stamp folder {folder} is not a folder")
    stamps = []
    for path in sorted(folder.rglob(pattern)):
        if any(word.lower() in path.name.lower() for word in skip):
            continue
        try:
            with fits.open(path, memmap=False) as hdul:
                planes = [(i, np.asarray(hdu.data, dtype=np.float32))
                          for i, hdu in enumerate(hdul)
                          if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU))
                          and hdu.data is not None and hdu.data.ndim in (2, 3)]
        except (OSError, ValueError, TypeError):
            continue
        for i, data in planes:
            if data.ndim == 3 and not 1 <= data.shape[0] <= 5:
                continue
            h, w = data.shape[-2:]
            y0, x0 = max((h - max_size) // 2, 0), max((w - max_size) // 2, 0)
            data = data[..., y0:y0 + max_size, x0:x0 + max_size]
            if min(data.shape[-2:]) < 16 or not np.isfinite(data).any():
                continue
            try:
                stamp = clean_stamp(GalaxyImage(data, source=f"{path}[{i}]"), n_sigma=n_sigma,
                                    grow=grow, fill=fill, seed=[seed, len(stamps)])
            except InvalidInputError:
                continue
            stamps.append(stamp)
    if not stamps:
        raise InvalidInputError(f"no usable galaxy stamp in {folder} ({pattern})")
    return stamps
