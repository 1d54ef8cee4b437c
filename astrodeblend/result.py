"""`DeblendResult`: what a deblender returns and what the FITS writer stores.

Each source is held as a *cutout*: its pixels over the bounding box of its
footprint and the position of that box in the blend frame, so that memory
grows with the area the sources cover, not with sources x frame
(``spec/fits-output.md``, format version 2).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from .errors import InvalidInputError
from .footprints import FLUX_MODES
from .image import GalaxyImage

__all__ = ["DeblendResult", "CATALOG_COLUMNS", "FLUX_MODES"]

#: Columns of `DeblendResult.catalog`, in the order of spec/fits-output.md.
CATALOG_COLUMNS = ("id", "x_centroid", "y_centroid", "ra", "dec", "flux",
                   "bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax")


class DeblendResult:
    """The deblended sources of one image, each stored as a cutout.

    Parameters
    ----------
    blend : GalaxyImage
        The input image as read.
    sources : array-like or sequence of array-like
        Without ``origins``: ``(N, C, H, W)`` full-frame images, one per
        source, same plane and bands as ``blend``; each is stored trimmed to
        the bounding box of its nonzero pixels (any band).  A source without
        any nonzero pixel keeps a 1x1 zero cutout at its catalog centre
        (rounded and clipped into the frame; pixel (0, 0) when the centre is
        not finite).  With ``origins``: a sequence of N cutouts ``(C, h, w)``
        (``(h, w)`` for one band).
    catalog : `~astropy.table.Table`
        One row per source with at least the columns of `CATALOG_COLUMNS`
        (``flux`` holds one value per band).
    segmap : array-like of int
        ``(H, W)`` segmentation map of the detection step: 0 is background,
        ``i`` is source ``i`` (1-based, as the catalog ``id``).
    origins : array-like of int, optional
        ``(N, 2)`` as ``(x0, y0)``: 0-based column and row of each cutout's
        first pixel in the blend frame.  Every cutout must lie inside the
        frame.
    flux_mode : {'conserve', 'model'}, optional
        How source pixels were made (see `FLUX_MODES`); stored as
        ``ADBFLUX`` in the FITS output.
    model_name : str, optional
        Name of the model used (``'default'``, a checkpoint file name,
        ``'segmentation'`` for a baseline, ...).
    model_hash : str, optional
        sha256 (hex) of the model weights; empty for a classic method.
    history : list of str, optional
        One line per processing step with its parameters, in order.

    Attributes
    ----------
    cutouts : list of `numpy.ndarray`
        float32 ``(C, h, w)`` source images.  Pixels that are masked or not
        finite in ``blend`` (and non-finite source values) are 0.
    origins : `numpy.ndarray`
        int64 ``(N, 2)``: ``(x0, y0)`` of each cutout in the blend frame.
    flux_mode : str
        ``'conserve'`` or ``'model'``.

    Raises
    ------
    InvalidInputError
        If a shape, band count, cutout position, catalog or ``flux_mode``
        does not fit the blend.

    Examples
    --------
    >>> import numpy as np
    >>> from astrodeblend.image import GalaxyImage
    >>> blend = GalaxyImage(np.ones((1, 4, 4)))
    >>> sources = np.stack([blend.data * 0.75, blend.data * 0.25])
    >>> result = DeblendResult(blend, sources, DeblendResult.make_catalog(
    ...     blend, sources, [1.0, 2.0], [1.0, 2.0]), np.zeros((4, 4), int))
    >>> result.n_sources, float(result.residual.data.max())
    (2, 0.0)

    Sources given as cutouts and their positions:

    >>> cutouts = [np.ones((1, 2, 3)), np.ones((1, 1, 1))]
    >>> result = DeblendResult(blend, cutouts, DeblendResult.make_catalog(
    ...     blend, cutouts, [1.0, 3.0], [0.5, 3.0], origins=[(0, 0), (3, 3)]),
    ...     np.zeros((4, 4), int), origins=[(0, 0), (3, 3)], flux_mode="model")
    >>> result.source_slices(0)
    (slice(0, 2, None), slice(0, 3, None))
    >>> result.sources.shape, result.fluxes.tolist()
    ((2, 1, 4, 4), [6.0, 1.0])
    """

    def __init__(self, blend, sources, catalog, segmap, *, origins=None, flux_mode="conserve",
                 model_name="", model_hash="", history=None):
        if not isinstance(blend, GalaxyImage):
            raise InvalidInputError("blend must be a GalaxyImage")
        if flux_mode not in FLUX_MODES:
            raise InvalidInputError(f"flux_mode must be one of {list(FLUX_MODES)}, "
                                    f"not {flux_mode!r}")
        segmap = np.asarray(segmap)
        if segmap.shape != blend.shape[1:]:
            raise InvalidInputError(f"segmap shape {segmap.shape} does not match the image "
                                    f"plane {blend.shape[1:]}")
        missing = [c for c in CATALOG_COLUMNS if c not in catalog.colnames]
        if missing:
            raise InvalidInputError(f"catalog lacks columns {missing}")
        if origins is None:
            cutouts, origins = _trim_frames(blend, sources, catalog)
        else:
            cutouts, origins = _check_cutouts(blend, sources, origins)
        if len(catalog) != len(cutouts):
            raise InvalidInputError(f"catalog has {len(catalog)} rows for {len(cutouts)} "
                                    "sources")
        self.blend = blend
        self.cutouts = [_zero_bad(blend, cut, x0, y0)
                        for cut, (x0, y0) in zip(cutouts, origins, strict=True)]
        self.origins = origins
        self.flux_mode = flux_mode
        self.catalog = catalog
        self.segmap = segmap.astype(np.int32)
        self.model_name = str(model_name)
        self.model_hash = str(model_hash)
        self.history = list(history or [])

    @property
    def n_sources(self):
        """Number of deblended sources."""
        return len(self.cutouts)

    @property
    def sources(self):
        """``(N, C, H, W)`` float32 full-frame image of every source, built on request.

        This costs N x frame memory (and time) on each access: on large
        images use `cutouts`, `origins` and `source_slices`, or
        ``source_image(i, full_frame=True)`` for one source.
        """
        frames = np.zeros((self.n_sources, *self.blend.shape), dtype=np.float32)
        for i, cut in enumerate(self.cutouts):
            frames[(i, slice(None), *self.source_slices(i))] = cut
        return frames

    def source_slices(self, index):
        """Return ``(slice_y, slice_x)`` of source ``index``'s cutout in the blend frame.

        Parameters
        ----------
        index : int
            0-based source position (catalog id minus one).

        Returns
        -------
        tuple of slice
            ``blend.data[:, slice_y, slice_x]`` is the area of the cutout.
        """
        x0, y0 = (int(v) for v in self.origins[index])
        _, h, w = self.cutouts[index].shape
        return slice(y0, y0 + h), slice(x0, x0 + w)

    @property
    def residual(self):
        """`GalaxyImage` of the blend minus every source at its position.

        Built in one frame-size array.  Masked and non-finite input pixels
        are NaN (and masked).
        """
        data = np.array(self.blend.data, dtype=np.float32, copy=True)
        for i, cut in enumerate(self.cutouts):
            data[(slice(None), *self.source_slices(i))] -= cut
        if self.blend.mask is not None:
            data[self.blend.mask] = np.nan
        return self.blend.with_data(data, mask=self.blend.mask)

    @property
    def fluxes(self):
        """``(N,)`` float64 total flux of each source, summed over pixels of all bands."""
        return np.array([np.sum(cut, dtype=np.float64) for cut in self.cutouts],
                        dtype=np.float64)

    def source_image(self, index, *, full_frame=False):
        """Return source ``index`` as a `GalaxyImage`.

        Parameters
        ----------
        index : int
            0-based source position (catalog id minus one).
        full_frame : bool, optional
            Return the whole blend frame (with the blend's WCS) instead of the
            cutout.

        Returns
        -------
        GalaxyImage
            The cutout with its own WCS (the blend's, sliced as
            `astropy.nddata.Cutout2D` does: ``CRPIX`` shifted) and header
            cards ``CUTX0``, ``CUTY0``; or the full frame.

        Examples
        --------
        >>> import numpy as np
        >>> from astropy.wcs import WCS
        >>> from astrodeblend.image import GalaxyImage
        >>> wcs = WCS(naxis=2)
        >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        >>> wcs.wcs.cdelt = [-1e-4, 1e-4]
        >>> blend = GalaxyImage(np.ones((1, 8, 8)), wcs=wcs)
        >>> cut = [np.ones((1, 2, 2))]
        >>> result = DeblendResult(blend, cut, DeblendResult.make_catalog(
        ...     blend, cut, [4.5], [3.5], origins=[(4, 3)]), np.zeros((8, 8)),
        ...     origins=[(4, 3)])
        >>> image = result.source_image(0)
        >>> image.shape, image.meta["CUTX0"], image.meta["CUTY0"]
        ((1, 2, 2), 4, 3)
        >>> bool(np.allclose(image.wcs.pixel_to_world_values(0, 0),
        ...                  blend.wcs.pixel_to_world_values(4, 3)))
        True
        """
        slices = self.source_slices(index)
        if full_frame:
            frame = np.zeros(self.blend.shape, dtype=np.float32)
            frame[(slice(None), *slices)] = self.cutouts[index]
            return self.blend.with_data(frame)
        x0, y0 = (int(v) for v in self.origins[index])
        wcs = None if self.blend.wcs is None else self.blend.wcs.slice(slices)
        meta = self.blend.meta.copy()
        if wcs is not None:
            for axis in (1, 2):
                if f"CRPIX{axis}" in meta:
                    meta[f"CRPIX{axis}"] = float(wcs.wcs.crpix[axis - 1])
        meta["CUTX0"] = (x0, "0-based column of pixel (0, 0) in the blend")
        meta["CUTY0"] = (y0, "0-based row of pixel (0, 0) in the blend")
        return GalaxyImage(self.cutouts[index], wcs=wcs, meta=meta, unit=self.blend.unit,
                           bands=self.blend.bands, source=self.blend.source)

    def __len__(self):
        return self.n_sources

    def __repr__(self):
        return (f"<DeblendResult {self.n_sources} sources, shape={self.blend.shape}, "
                f"model={self.model_name!r}, flux_mode={self.flux_mode!r}>")

    @staticmethod
    def make_catalog(blend, sources, x_centroid, y_centroid, *, bboxes=None, origins=None):
        """Build the catalog table of `CATALOG_COLUMNS` for sources and their centres.

        Parameters
        ----------
        blend : GalaxyImage
            The input (for the WCS and the mask).
        sources : array-like or sequence of array-like
            ``(N, C, H, W)`` full-frame source images, or with ``origins`` N
            cutouts ``(C, h, w)``.  ``flux`` is their per-band sum over
            pixels that are finite and not masked in ``blend``.
        x_centroid, y_centroid : array-like
            0-based pixel centres in the blend frame, one per source.
        bboxes : array-like, optional
            ``(N, 4)`` as ``xmin, xmax, ymin, ymax`` (inclusive, frame
            pixels).  By default the box of pixels holding 99 % of each
            source's positive flux (the whole cutout when it has none).
        origins : array-like of int, optional
            ``(N, 2)`` ``(x0, y0)`` of the cutouts in the blend frame.

        Returns
        -------
        `~astropy.table.Table`
        """
        if origins is None:
            array = np.asarray(sources)
            if array.size % blend.data.size == 0:  # (C, H, W) for one source works too
                array = array.reshape(-1, *blend.shape)
            n = len(array)
            if array.ndim != 4 or array.shape[1:] != blend.shape:
                expected = ", ".join(map(str, blend.shape))
                raise InvalidInputError(f"sources must have shape (N, {expected}), "
                                        f"got {array.shape}")
            cutouts, origins = array, np.zeros((n, 2), dtype=np.int64)
        else:
            cutouts, origins = _check_cutouts(blend, sources, origins)
        x = np.asarray(x_centroid, dtype=float).reshape(-1)
        y = np.asarray(y_centroid, dtype=float).reshape(-1)
        ra, dec = blend.pixel_to_radec(x, y) if len(x) else (np.zeros(0), np.zeros(0))
        flux = np.zeros((len(cutouts), blend.n_bands))
        boxes = []
        for i, (cut, (x0, y0)) in enumerate(zip(cutouts, origins, strict=True)):
            cut = _zero_bad(blend, np.asarray(cut, dtype=np.float32), x0, y0)
            flux[i] = cut.sum(axis=(1, 2), dtype=np.float64)
            if bboxes is None:
                xmin, xmax, ymin, ymax = _flux_bbox(cut)
                boxes.append((xmin + x0, xmax + x0, ymin + y0, ymax + y0))
        if bboxes is None:
            bboxes = boxes
        bboxes = np.asarray(bboxes, dtype=np.int64).reshape(-1, 4)
        table = Table()
        table["id"] = np.arange(1, len(x) + 1, dtype=np.int32)
        table["x_centroid"] = x
        table["y_centroid"] = y
        table["ra"] = ra
        table["dec"] = dec
        table["flux"] = flux.reshape(len(x), blend.n_bands)
        for i, name in enumerate(("bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax")):
            table[name] = bboxes[:, i]
        return table


def _check_cutouts(blend, sources, origins):
    """Validate cutouts and origins; return (list of float32 (C, h, w), int64 (N, 2))."""
    n_bands, height, width = blend.shape
    origins = np.asarray(origins)
    if origins.size == 0:
        origins = np.zeros((0, 2), dtype=np.int64)
    if origins.ndim != 2 or origins.shape[1] != 2:
        raise InvalidInputError(f"origins must have shape (N, 2) as (x0, y0), "
                                f"got {origins.shape}")
    if origins.dtype.kind not in "iu":
        if origins.dtype.kind != "f" or not np.all(np.isfinite(origins)) \
                or not np.all(origins == np.round(origins)):
            raise InvalidInputError("origins must be whole pixel numbers (x0, y0)")
    origins = origins.astype(np.int64)
    if len(sources) != len(origins):
        raise InvalidInputError(f"{len(sources)} cutouts given with {len(origins)} origins")
    cutouts = []
    for i, (cut, (x0, y0)) in enumerate(zip(sources, origins, strict=True)):
        cut = np.asarray(cut, dtype=np.float32)
        if cut.ndim == 2 and n_bands == 1:
            cut = cut[np.newaxis]
        if cut.ndim != 3 or cut.shape[0] != n_bands or 0 in cut.shape:
            raise InvalidInputError(f"cutout {i} must have shape ({n_bands}, h, w) with "
                                    f"h, w >= 1, got {cut.shape}")
        h, w = cut.shape[1:]
        if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
            raise InvalidInputError(
                f"cutout {i} ({h}x{w} pixels at x0={x0}, y0={y0}) does not lie inside the "
                f"{height}x{width} blend frame")
        cutouts.append(cut)
    return cutouts, origins


def _content_box(plane):
    """Return (y0, y1, x0, x1) (end exclusive) of the True pixels of ``plane``, or None."""
    rows = np.flatnonzero(plane.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(plane.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _trim_frame(source, bad, centre):
    """Trim a full-frame ``(C, H, W)`` source to its nonzero, good pixels.

    Returns ``(cutout, (x0, y0))``; an empty source becomes a 1x1 cutout at
    ``centre`` (rounded, clipped into the frame), or at (0, 0).
    """
    return _trim(source, bad, (0, 0), centre, source.shape[1:])


def _trim_cutout(blend, cut, origin, centre):
    """Trim a cutout at ``origin`` ``(x0, y0)`` of ``blend`` as `_trim_frame` trims a frame.

    The same cutout and origin as the full-frame source with ``cut`` at
    ``origin`` and zeros elsewhere would give, without making that frame.
    """
    x0, y0 = (int(v) for v in origin)
    _, h, w = cut.shape
    bad = None if blend.mask is None else blend.mask[:, y0:y0 + h, x0:x0 + w]
    return _trim(cut, bad, (x0, y0), centre, blend.shape[1:])


def _trim(cut, bad, origin, centre, frame):
    """Box of ``cut``'s nonzero, finite pixels not ``bad``, in a ``frame`` (H, W) at ``origin``."""
    keep = (cut != 0) & np.isfinite(cut)
    if bad is not None:
        keep &= ~bad
    box = _content_box(keep.any(axis=0))
    if box is None:
        height, width = frame
        x, y = centre
        if np.isfinite(x) and np.isfinite(y):
            x0 = int(np.clip(np.round(x), 0, width - 1))
            y0 = int(np.clip(np.round(y), 0, height - 1))
        else:
            x0 = y0 = 0
        return np.zeros((cut.shape[0], 1, 1), dtype=np.float32), (x0, y0)
    y0, y1, x0, x1 = box
    return np.array(cut[:, y0:y1, x0:x1], dtype=np.float32), (origin[0] + x0, origin[1] + y0)


def _trim_frames(blend, sources, catalog):
    """Trim ``(N, C, H, W)`` full-frame sources to cutouts; see `DeblendResult`."""
    array = np.asarray(sources)
    if array.size == 0:
        return [], np.zeros((0, 2), dtype=np.int64)
    if array.ndim != 4 or array.shape[1:] != blend.shape:
        expected = ", ".join(map(str, blend.shape))
        raise InvalidInputError(f"sources must have shape (N, {expected}), "
                                f"got {array.shape}")
    if len(catalog) != len(array):
        raise InvalidInputError(f"catalog has {len(catalog)} rows for {len(array)} sources")
    cutouts, origins = [], []
    for i, source in enumerate(array):
        centre = (float(catalog["x_centroid"][i]), float(catalog["y_centroid"][i]))
        cut, origin = _trim_frame(source, blend.mask, centre)
        cutouts.append(cut)
        origins.append(origin)
    return cutouts, np.asarray(origins, dtype=np.int64).reshape(-1, 2)


def _zero_bad(blend, cut, x0, y0):
    """Return ``cut`` with non-finite values and pixels masked in ``blend`` set to 0."""
    bad = ~np.isfinite(cut)
    if blend.mask is not None:
        _, h, w = cut.shape
        bad |= blend.mask[:, y0:y0 + h, x0:x0 + w]
    if bad.any():
        cut = cut.copy()
        cut[bad] = 0.0
    return cut


def _flux_bbox(source, fraction=0.99):
    """Return the (xmin, xmax, ymin, ymax) box of the pixels holding ``fraction`` of the flux."""
    plane = np.clip(np.nan_to_num(source.sum(axis=0), nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    total = plane.sum()
    h, w = plane.shape
    if total <= 0:
        return (0, w - 1, 0, h - 1)
    order = np.sort(plane.ravel())[::-1]
    cut = order[min(np.searchsorted(np.cumsum(order), fraction * total), order.size - 1)]
    ys, xs = np.nonzero(plane >= cut)
    return (int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max()))
