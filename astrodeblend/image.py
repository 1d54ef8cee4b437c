"""The common image model: `GalaxyImage`.

Every reader returns a `GalaxyImage` and every processing step takes one.
It is an `astropy.nddata.NDData` whose data are always ``float32`` arrays of
shape ``(C, H, W)``: bands first, as in a FITS cube and as in a torch
tensor.  Pixel coordinates are 0-based ``(x, y)`` with ``x`` the column and
``y`` the row, and row 0 is the *bottom* of the image as displayed with
``origin='lower'`` (FITS orientation).  JPG readers flip rows so that every
image is stored the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import NDData
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from .errors import InvalidInputError

__all__ = ["GalaxyImage", "as_galaxy_image", "celestial_wcs", "looks_display"]


def celestial_wcs(wcs):
    """Return the two-dimensional celestial part of a WCS, or None.

    Dummy third axes (``CTYPE3 = 'GROUP_NUMBER'``, spectral axes of a cube)
    are dropped.  A WCS without celestial axes but with two pixel axes is
    kept as it is (a linear WCS is still useful for pasting back).

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS` or None
        The WCS to reduce.

    Returns
    -------
    `~astropy.wcs.WCS` or None
        A WCS with ``naxis == 2`` or None when ``wcs`` is None or has no
        usable pair of axes.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=3)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN", "GROUP_NUMBER"]
    >>> celestial_wcs(w).naxis
    2
    """
    if wcs is None:
        return None
    if not isinstance(wcs, WCS):
        raise InvalidInputError(f"wcs must be an astropy.wcs.WCS, not {type(wcs).__name__}")
    if wcs.has_celestial:
        return wcs.celestial
    if wcs.naxis >= 2:
        return wcs.sub(2)
    return None


class GalaxyImage(NDData):
    """A (multi-band) image of one or more galaxies.

    Parameters
    ----------
    data : array-like
        Pixel values, ``(H, W)`` for one band or ``(C, H, W)``.  Stored as
        ``float32`` with shape ``(C, H, W)``.  Non-finite pixels are added
        to the mask.
    uncertainty : `~astropy.nddata.NDUncertainty` or array-like, optional
        One-sigma uncertainties, same shape as ``data``.
    mask : array-like of bool, optional
        True where a pixel is bad.  ``(H, W)`` masks apply to every band.
    wcs : `~astropy.wcs.WCS`, optional
        The celestial WCS of the image plane (extra axes are dropped).
    meta : `~astropy.io.fits.Header` or dict, optional
        Header of the input; stored as a `~astropy.io.fits.Header`.
    unit : `~astropy.units.Unit` or str, optional
        Unit of the pixel values.
    bands : sequence of str, optional
        One name per band; ``band0``, ``band1``, ... by default.
    source : str, optional
        Where the image came from (a file name, ``'simulated'``, ...).

    Raises
    ------
    InvalidInputError
        If the data are not 2-D or 3-D, are empty, have no finite pixel, or
        a mask, uncertainty or band list does not match them.

    Examples
    --------
    >>> import numpy as np
    >>> img = GalaxyImage(np.ones((2, 8, 6)), bands=["g", "r"])
    >>> img.shape, img.bands, img.data.dtype
    ((2, 8, 6), ('g', 'r'), dtype('float32'))
    """

    def __init__(self, data, *, uncertainty=None, mask=None, wcs=None, meta=None,
                 unit=None, bands=None, source=None, psf=None):
        array = _as_chw(data, "data")
        finite = np.isfinite(array)
        if not finite.any():
            raise InvalidInputError(f"image {source or ''} has no finite pixel".replace("  ", " "))
        bad = ~finite
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.ndim == 2 and mask.shape == array.shape[1:]:
                mask = np.broadcast_to(mask, array.shape)
            if mask.shape != array.shape:
                raise InvalidInputError(
                    f"mask shape {mask.shape} does not match data shape {array.shape}")
            bad = bad | mask
        if uncertainty is not None and hasattr(uncertainty, "uncertainty_type"):
            values = np.asarray(uncertainty.array)
            if values.ndim == 2:
                values = values[np.newaxis]
            if values.shape != array.shape:
                raise InvalidInputError(f"uncertainty shape {values.shape} does not match "
                                        f"data shape {array.shape}")
            uncertainty = type(uncertainty)(values, unit=uncertainty.unit, copy=False)
        elif uncertainty is not None:
            from astropy.nddata import StdDevUncertainty

            values = _as_chw(uncertainty, "uncertainty")
            if values.shape != array.shape:
                raise InvalidInputError(f"uncertainty shape {values.shape} does not match "
                                        f"data shape {array.shape}")
            uncertainty = StdDevUncertainty(values)
        if meta is None:
            meta = fits.Header()
        elif not isinstance(meta, fits.Header):
            if not isinstance(meta, Mapping):
                raise InvalidInputError(f"meta must be a FITS header or a dict, "
                                        f"not {type(meta).__name__}")
            header = fits.Header()
            for key, value in meta.items():
                try:
                    with warnings.catch_warnings():
                        # long keys become HIERARCH cards; astropy warns about it
                        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                        header[key] = value
                except (ValueError, TypeError) as exc:
                    raise InvalidInputError(f"meta[{key!r}] cannot be stored in a FITS "
                                            f"header: {exc}") from None
            meta = header
        n_bands = array.shape[0]
        if bands is None:
            bands = tuple(f"band{i}" for i in range(n_bands))
        elif isinstance(bands, str) or not isinstance(bands, Sequence):
            raise InvalidInputError(f"bands must be a sequence of names, not {bands!r}")
        else:
            bands = tuple(str(b) for b in bands)
        if len(bands) != n_bands:
            raise InvalidInputError(f"{len(bands)} band names given for {n_bands} bands")
        super().__init__(array, uncertainty=uncertainty, mask=bad if bad.any() else None,
                         wcs=celestial_wcs(wcs), meta=meta, unit=unit, psf=psf, copy=False)
        self._bands = bands
        self._source = None if source is None else str(source)

    # ------------------------------------------------------------------ basics
    @property
    def bands(self):
        """Tuple of band names, one per plane of `data`."""
        return self._bands

    @property
    def source(self):
        """Where the image came from (file name or description), or None."""
        return self._source

    @property
    def header(self):
        """The FITS header of the input (same object as ``meta``)."""
        return self.meta

    @property
    def shape(self):
        """``(C, H, W)``."""
        return self.data.shape

    @property
    def n_bands(self):
        """Number of bands ``C``."""
        return self.data.shape[0]

    @property
    def height(self):
        """Number of rows ``H``."""
        return self.data.shape[1]

    @property
    def width(self):
        """Number of columns ``W``."""
        return self.data.shape[2]

    @property
    def masked_fraction(self):
        """Fraction of masked pixels over all bands (0 when there is no mask)."""
        return 0.0 if self.mask is None else float(np.mean(self.mask))

    @property
    def pixel_scale(self):
        """Pixel scale as an angle per pixel (arcsec), from the WCS, or None."""
        if self.wcs is None or not self.wcs.has_celestial:
            return None
        scales = proj_plane_pixel_scales(self.wcs)
        return (float(np.mean(scales)) * u.deg).to(u.arcsec)

    @property
    def sky_center(self):
        """`~astropy.coordinates.SkyCoord` of the image centre, or None without WCS."""
        if self.wcs is None or not self.wcs.has_celestial:
            return None
        return self.wcs.pixel_to_world((self.width - 1) / 2, (self.height - 1) / 2)

    def pixel_to_radec(self, x, y):
        """Convert 0-based pixel positions to (RA, Dec) in degrees.

        Parameters
        ----------
        x, y : float or array-like
            0-based pixel coordinates.

        Returns
        -------
        ra, dec : `numpy.ndarray`
            Degrees; NaN when the image has no celestial WCS.

        Examples
        --------
        >>> import numpy as np
        >>> ra, dec = GalaxyImage(np.ones((4, 4))).pixel_to_radec(1.0, 2.0)
        >>> bool(np.isnan(ra))
        True
        """
        x = np.atleast_1d(np.asarray(x, dtype=float))
        y = np.atleast_1d(np.asarray(y, dtype=float))
        if self.wcs is None or not self.wcs.has_celestial:
            nan = np.full(x.shape, np.nan)
            return nan, nan.copy()
        ra, dec = self.wcs.all_pix2world(x, y, 0)
        return np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)

    def filled(self, value=0.0):
        """Return the data with masked pixels replaced by ``value``.

        Parameters
        ----------
        value : float, optional
            Fill value for masked (and non-finite) pixels.

        Returns
        -------
        `numpy.ndarray`
            A new ``float32`` array of shape ``(C, H, W)``.

        Examples
        --------
        >>> import numpy as np
        >>> GalaxyImage(np.array([[1.0, np.nan]])).filled()[0]
        array([[1., 0.]], dtype=float32)
        """
        out = np.array(self.data, dtype=np.float32, copy=True)
        if self.mask is not None:
            out[self.mask] = value
        return out

    def with_data(self, data, *, mask=None, uncertainty=None):
        """Return a new image with other pixel values and the same WCS, bands and header.

        Parameters
        ----------
        data : array-like
            New pixel values, same ``(H, W)`` plane as this image.
        mask, uncertainty : array-like, optional
            Mask and uncertainty of the new image (none by default).

        Returns
        -------
        GalaxyImage

        Examples
        --------
        >>> import numpy as np
        >>> img = GalaxyImage(np.ones((3, 4, 4)), bands=["g", "r", "i"])
        >>> img.with_data(2 * img.data).bands
        ('g', 'r', 'i')
        """
        array = _as_chw(data, "data")
        bands = self.bands if array.shape[0] == self.n_bands else None
        return GalaxyImage(array, mask=mask, uncertainty=uncertainty, wcs=self.wcs,
                           meta=self.meta.copy(), unit=self.unit, bands=bands,
                           source=self.source)

    # ------------------------------------------------------------------- torch
    def to_tensor(self, *, device=None, dtype=None, fill=0.0):
        """Return the pixels as a ``(C, H, W)`` torch tensor, masked pixels filled.

        Parameters
        ----------
        device : str or `torch.device`, optional
            Device of the tensor (CPU by default).
        dtype : `torch.dtype`, optional
            Defaults to ``torch.float32``.
        fill : float, optional
            Value of masked pixels.

        Returns
        -------
        `torch.Tensor`

        Examples
        --------
        >>> import numpy as np
        >>> GalaxyImage(np.ones((2, 3, 3))).to_tensor().shape
        torch.Size([2, 3, 3])
        """
        import torch

        tensor = torch.from_numpy(self.filled(fill))
        return tensor.to(device=device, dtype=dtype or torch.float32)

    @classmethod
    def from_tensor(cls, tensor, *, like=None, **kwargs):
        """Build an image from a ``(C, H, W)`` or ``(H, W)`` tensor.

        Parameters
        ----------
        tensor : `torch.Tensor`
            Pixel values on any device.
        like : GalaxyImage, optional
            Take WCS, header, unit, bands and source from this image.
        **kwargs
            Passed to `GalaxyImage` (override what ``like`` gives).

        Returns
        -------
        GalaxyImage

        Examples
        --------
        >>> import torch
        >>> GalaxyImage.from_tensor(torch.zeros(1, 4, 5) + 1).shape
        (1, 4, 5)
        """
        array = tensor.detach().to("cpu").float().numpy()
        if like is not None:
            defaults = dict(wcs=like.wcs, meta=like.meta.copy(), unit=like.unit,
                            bands=like.bands if _as_chw(array, "tensor").shape[0] == like.n_bands
                            else None, source=like.source)
            defaults.update(kwargs)
            kwargs = defaults
        return cls(array, **kwargs)

    def __repr__(self):
        scale = self.pixel_scale
        scale = "none" if scale is None else f"{scale.value:.3g} arcsec/pix"
        return (f"<GalaxyImage shape={self.shape} bands={list(self.bands)} "
                f"wcs={'yes' if self.wcs is not None else 'no'} scale={scale} "
                f"source={self.source!r}>")

    __str__ = __repr__  # NDData's str() prints every pixel


def _as_chw(data, name):
    """Return ``data`` as a float32 ``(C, H, W)`` array or raise `InvalidInputError`."""
    if hasattr(data, "detach"):  # a torch tensor
        data = data.detach().to("cpu").numpy()
    try:
        array = np.asarray(data)
    except Exception as exc:  # noqa: BLE001 - report any conversion failure alike
        raise InvalidInputError(f"{name} cannot be converted to an array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be real numbers, not dtype {array.dtype}")
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise InvalidInputError(f"{name} must be 2-D (H, W) or 3-D (C, H, W), "
                                f"got {array.ndim}-D shape {array.shape}")
    if 0 in array.shape:
        raise InvalidInputError(f"{name} is empty (shape {array.shape})")
    return np.asarray(array, dtype=np.float32)


def as_galaxy_image(image, *, wcs=None, bands=None):
    """Coerce a `GalaxyImage`, `~astropy.nddata.NDData` or array to a `GalaxyImage`.

    This is the one entry point that every processing function uses to
    accept the kinds of image a user may hold.

    Parameters
    ----------
    image : GalaxyImage, `~astropy.nddata.NDData` or array-like
        ``(H, W)`` or ``(C, H, W)`` pixels.
    wcs : `~astropy.wcs.WCS`, optional
        WCS for a plain array (ignored when ``image`` carries its own).
    bands : sequence of str, optional
        Band names for a plain array or NDData.

    Returns
    -------
    GalaxyImage

    Raises
    ------
    InvalidInputError
        If ``image`` cannot be read as a 2-D or 3-D image.

    Examples
    --------
    >>> import numpy as np
    >>> as_galaxy_image(np.ones((5, 5))).shape
    (1, 5, 5)
    """
    if isinstance(image, GalaxyImage):
        return image
    if isinstance(image, NDData):
        meta = image.meta if isinstance(image.meta, (fits.Header, Mapping)) else None
        return GalaxyImage(image.data, mask=image.mask, uncertainty=image.uncertainty,
                           wcs=image.wcs if image.wcs is not None else wcs,
                           meta=meta, unit=image.unit, bands=bands)
    return GalaxyImage(image, wcs=wcs, bands=bands)


#: Lowest noise (in 8-bit levels) of a 0-1 display image: a noiseless
#: simulation's smooth profile has far less, a JPG's sky a level or more.
DISPLAY_MIN_NOISE = 0.25


def looks_display(image, bad=None):
    """Return whether an image holds a JPG's display values (its RGB saved as FITS).

    True for three planes without a celestial WCS whose values are all
    non-negative and either 8-bit levels (integers of 0-255, or multiples
    of 1/255 up to 1) or floats of 0-1 or 0-255 with some noise, the
    faintest at a black point: their 0.5th percentile below the noise of
    the faintest half of the pixels (a display stretch clips the sky at
    black, where linear flux scatters around its sky level).  Survey data
    and linear simulations (a WCS, negative noise, a sky level above black,
    noiseless profiles) are not taken for display values.

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage`
        The image.
    bad : `numpy.ndarray`, optional
        ``(C, H, W)`` pixels to ignore (NaN and the image's mask by default).

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> rgb = np.clip(rng.normal(0.02, 0.01, (3, 40, 40)), 0, 1)  # sky clipped at black
    >>> rgb[:, 15:25, 15:25] += 0.6
    >>> looks_display(GalaxyImage(rgb))
    True
    >>> looks_display(GalaxyImage(rgb + 0.05)), looks_display(GalaxyImage(rgb - 0.01))
    (False, False)
    """
    if image.shape[0] != 3 or image.wcs is not None:
        return False
    step = int(np.ceil(image.shape[1] * image.shape[2] / 2**20))  # rows of large images
    data = image.data[:, ::step]
    if bad is None:
        bad = ~np.isfinite(data)
        if image.mask is not None:
            bad = bad | image.mask[:, ::step]
    else:
        bad = np.asarray(bad)[:, ::step]
    values = data[~bad]
    if values.size < 100:
        return False
    low, top = float(values.min()), float(values.max())
    if low < 0 or not 0 < top <= 255:
        return False
    levels = values * np.float32(255.0 if top <= 1 else 1.0)
    if np.all(np.abs(levels - np.round(levels)) < 1e-3):  # 8-bit values
        return bool(np.percentile(levels, 0.5) < 1)
    faint = np.where(bad, np.nan, data * np.float32(255.0 if top <= 1 else 1.0))
    cut = np.percentile(levels, 50)
    jumps = np.diff(faint, axis=-1)[faint[..., 1:] <= cut]
    jumps = jumps[np.isfinite(jumps)]
    if jumps.size < 50:
        return False
    noise = 1.4826 * np.median(np.abs(jumps)) / np.sqrt(2)
    return bool(noise >= DISPLAY_MIN_NOISE and np.percentile(levels, 0.5) < noise)
