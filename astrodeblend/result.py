"""`DeblendResult`: what a deblender returns and what the FITS writer stores."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from .errors import InvalidInputError
from .image import GalaxyImage

__all__ = ["DeblendResult", "CATALOG_COLUMNS"]

#: Columns of `DeblendResult.catalog`, in the order of spec/fits-output.md.
CATALOG_COLUMNS = ("id", "x_centroid", "y_centroid", "ra", "dec", "flux",
                   "bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax")


class DeblendResult:
    """The deblended sources of one image.

    Parameters
    ----------
    blend : GalaxyImage
        The input image as read.
    sources : array-like
        ``(N, C, H, W)`` deblended images, one per source, same plane and
        bands as ``blend``.
    catalog : `~astropy.table.Table`
        One row per source with at least the columns of `CATALOG_COLUMNS`
        (``flux`` holds one value per band).
    segmap : array-like of int
        ``(H, W)`` segmentation map of the detection step: 0 is background,
        ``i`` is source ``i`` (1-based, as the catalog ``id``).
    model_name : str, optional
        Name of the model used (``'default'``, a checkpoint file name,
        ``'segmentation'`` for a baseline, ...).
    model_hash : str, optional
        sha256 (hex) of the model weights; empty for a classic method.
    history : list of str, optional
        One line per processing step with its parameters, in order.

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
    """

    def __init__(self, blend, sources, catalog, segmap, *, model_name="", model_hash="",
                 history=None):
        if not isinstance(blend, GalaxyImage):
            raise InvalidInputError("blend must be a GalaxyImage")
        sources = np.asarray(sources, dtype=np.float32)
        if sources.size == 0:
            sources = np.zeros((0, *blend.shape), dtype=np.float32)
        if sources.ndim != 4 or sources.shape[1:] != blend.shape:
            expected = ", ".join(map(str, blend.shape))
            raise InvalidInputError(f"sources must have shape (N, {expected}), "
                                    f"got {sources.shape}")
        segmap = np.asarray(segmap)
        if segmap.shape != blend.shape[1:]:
            raise InvalidInputError(f"segmap shape {segmap.shape} does not match the image "
                                    f"plane {blend.shape[1:]}")
        if len(catalog) != len(sources):
            raise InvalidInputError(f"catalog has {len(catalog)} rows for {len(sources)} sources")
        missing = [c for c in CATALOG_COLUMNS if c not in catalog.colnames]
        if missing:
            raise InvalidInputError(f"catalog lacks columns {missing}")
        self.blend = blend
        self.sources = sources
        self.catalog = catalog
        self.segmap = segmap.astype(np.int32)
        self.model_name = str(model_name)
        self.model_hash = str(model_hash)
        self.history = list(history or [])

    @property
    def n_sources(self):
        """Number of deblended sources."""
        return len(self.sources)

    @property
    def residual(self):
        """`GalaxyImage` of the blend minus the sum of all sources."""
        data = self.blend.filled(0.0) - self.sources.sum(axis=0)
        return self.blend.with_data(data, mask=self.blend.mask)

    @property
    def fluxes(self):
        """``(N,)`` total flux of each source, summed over pixels of all bands."""
        return self.sources.reshape(self.n_sources, -1).sum(axis=1, dtype=np.float64)

    def source_image(self, index):
        """Return source ``index`` (0-based) as a `GalaxyImage` with the blend's WCS.

        Parameters
        ----------
        index : int
            0-based position in `sources` (catalog id minus one).

        Returns
        -------
        GalaxyImage
        """
        return self.blend.with_data(self.sources[index])

    def __len__(self):
        return self.n_sources

    def __repr__(self):
        return (f"<DeblendResult {self.n_sources} sources, shape={self.blend.shape}, "
                f"model={self.model_name!r}>")

    @staticmethod
    def make_catalog(blend, sources, x_centroid, y_centroid, *, bboxes=None):
        """Build the catalog table of `CATALOG_COLUMNS` for sources and their centres.

        Parameters
        ----------
        blend : GalaxyImage
            The input (for the WCS).
        sources : array-like
            ``(N, C, H, W)`` source images; ``flux`` is their per-band sum.
        x_centroid, y_centroid : array-like
            0-based pixel centres, one per source.
        bboxes : array-like, optional
            ``(N, 4)`` as ``xmin, xmax, ymin, ymax`` (inclusive).  By default
            the box of pixels holding 99 % of each source's positive flux.

        Returns
        -------
        `~astropy.table.Table`
        """
        sources = np.asarray(sources, dtype=np.float32).reshape(-1, *blend.shape)
        x = np.asarray(x_centroid, dtype=float).reshape(-1)
        y = np.asarray(y_centroid, dtype=float).reshape(-1)
        ra, dec = blend.pixel_to_radec(x, y) if len(x) else (np.zeros(0), np.zeros(0))
        flux = sources.sum(axis=(2, 3)).astype(float)
        if bboxes is None:
            bboxes = [_flux_bbox(s) for s in sources]
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
