"""Readers: one entry point for JPG, PNG and FITS files, and per-band files.

`read_image` looks at a file's first bytes (and its name) to pick the
reader.  Sizes are checked before any pixel is decoded: the declared size of
every HDU of a FITS file (read by hand from the headers, also inside
``.gz``/``.bz2`` streams and for tile-compressed HDUs, ``ZNAXISn`` and
``ZTILEn``) and the size of a JPG/PNG (from its header) must stay within
``max_pixels`` values (`MAX_PIXELS` by default, 512 MiB as float32); the
image must be a 2-D image or a 3-D cube (bands first), and the data must be
present in full.  Pixel values must lie within +-``MAX_ABS_VALUE``, so that
float32 arithmetic cannot overflow.  Whatever astropy or Pillow say about a
bad file is turned into a one-line `~astrodeblend.ReadError` that names the
file; their warnings are caught here and never reach the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, ReadError
from ..image import GalaxyImage, looks_display
from ..utils import header_name
from ._describe import _describe_catalog, _describe_hdus, _describe_result_header
from ._files import (  # noqa: F401 (MAX_*, _default_max_pixels: importable from here)
    FITS_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_ABS_VALUE,
    MAX_PIXELS,
    _check_file,
    _default_max_pixels,
    _kind,
    _limit,
)
from ._fits_reader import (
    BAD_MASK_PLANES,
    _bad_pixels,
    _band_hdus,
    _hdu_label,
    _list_hdus,
    _OpenFits,
    _read_fits,
    _select_hdu,
)
from ._pillow_reader import _read_pillow

__all__ = ["read_image", "read_bands", "describe_image", "MAX_PIXELS", "MAX_ABS_VALUE",
           "BAD_MASK_PLANES",
           "FITS_SUFFIXES", "IMAGE_SUFFIXES"]


# ----------------------------------------------------------------- public API
def read_image(path, *, hdu=None, bands=None, max_pixels=None, mask=None):
    """Read a FITS, JPG or PNG file into a `~astrodeblend.GalaxyImage`.

    The file type is taken from the first bytes of the file (``SIMPLE  =``
    for FITS, the JPEG and PNG signatures) and, for compressed FITS
    (``.fits.gz``, ``.fits.fz``, ``.fits.bz2``), from its name.

    **FITS**: the primary HDU or, when it is empty, the first HDU with image
    data is read (or the one ``hdu`` names).  2-D images give one band, 3-D
    cubes one band per plane; tile-compressed HDUs, ``BSCALE``/``BZERO``
    scaling and ``NaN``/``Inf`` pixels (masked) are handled.  The celestial
    WCS (dummy extra axes dropped), ``BUNIT``, band names (``BANDS``,
    ``FILTER`` or ``FILTERn`` cards) and ``MASK`` / ``UNCERT`` (or ``ERR``,
    ``VAR``, ``IVAR``) extensions with the image's ``EXTVER`` are used, as
    `~astropy.nddata.CCDData` writes them.  For an astrodeblend output file
    (``ADBFMT`` in the primary header) the ``BLEND`` HDU is read.  The
    headers are checked before any data are decoded: files in which any HDU
    (tile-compressed ones and those inside ``.gz``/``.bz2`` files included)
    declares more than ``max_pixels`` values, 1-D data, 4-D data (unless the
    extra axes have length 1), and files shorter than their headers say are
    refused, and so are pixel values beyond +-``MAX_ABS_VALUE``.

    **JPG/PNG** (read with Pillow): RGB gives bands ``('R', 'G', 'B')``,
    greyscale one band ``('grey',)``; values are scaled to [0, 1] and rows
    are flipped so that row 0 is the bottom of the picture (FITS
    orientation).  The header card ``ADBDISP = True`` marks the values as
    display-stretched (gamma 2.2), not flux.  ``hdu`` is ignored.  The image
    size is checked against ``max_pixels`` before it is decoded.

    The file's name is kept in the ``ORIGFILE`` card as printable ASCII
    (``astrodeblend.utils.header_name``: ``café.jpg`` becomes
    ``caf%C3%A9.jpg``).  The file is never modified.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The file to read.
    hdu : int, str or tuple, optional
        FITS HDU to read: a number (0 is the primary), a name (``'SCI'``) or
        ``(name, version)``; strings like ``'1'`` and ``'SCI,2'`` (from the
        command line) work too.
    bands : sequence of str, optional
        Band names, overriding those found in the file.
    max_pixels : int, optional
        Largest number of pixel values (bands x rows x columns) to read;
        `MAX_PIXELS` (2**27, 512 MiB as float32) by default.  Reading an
        image of ``max_pixels`` values takes at most about 3 times its
        float32 size (float64 files; 2 times for float32 files): 1.5 GiB at
        the default.
    mask : str or `~pathlib.Path`, optional
        A file of bad-pixel flags for the image (FITS, or PNG): its first
        image, ``(H, W)`` or the image's ``(C, H, W)``, non-zero where a
        pixel is bad (a mask with ``MP_<NAME>`` bit-plane cards, as LSST
        and HSC write, flags only the planes of `BAD_MASK_PLANES`), as
        imfit, GALFIT and SExtractor take masks.  Added to the image's own
        mask; the file's name goes into the ``MASKFILE`` card.

    Returns
    -------
    `~astrodeblend.GalaxyImage`
        ``float32`` data of shape ``(C, H, W)``; ``source`` is ``str(path)``
        and ``meta`` the header (with ``ORIGFILE`` added).

    Raises
    ------
    ReadError
        If the file is missing, a folder, unreadable, empty, truncated or
        corrupt, of an unsupported type, holds no image (or only tables),
        has the wrong number of axes, is too large (more than ``max_pixels``
        values in any HDU), has values beyond +-``MAX_ABS_VALUE`` or no finite
        pixel, an invalid WCS, or the HDU asked for does not exist.  The message is one
        line that names the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cube.fits"
    >>> hdu = fits.PrimaryHDU(np.ones((3, 8, 10), dtype=np.float32))
    >>> hdu.header["BANDS"] = "g,r,i"
    >>> hdu.writeto(path)
    >>> image = read_image(path)
    >>> image.shape, image.bands
    ((3, 8, 10), ('g', 'r', 'i'))
    """
    limit = _limit(max_pixels)
    path, head = _check_file(path)
    if bands is not None and (isinstance(bands, str) or not hasattr(bands, "__len__")):
        raise InvalidInputError(f"bands must be a sequence of names, not {bands!r}")
    if _kind(path, head) == "fits":
        image = _read_fits(path, head, hdu=hdu, bands=bands, limit=limit)
    else:
        image = _read_pillow(path, bands=bands, limit=limit)
    return image if mask is None else _with_mask_file(image, path, mask, limit)


def _with_mask_file(image, path, mask_path, limit):
    """Return ``image`` with the bad pixels that the file ``mask_path`` flags added."""
    flags = read_image(mask_path, max_pixels=limit)
    values = flags.data[0] if flags.n_bands == 1 else flags.data
    if values.shape not in (image.shape, image.shape[1:]):
        raise ReadError(f"{flags.source}: the mask has shape {values.shape}, the image "
                        f"{path} has {image.shape}")
    # non-zero flags and non-finite values (a NaN in a mask) are bad
    bad = np.broadcast_to(_bad_pixels(flags.meta, values) | ~np.isfinite(values), image.shape)
    combined = bad if image.mask is None else (image.mask | bad)
    out = image.with_data(image.data, mask=combined, uncertainty=image.uncertainty)
    out.meta["MASKFILE"] = (header_name(Path(mask_path).name), "file of bad-pixel flags")
    return out


def _distinct_names(paths):
    """Short distinct names for files: stems without their common prefix and suffix."""
    stems = []
    for p in paths:
        name = Path(p).name
        for suffix in sorted(FITS_SUFFIXES + IMAGE_SUFFIXES, key=len, reverse=True):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        stems.append(name)
    if len(stems) > 1:
        prefix = os.path.commonprefix(stems)
        suffix = os.path.commonprefix([s[::-1] for s in stems])[::-1]
        short = [s[len(prefix): len(s) - len(suffix)] for s in stems]
        short = [s.strip("_-. ") for s in short]
        if all(short) and len(set(short)) == len(short):
            return short
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


def read_bands(paths, *, bands=None, hdu=None, max_pixels=None, mask=None):
    """Read one file (or HDU) per band and stack them into one multi-band image.

    Parameters
    ----------
    paths : sequence of str or `~pathlib.Path`
        One 2-D image per band, all of the same shape and on the same pixel
        grid (the WCS is taken from the first).
    bands : sequence of str, optional
        Band names.  By default the ``FILTER`` cards when they are present
        and all different, otherwise the distinct parts of the file names
        (``reprojected_sdss_g.fits``, ``..._r.fits`` give ``g``, ``r``).
    hdu : int, str or tuple, optional
        HDU to read in every file (see `read_image`).
    max_pixels : int, optional
        Largest number of pixel values per file (see `read_image`).
    mask : str or `~pathlib.Path`, optional
        A file of bad-pixel flags for the stacked image (see `read_image`).

    Returns
    -------
    `~astrodeblend.GalaxyImage`
        ``(C, H, W)`` with ``C = len(paths)``; ``meta`` is the first file's
        header with ``BANDS`` and ``ORIGF1``... cards added, ``source`` the
        comma-separated file paths.

    Raises
    ------
    ReadError
        If a file cannot be read (see `read_image`), is not a single 2-D
        image, or its shape differs from the first file's.
    InvalidInputError
        If ``paths`` is empty or ``bands`` has the wrong length.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for band in "gri":
    ...     fits.PrimaryHDU(np.ones((6, 7), dtype=np.float32)).writeto(folder / f"m51_{band}.fits")
    >>> image = read_bands([folder / f"m51_{b}.fits" for b in "gri"])
    >>> image.shape, image.bands
    ((3, 6, 7), ('g', 'r', 'i'))
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise InvalidInputError("read_bands needs at least one file")
    if bands is not None:
        if isinstance(bands, str) or len(bands) != len(paths):
            raise InvalidInputError(f"{len(paths)} files need {len(paths)} band names, "
                                    f"got {bands!r}")
    images, limit, total = [], _limit(max_pixels), 0
    for path in paths:
        image = read_image(path, hdu=hdu, max_pixels=limit)
        total += image.data.size
        if total > limit:
            raise ReadError(f"{path}: the {len(images) + 1} files read so far hold {total:,} "
                            f"pixel values together, more than the limit of {limit:,} "
                            "(max_pixels, --max-image-pixels)")
        if image.n_bands != 1:
            raise ReadError(f"{path}: holds {image.n_bands} bands (shape {image.shape}); "
                            "read_bands needs one 2-D image per file")
        if images and image.shape != images[0].shape:
            raise ReadError(f"{path}: shape {image.shape[1:]} differs from "
                            f"{images[0].shape[1:]} of {paths[0]}")
        images.append(image)
    if bands is None:
        filters = [str(im.meta.get("FILTER", "")).strip() for im in images]
        if all(filters) and len(set(filters)) == len(filters):
            bands = filters
        else:
            bands = _distinct_names(paths)
    data = np.concatenate([im.data for im in images])
    if any(im.mask is not None for im in images):
        bad = np.concatenate([im.mask if im.mask is not None
                              else np.zeros(im.shape, bool) for im in images])
    else:
        bad = None
    if all(im.uncertainty is not None for im in images):
        uncertainty = np.concatenate([np.asarray(im.uncertainty.array, np.float32)
                                      .reshape(im.shape) for im in images])
    else:
        uncertainty = None
    units = {im.unit for im in images}
    unit = units.pop() if len(units) == 1 else None
    header = images[0].meta.copy()
    header["BANDS"] = (",".join(bands), "band names, one per plane")
    header.remove("ORIGFILE", ignore_missing=True)
    for i, path in enumerate(paths, start=1):
        header[f"ORIGF{i}"] = (header_name(Path(path).name), f"file of band {i}")
    try:
        image = GalaxyImage(data, mask=bad, uncertainty=uncertainty, wcs=images[0].wcs,
                            meta=header, unit=unit, bands=bands,
                            source=", ".join(str(p) for p in paths))
    except InvalidInputError as exc:
        raise InvalidInputError(f"read_bands: {exc}") from None
    return image if mask is None else _with_mask_file(image, paths[0], mask, limit)


def describe_image(path, *, hdu=None, max_rows=5):
    """Describe an image file for ``astrodeblend info``.

    The first line describes the image that `read_image` reads.  A FITS
    file with more than one HDU adds one indented line per HDU (runs of
    same-named HDUs, such as many ``SOURCE`` HDUs, on one line) and marks the
    one that is read.  An astrodeblend result (``ADBFMT`` card) starts with
    a line giving the format version, the number of sources, the model and
    the flux mode, and ends with the first ``max_rows`` rows of its
    ``CATALOG``.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        A FITS, JPG or PNG file.
    hdu : int, str or tuple, optional
        FITS HDU to describe (see `read_image`).
    max_rows : int, optional
        Catalog rows shown for a result file.

    Returns
    -------
    str
        ``FILE: shape (C, H, W), bands [...], centre RA, Dec (deg) or
        'no WCS', pixel scale, masked fraction`` (and ``display-stretched``
        for JPG/PNG); more lines, indented, as said above.

    Raises
    ------
    ReadError
        If the file cannot be read (see `read_image`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "stamp.fits"
    >>> fits.PrimaryHDU(np.ones((8, 8), dtype=np.float32)).writeto(path)
    >>> describe_image(path).split(": ", 1)[1]
    'shape (1, 8, 8), bands [band0], no WCS, masked 0.00%'

    A file with several HDUs lists them:

    >>> fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 6), np.float32),
    ...                                                name="SCI")]).writeto(path, overwrite=True)
    >>> print(describe_image(path).split(": ", 1)[1])
    shape (1, 4, 6), bands [band0], no WCS, masked 0.00%
      HDU 0 (PRIMARY): no data
      HDU 1 (SCI): image (4, 6) float32  <- read (choose with hdu= or --hdu)
    """
    image = read_image(path, hdu=hdu)
    parts = [f"shape {image.shape}", f"bands [{', '.join(image.bands)}]"]
    centre = image.sky_center
    if centre is None:
        parts.append("no WCS")
    else:
        icrs = centre.icrs if hasattr(centre, "icrs") else centre
        parts.append(f"RA {icrs.ra.deg:.6f} Dec {icrs.dec.deg:+.6f} deg")
        parts.append(f"{image.pixel_scale.value:.4g} arcsec/pix")
    if image.meta.get("ADBDISP", False):
        parts.append("display-stretched")
    elif looks_display(image):
        parts.append("display values (a JPG's RGB: deblended as display with --mode auto)")
    parts.append(f"masked {100 * image.masked_fraction:.2f}%")
    line = f"{path}: " + ", ".join(parts)
    checked, head = _check_file(path)
    if _kind(checked, head) != "fits":
        return line
    opened = _OpenFits(checked)
    try:
        hdus = _list_hdus(checked, opened.hdul)
        index, _ = _select_hdu(checked, hdus, hdu)
        primary = hdus[0].header
        if "ADBFMT" in primary:
            lines = [f"{path}: {_describe_result_header(primary, hdus)}",
                     f"  {_hdu_label(index, hdus[index])}: " + ", ".join(parts),
                     *_describe_hdus(hdus, index, mark="  <- described above"),
                     *_describe_catalog(hdus, max_rows)]
            return "\n".join(lines)
        if len(hdus) == 1:
            return line
        per_band = _band_hdus(hdus, index) if hdu is None else None
        if per_band is not None:
            return "\n".join([line, *_describe_hdus(
                hdus, [i for i, _ in per_band[0]],
                mark="  <- read, one band (choose one with hdu= or --hdu)")])
        return "\n".join([line, *_describe_hdus(
            hdus, index, mark="  <- read (choose with hdu= or --hdu)")])
    finally:
        opened.close()
