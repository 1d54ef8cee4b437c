"""Classic deblenders with the `~astrodeblend.pipeline.Deblender` interface.

Two reference methods against which the GAN is measured.  Both detect
sources with `astrodeblend.detect.find_centers` (photutils: threshold,
multi-threshold deblending and watershed) and return a
`~astrodeblend.result.DeblendResult`, so they plug in wherever a
`~astrodeblend.pipeline.Deblender` does (``astrodeblend deblend --method``,
``astrodeblend evaluate --methods``):

- `SegmentationDeblender`: source *i* is the image inside photutils'
  segment *i* and zero elsewhere, the classic SExtractor answer.  Light of
  one galaxy that falls in the neighbour's segment is lost to it.
- `FluxShareDeblender`: the symmetric-template flux sharing of the SDSS
  photometric pipeline (Lupton et al.): a template per peak,
  ``T_i(p) = min(I(p), I(p'))`` with ``p'`` the reflection of ``p`` through
  the peak, and every pixel split among the sources in proportion to the
  templates, so that the sources add up to the image exactly.

Both accept any number of bands, masked pixels (treated as zero and left
at zero in every source) and images without any detectable source (zero
sources; the residual is the whole image).
"""

from __future__ import annotations

import numpy as np

from .image import as_galaxy_image
from .result import DeblendResult

__all__ = ["SegmentationDeblender", "FluxShareDeblender"]


class _BaselineDeblender:
    """Shared detection, parameters and result building of the baselines."""

    name = ""
    model_hash = ""

    def __init__(self, *, n_sigma=3.0, n_pixels=10, n_levels=32, contrast=0.001):
        from .errors import InvalidInputError

        if not float(n_sigma) > 0:
            raise InvalidInputError(f"n_sigma must be positive, not {n_sigma}")
        if int(n_pixels) < 1:
            raise InvalidInputError(f"n_pixels must be at least 1, not {n_pixels}")
        if int(n_levels) < 1:
            raise InvalidInputError(f"n_levels must be at least 1, not {n_levels}")
        if not 0 <= float(contrast) <= 1:
            raise InvalidInputError(f"contrast must be in [0, 1], not {contrast}")
        self.n_sigma = float(n_sigma)
        self.n_pixels = int(n_pixels)
        self.n_levels = int(n_levels)
        self.contrast = float(contrast)

    @property
    def parameters(self):
        """Dict of the detection parameters."""
        return {"n_sigma": self.n_sigma, "n_pixels": self.n_pixels,
                "n_levels": self.n_levels, "contrast": self.contrast}

    @property
    def history(self):
        """One line per processing step with its parameters (for FITS ``HISTORY``)."""
        detect = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        return [f"astrodeblend detect.find_centers({detect}) (photutils)"]

    def _detect(self, image):
        from .detect import find_centers

        return find_centers(image, n_sigma=self.n_sigma, n_pixels=self.n_pixels,
                            n_levels=self.n_levels, contrast=self.contrast)

    def _result(self, image, sources, x, y, segmap, origins=None):
        catalog = DeblendResult.make_catalog(image, sources, x, y, origins=origins)
        return DeblendResult(image, sources, catalog, segmap, origins=origins,
                             model_name=self.name, model_hash=self.model_hash,
                             history=self.history)

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters.items())
        return f"{type(self).__name__}({params})"


class SegmentationDeblender(_BaselineDeblender):
    """Deblend by segmentation: each source is the image inside its segment.

    Detection and segmentation are photutils' (`astrodeblend.detect.find_centers`:
    threshold at ``n_sigma`` times the sky noise, ``n_pixels`` connected
    pixels, then ``deblend_sources`` with ``n_levels`` and ``contrast``:
    multi-thresholding followed by a watershed).  Source *i* equals the
    image on the pixels of segment *i* and zero elsewhere; the residual is
    the image outside all segments.  Each source is made as a cutout over
    its segment, so that memory grows with the segments' area, not with
    sources x frame.

    Parameters
    ----------
    n_sigma : float, optional
        Detection threshold in units of the per-band sky noise.
    n_pixels : int, optional
        Minimum number of connected pixels of a source.
    n_levels : int, optional
        Number of multi-thresholding levels of the deblending.
    contrast : float, optional
        Fraction of the total flux a local peak needs to become a source.

    Attributes
    ----------
    name : str
        ``'segmentation'``.
    model_hash : str
        Empty: no learned weights.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:48, :64]
    >>> blend = sum(np.exp(-0.5 * ((xx - x) ** 2 + (yy - 24) ** 2) / 9) for x in (20, 44))
    >>> blend = blend + np.random.default_rng(0).normal(0, 0.01, blend.shape)
    >>> result = SegmentationDeblender()(blend)
    >>> result.n_sources, result.model_name
    (2, 'segmentation')
    """

    name = "segmentation"

    @property
    def history(self):
        """One line per processing step with its parameters (for FITS ``HISTORY``)."""
        return [*super().history,
                "astrodeblend SegmentationDeblender: source i = image inside segment i"]

    def __call__(self, image):
        """Deblend ``image``.

        Parameters
        ----------
        image : GalaxyImage, `~astropy.nddata.NDData` or array-like
            ``(H, W)`` or ``(C, H, W)`` image.

        Returns
        -------
        DeblendResult
        """
        from scipy.ndimage import find_objects

        from .result import _trim_cutout

        image = as_galaxy_image(image)
        data = image.filled(0.0)
        detections = self._detect(image)
        catalog, segmap = detections.catalog, np.asarray(detections.segmap)
        labels = np.asarray(catalog["id"], dtype=np.int64) if len(catalog) else np.zeros(0, int)
        x = np.asarray(catalog["x_centroid"], dtype=float) if len(catalog) else np.zeros(0)
        y = np.asarray(catalog["y_centroid"], dtype=float) if len(catalog) else np.zeros(0)
        boxes = find_objects(segmap, max_label=int(labels.max()) if labels.size else 0)
        cutouts, origins = [], []
        for label, xc, yc in zip(labels, x, y, strict=True):
            box = boxes[label - 1] or (slice(0, 0), slice(0, 0))
            inside = segmap[box] == label
            cut = np.where(inside, data[(slice(None), *box)], np.float32(0.0))
            cut, origin = _trim_cutout(image, cut.astype(np.float32),
                                      (box[1].start, box[0].start), (xc, yc))
            cutouts.append(cut)
            origins.append(origin)
        origins = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
        return self._result(image, cutouts, x, y, _relabel(segmap, labels), origins=origins)


class FluxShareDeblender(_BaselineDeblender):
    """Deblend by symmetric-template flux sharing (the SDSS method).

    For each source found by `astrodeblend.detect.find_centers`, the centre
    of symmetry is the brightest pixel of its segment in the detection image,
    refined to the nearest half pixel by its 3x3 first moment.  Its
    template is ``T_i(p) = max(0, min(I(p), I(p')))`` with ``p'`` the
    reflection of pixel ``p`` through the centre (zero where ``p'`` falls
    off the image or on a masked pixel), either per band on the
    sky-subtracted image (``templates='band'``, sky from
    `astrodeblend.detect.background_and_noise`) or on the detection image,
    shared by all bands (``templates='detection'``).
    Every pixel of the image is then split among the sources in
    proportion to their templates; pixels where every template is zero go
    to the source whose segment holds them, or to the nearest centre.  The
    sources therefore add up to the image exactly (flux conservation): the
    residual is zero up to float rounding, and masked pixels stay zero.

    Parameters
    ----------
    n_sigma : float, optional
        Detection threshold in units of the per-band sky noise.
    n_pixels : int, optional
        Minimum number of connected pixels of a source.
    n_levels : int, optional
        Number of multi-thresholding levels of the deblending.
    contrast : float, optional
        Fraction of the total flux a local peak needs to become a source.
    templates : {'band', 'detection'}, optional
        Build the templates in each band (colours may differ between
        sources) or once on the detection image (each source gets the
        blend's colour at every pixel).

    Attributes
    ----------
    name : str
        ``'fluxshare'``.
    model_hash : str
        Empty: no learned weights.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:48, :64]
    >>> blend = sum(np.exp(-0.5 * ((xx - x) ** 2 + (yy - 24) ** 2) / 9) for x in (20, 44))
    >>> blend = blend + np.random.default_rng(0).normal(0, 0.01, blend.shape)
    >>> result = FluxShareDeblender()(blend)
    >>> result.n_sources, bool(np.allclose(result.sources.sum(axis=0), blend, atol=1e-5))
    (2, True)
    """

    name = "fluxshare"

    def __init__(self, *, n_sigma=3.0, n_pixels=10, n_levels=32, contrast=0.001,
                 templates="band"):
        from .errors import InvalidInputError

        super().__init__(n_sigma=n_sigma, n_pixels=n_pixels, n_levels=n_levels,
                         contrast=contrast)
        if templates not in ("band", "detection"):
            raise InvalidInputError(f"templates must be 'band' or 'detection', "
                                    f"not {templates!r}")
        self.templates = templates

    @property
    def parameters(self):
        """Dict of the detection and template parameters."""
        return {**super().parameters, "templates": self.templates}

    @property
    def history(self):
        """One line per processing step with its parameters (for FITS ``HISTORY``)."""
        return [*super().history,
                f"astrodeblend FluxShareDeblender: symmetric templates min(I(p), I(p')) "
                f"about each peak ({self.templates}), pixels shared in proportion"]

    def __call__(self, image):
        """Deblend ``image``.

        Parameters
        ----------
        image : GalaxyImage, `~astropy.nddata.NDData` or array-like
            ``(H, W)`` or ``(C, H, W)`` image.

        Returns
        -------
        DeblendResult
        """
        from .detect import background_and_noise, detection_image

        image = as_galaxy_image(image)
        data = image.filled(0.0).astype(np.float64)
        valid = np.ones(image.shape, dtype=bool) if image.mask is None else ~image.mask
        detections = self._detect(image)
        catalog, segmap = detections.catalog, np.asarray(detections.segmap)
        n = len(catalog)
        if n == 0:
            empty = np.zeros((0, *image.shape), dtype=np.float32)
            return self._result(image, empty, [], [], np.zeros(segmap.shape, np.int32))
        labels = np.asarray(catalog["id"], dtype=np.int64)
        det = np.nan_to_num(np.asarray(detection_image(image), dtype=np.float64))
        centres = np.array([_symmetry_centre(det, segmap == label) for label in labels])
        if self.templates == "band":
            background, _ = background_and_noise(image)
            planes = data - np.nan_to_num(background)[:, np.newaxis, np.newaxis]
            plane_valid = valid
        else:
            planes, plane_valid = det[np.newaxis], valid.all(axis=0)[np.newaxis]
        templates = np.stack([_symmetric_template(planes, plane_valid, cx, cy)
                              for cx, cy in centres])          # (N, C or 1, H, W)
        total = templates.sum(axis=0)
        owner = _owner_map(segmap, labels, centres)           # (H, W) index 0..N-1
        weights = np.divide(templates, total, out=np.zeros_like(templates), where=total > 0)
        fallback = np.broadcast_to(total <= 0, templates.shape[1:])
        for i in range(n):
            weights[i][fallback & (owner == i)] = 1.0
        sources = (weights * data[np.newaxis]).astype(np.float32)
        return self._result(image, sources, centres[:, 0], centres[:, 1],
                            _relabel(segmap, labels))


def _relabel(segmap, labels):
    """Return ``segmap`` with label ``labels[i]`` renumbered ``i + 1`` and others 0."""
    segmap = np.asarray(segmap)
    top = max(int(segmap.max(initial=0)), int(np.max(labels, initial=0)))
    lookup = np.zeros(top + 1, dtype=np.int32)
    lookup[np.asarray(labels, dtype=np.int64)] = np.arange(1, len(labels) + 1, dtype=np.int32)
    return lookup[np.clip(segmap, 0, None)]


def _symmetry_centre(det, inside):
    """Peak of ``det`` inside a segment, refined to the nearest half pixel."""
    values = np.where(inside, det, -np.inf)
    py, px = np.unravel_index(np.argmax(values), det.shape)
    h, w = det.shape
    y0, y1, x0, x1 = max(py - 1, 0), min(py + 2, h), max(px - 1, 0), min(px + 2, w)
    patch = np.clip(det[y0:y1, x0:x1], 0, None)
    if patch.sum() > 0:
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cx = float((patch * xx).sum() / patch.sum())
        cy = float((patch * yy).sum() / patch.sum())
    else:
        cx, cy = float(px), float(py)
    return np.round(2 * cx) / 2, np.round(2 * cy) / 2


def _symmetric_template(planes, valid, cx, cy):
    """``max(0, min(I(p), I(p')))`` with ``p' = 2 c - p``; zero where ``p'`` is unusable."""
    _, h, w = planes.shape
    sx, sy = int(round(2 * cx)), int(round(2 * cy))
    yy, xx = np.mgrid[:h, :w]
    rx, ry = sx - xx, sy - yy
    on = (rx >= 0) & (rx < w) & (ry >= 0) & (ry < h)
    rxc, ryc = np.clip(rx, 0, w - 1), np.clip(ry, 0, h - 1)
    mirrored = planes[:, ryc, rxc]
    usable = on[np.newaxis] & valid & valid[:, ryc, rxc]
    return np.where(usable, np.clip(np.minimum(planes, mirrored), 0, None), 0.0)


def _owner_map(segmap, labels, centres):
    """Index of the source owning each pixel: its segment, else the nearest centre."""
    h, w = segmap.shape
    yy, xx = np.mgrid[:h, :w]
    dist = np.stack([np.hypot(xx - cx, yy - cy) for cx, cy in centres])
    owner = np.argmin(dist, axis=0)
    for i, label in enumerate(labels):
        owner[segmap == label] = i
    return owner
