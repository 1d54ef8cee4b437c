"""The deblended FITS output of ``spec/fits-output.md`` (format version 2).

`write_deblended` stores a `~astrodeblend.DeblendResult` as

====  =====================  ===============================================
HDU   EXTNAME / EXTVER       data
====  =====================  ===============================================
0     PRIMARY                none; provenance cards and HISTORY
1     BLEND                  the input, float32 ``(H, W)`` or ``(C, H, W)``
2..   SOURCE, 1..N           one deblended image per source, over its
                             cutout (``CUTX0``, ``CUTY0``, own WCS)
next  RESIDUAL               BLEND minus the sources at their positions
next  SEGMAP                 int32 segmentation map
(opt) BLENDMSK, BLENDUNC     mask (masked or non-finite input pixels) and
                             uncertainty of BLEND, when it has them
last  CATALOG                binary table, one row per source
====  =====================  ===============================================

and `~astrodeblend.io.read_deblended` reads it back (format versions 1 and
2).  Every HDU has ``CHECKSUM`` and ``DATASUM`` cards; the file is written
atomically, in one pass (with ``full_frame=True``, one image HDU at a time,
so that the file never holds all its full-size sources in memory at once).
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from astropy.io import fits

from .._version import __version__
from ..errors import InvalidInputError, WriteError
from ..result import CATALOG_COLUMNS, DeblendResult
from ..utils import header_name, name_from_header
from ._atomic import atomic_write
from ._files import FITS_SUFFIXES, IMAGE_SUFFIXES, _one_line

__all__ = ["write_deblended", "default_output_path", "FORMAT_VERSION"]

#: Version of the output format (the ``ADBFMT`` card).
FORMAT_VERSION = 2

# Header cards of the input that are not copied into the output HDUs:
# structure, scaling, checksums, compression and the (replaced) WCS.  Not
# `astropy.io.fits.Header.strip`: it removes only the first of repeated cards
# and only the NAXISn/TTYPEn/TFORMn that NAXIS and TFIELDS declare, so a stray
# NAXIS3/NAXIS4 (a plane cut from a cube) would make the BLEND HDU unwritable.
_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|EXTNAME|EXTVER|EXTLEVEL|"
    r"BSCALE|BZERO|BLANK|CHECKSUM|DATASUM|Z[A-Z0-9_]*|TFIELDS|TTYPE\d+|TFORM\d+|"
    r"WCSAXES[A-Z]?|CTYPE\d+[A-Z]?|CRVAL\d+[A-Z]?|CRPIX\d+[A-Z]?|CDELT\d+[A-Z]?|"
    r"CUNIT\d+[A-Z]?|CROTA\d+|CD\d+_\d+[A-Z]?|PC\d+_\d+[A-Z]?|PV\d+_\d+[A-Z]?|"
    r"PS\d+_\d+[A-Z]?|LONPOLE[A-Z]?|LATPOLE[A-Z]?|RADESYS[A-Z]?|RADECSYS|EQUINOX[A-Z]?|"
    r"EPOCH|WCSNAME[A-Z]?|A_\w+|B_\w+|AP_\w+|BP_\w+|BANDS|BUNIT|ADBFMT|ADBFLUX|"
    r"NSOURCE|CUTX0|CUTY0)$")

_HISTORY_WIDTH = 72
_CONTINUATION = "... "


def default_output_path(input_path, output_dir):
    """Return the output file of an input: ``<output_dir>/<stem>_deblended.fits``.

    Parameters
    ----------
    input_path : str or `~pathlib.Path`
        The input image (``.fits``, ``.fits.gz``, ``.fits.fz``, ``.jpg``, ...).
    output_dir : str or `~pathlib.Path`
        The output folder.

    Returns
    -------
    `~pathlib.Path`

    Examples
    --------
    >>> default_output_path("data/cutout.fits.gz", "out").as_posix()
    'out/cutout_deblended.fits'
    >>> default_output_path("123.jpg", "out").name
    '123_deblended.fits'
    """
    name = Path(input_path).name
    lower = name.lower()
    for suffix in sorted(FITS_SUFFIXES + IMAGE_SUFFIXES + (".gz", ".bz2"), key=len,
                         reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return Path(output_dir) / f"{name}_deblended.fits"


# --------------------------------------------------------------------- writer
def _input_paths(blend):
    """Return the input files of a blend.

    ``source`` (what the reader read: one path, or one per band from
    `~astrodeblend.io.read_bands`, with an ``ORIGFn`` card each) decides;
    ``ORIGFn`` cards name the inputs only of an image without a source.
    Cards that an input file carries from an earlier step never replace the
    name of the file itself.
    """
    names = []
    i = 1
    while f"ORIGF{i}" in blend.meta:
        names.append(name_from_header(blend.meta[f"ORIGF{i}"]))
        i += 1
    if blend.source:
        sources = [s.strip() for s in blend.source.split(", ")]
        # several files only when there is one ORIGFn card for each (read_bands)
        return sources if 1 < len(sources) == len(names) else [blend.source]
    return names


def _is_same_file(a, b):
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


_NO_UNIT = "BUNIT absent: the input image gave no unit for its pixel values"


def _unit_text(blend):
    """Return the BUNIT text of the blend, or None when the input gave no unit."""
    if blend.unit is not None:
        try:
            return blend.unit.to_string("fits")
        except (ValueError, TypeError):
            return blend.unit.to_string()
    if "BUNIT" in blend.meta and isinstance(blend.meta["BUNIT"], str):
        return blend.meta["BUNIT"]
    return None


def _add_comment(header, text):
    if text not in [str(v) for v in header.get("COMMENT", [])]:
        header.add_comment(text)


def _image_header(blend, *, with_meta, wcs=None, unit=True):
    """Header of an image HDU: WCS (``WCSAXES`` first), (input cards,) BUNIT, BANDS.

    ``wcs`` is the WCS of a cutout of the blend (by default the blend's own).
    """
    header = fits.Header()
    if blend.wcs is not None:
        header.extend(_wcs_cards(blend, blend.wcs if wcs is None else wcs))
    if with_meta:
        for card in blend.meta.cards:
            if _STRUCTURAL.match(card.keyword or ""):
                continue
            if card.keyword in header and card.keyword not in ("HISTORY", "COMMENT", ""):
                continue  # a WCS card (DATE-OBS, MJD-OBS, ...) already in the WCS block
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    new = fits.Card(card.keyword, card.value, card.comment)
                    new.verify("silentfix")
                    str(new)  # forces the image of the card: bad values raise here
            except Exception:  # noqa: BLE001 - skip a card astropy cannot write
                continue
            header.append(new, end=True)
        dropped = _dropped_wcs_axes(blend.meta)
        if dropped:
            text = (f"astrodeblend: input WCS axes {', '.join(dropped)} not kept "
                    "(celestial axes only)")
            if text not in [str(v) for v in header.get("HISTORY", [])]:
                header.add_history(text)
    if unit:
        text = _unit_text(blend)
        if text is not None:
            header["BUNIT"] = (text, "unit of the pixel values")
        else:
            _add_comment(header, _NO_UNIT)
    header["BANDS"] = (",".join(blend.bands), "band names, one per plane")
    return header


def _dropped_wcs_axes(meta):
    """Describe WCS axes beyond the two celestial ones in an input header."""
    dropped = []
    n_axes = meta.get("WCSAXES", 0) if isinstance(meta.get("WCSAXES", 0), int) else 0
    for axis in range(3, max(n_axes, 9) + 1):
        ctype = meta.get(f"CTYPE{axis}")
        if ctype is not None:
            dropped.append(f"{axis} (CTYPE{axis} = {str(ctype).strip()!r})")
        elif axis <= n_axes:
            dropped.append(str(axis))
    return dropped


_WCS_2D = re.compile(
    r"^(CTYPE[12]|CRVAL[12]|CRPIX[12]|CDELT[12]|CUNIT[12]|CROTA2|CD[12]_[12]|PC[12]_[12]|"
    r"PV[12]_\d+|PS[12]_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|WCSNAME|"
    r"MJD-OBS|DATE-OBS|A_\w+|B_\w+|AP_\w+|BP_\w+)$")


def _wcs_cards(blend, wcs):
    """WCS cards of ``wcs`` (the blend's WCS or a slice of it), ``WCSAXES`` first.

    When the input's own cards describe the blend's WCS exactly they are
    copied, with ``CRPIX`` taken from ``wcs`` (a slice of the blend's WCS
    only differs in ``CRPIX``): copying keeps ``CRVAL``, ``CRPIX`` and
    ``CD`` (or ``CDELT``) bit for bit, where `~astropy.wcs.WCS.to_header`
    rounds to 14 digits and turns a CD matrix into PC and CDELT.
    """
    from astropy.wcs import WCS, WCSCOMPARE_ANCILLARY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fallback = wcs.to_header(relax=True)
        for key in ("MJDREF", "MJDREFI", "MJDREFF", "DATEREF"):
            # wcslib writes a zero reference time of its own: not the input's
            if key not in blend.meta:
                fallback.remove(key, ignore_missing=True)
        cards = fits.Header()
        for card in blend.meta.cards:  # the first of duplicated cards (inputs have them)
            if _WCS_2D.match(card.keyword or "") and card.keyword not in cards:
                cards.append(card)
        same = False
        if "CTYPE1" in cards and "CTYPE2" in cards:
            try:
                copied = WCS(cards, naxis=2)
                same = (copied.naxis == 2
                        and copied.wcs.compare(blend.wcs.wcs, cmp=WCSCOMPARE_ANCILLARY,
                                               tolerance=0.0)
                        and (copied.sip is None) == (blend.wcs.sip is None))
                if same and wcs is not blend.wcs:
                    for axis in (1, 2):
                        cards[f"CRPIX{axis}"] = float(wcs.wcs.crpix[axis - 1])
                    same = WCS(cards, naxis=2).wcs.compare(wcs.wcs, cmp=WCSCOMPARE_ANCILLARY,
                                                           tolerance=0.0)
            except Exception:  # noqa: BLE001 - any problem: use astropy's own cards
                same = False
    if not same:
        cards = fallback
    cards.remove("WCSAXES", ignore_missing=True)
    cards.insert(0, ("WCSAXES", 2, "number of WCS axes"))
    return cards


def _plane(array, n_bands):
    array = np.asarray(array, dtype=np.float32)
    return array[0] if n_bands == 1 else array


def _history_cards(lines):
    """Split history lines into HISTORY values of at most 72 characters."""
    values = []
    for line in lines:
        text = "".join(c if " " <= c <= "~" else "?" for c in str(line))
        first, rest = text[:_HISTORY_WIDTH], text[_HISTORY_WIDTH:]
        values.append(first)
        width = _HISTORY_WIDTH - len(_CONTINUATION)
        while rest:
            values.append(_CONTINUATION + rest[:width])
            rest = rest[width:]
    return values


_CATALOG_UNITS = {"x_centroid": "pix", "y_centroid": "pix", "ra": "deg", "dec": "deg",
                  "bbox_xmin": "pix", "bbox_xmax": "pix", "bbox_ymin": "pix",
                  "bbox_ymax": "pix"}


def _catalog_hdu(result):
    catalog = result.catalog
    names = list(CATALOG_COLUMNS) + [c for c in catalog.colnames if c not in CATALOG_COLUMNS]
    n_bands = result.blend.n_bands
    bunit = _unit_text(result.blend)
    flux_unit = bunit if bunit is not None and _is_fits_unit(bunit) else None
    columns = []
    for name in names:
        column = catalog[name]
        values = np.asarray(column)
        if name == "flux":
            values = np.asarray(values, dtype=float).reshape(len(catalog), n_bands)
        elif name in ("ra", "dec", "x_centroid", "y_centroid"):
            values = np.asarray(values, dtype=float)
        elif name == "id" or name.startswith("bbox_"):
            values = np.asarray(values, dtype=np.int64)
        if values.dtype.kind == "O":
            values = values.astype(str)
        unit = _CATALOG_UNITS.get(name, flux_unit if name == "flux" else None)
        if unit is None and getattr(column, "unit", None) is not None:
            try:
                unit = column.unit.to_string("fits")
            except (ValueError, TypeError):
                unit = column.unit.to_string()
        columns.append(fits.Column(name=name, format=_column_format(values), unit=unit or None,
                                   array=values))
    hdu = fits.BinTableHDU.from_columns(columns, name="CATALOG")
    hdu.header["NBANDS"] = (n_bands, "values per row of the flux column")
    if bunit is None:
        hdu.header.add_comment("flux has no unit: the input image gave no BUNIT")
    elif flux_unit is None:
        hdu.header.add_comment(f"flux is in {bunit} (BUNIT of BLEND; no TUNIT: not a FITS "
                               "standard unit)")
    return hdu


def _column_format(values):
    """FITS binary-table format of a column's values: one value or one per band."""
    repeat = int(np.prod(values.shape[1:])) if values.ndim > 1 else 1
    if values.dtype.kind in "US":
        return f"{max(values.dtype.itemsize // (4 if values.dtype.kind == 'U' else 1), 1)}A"
    code = {"f": "D", "i": "K", "u": "K", "b": "L"}[values.dtype.kind]
    return f"{repeat}{code}" if repeat != 1 else code


@functools.lru_cache(maxsize=64)
def _is_fits_unit(text):
    """Whether ``text`` is a unit of the FITS standard (one astropy reads without warning)."""
    from astropy import units as u

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            u.Unit(text, format="fits")
    except (ValueError, Warning):
        return False
    return True


def write_deblended(result, path, *, overwrite=False, full_frame=False):
    """Write a deblending result to a FITS file (``spec/fits-output.md``, version 2).

    Each ``SOURCE`` HDU holds the source's cutout with the cutout's own WCS
    and ``CUTX0``, ``CUTY0`` (0-based column and row of its first pixel in
    ``BLEND``) and ``LTV1 = -CUTX0``, ``LTV2 = -CUTY0``.

    Parameters
    ----------
    result : `~astrodeblend.DeblendResult`
        What a deblender returned.
    path : str or `~pathlib.Path`
        The output file (see `default_output_path`).  It must not be the
        input file.
    overwrite : bool, optional
        Replace an existing output (refused by default).
    full_frame : bool, optional
        Write every ``SOURCE`` HDU at the size of ``BLEND`` (``CUTX0 =
        CUTY0 = 0``), for tools that want full-frame images.  They are made
        and written one at a time.

    Returns
    -------
    `~pathlib.Path`
        ``path``.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    WriteError
        If ``path`` is the input file, or the folder is missing, read-only or
        full.  Nothing is left behind in the folder on failure.
    InvalidInputError
        If ``result`` is not a `~astrodeblend.DeblendResult`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astrodeblend import GalaxyImage, DeblendResult
    >>> blend = GalaxyImage(np.ones((1, 8, 8)), bands=["r"])
    >>> sources = np.zeros((2, 1, 8, 8))
    >>> sources[0, :, 1:4, 2:5], sources[1, :, 3:7, 4:8] = 1.0, 0.5
    >>> catalog = DeblendResult.make_catalog(blend, sources, [3.0, 5.5], [2.0, 4.5])
    >>> result = DeblendResult(blend, sources, catalog, np.zeros((8, 8), int),
    ...                        model_name="default", history=["deblend: method=gan"])
    >>> out = write_deblended(result, pathlib.Path(tempfile.mkdtemp()) / "b_deblended.fits")
    >>> from astropy.io import fits
    >>> with fits.open(out) as hdul:
    ...     print([h.name for h in hdul])
    ...     print(hdul["SOURCE", 2].data.shape, hdul["SOURCE", 2].header["CUTX0"],
    ...           hdul["SOURCE", 2].header["CUTY0"])
    ['PRIMARY', 'BLEND', 'SOURCE', 'SOURCE', 'RESIDUAL', 'SEGMAP', 'CATALOG']
    (4, 4) 4 3
    >>> from astrodeblend.io import read_deblended
    >>> read_deblended(out).history
    ['deblend: method=gan']
    """
    if not isinstance(result, DeblendResult):
        raise InvalidInputError(f"write_deblended needs a DeblendResult, "
                                f"not {type(result).__name__}")
    path = Path(path)
    for source in _input_paths(result.blend):
        if _is_same_file(source, path):
            raise WriteError(f"refusing to write {path}: it is the input file")
    hdus = _build_hdus(result, full_frame=full_frame)
    with atomic_write(path, overwrite=overwrite) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            try:
                if full_frame:  # one full-size SOURCE in memory at a time
                    _write_hdus(hdus, tmp)
                else:  # cutouts are small: one write of the whole file
                    fits.HDUList(list(hdus)).writeto(tmp, checksum=True,
                                                     output_verify="silentfix")
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - astropy's VerifyError and friends
                raise WriteError(f"cannot write {path}: {_one_line(exc)}") from None
    return path


def _write_hdus(hdus, tmp):
    """Write the HDUs of ``hdus`` (an iterator) to ``tmp``, each with checksums.

    PRIMARY and BLEND are written together; the image HDUs after them are
    streamed one at a time (`~astropy.io.fits.StreamingHDU`), so only one
    of them is in memory at once; the table (CATALOG, last) is appended.
    """
    fits.HDUList([next(hdus), next(hdus)]).writeto(tmp, checksum=True,
                                                   output_verify="silentfix")
    for hdu in hdus:
        hdu.verify("silentfix")
        if isinstance(hdu, fits.ImageHDU):
            hdu.add_checksum()
            stream = fits.StreamingHDU(str(tmp), hdu.header)
            try:
                stream.write(hdu.data)
            finally:
                stream.close()
        else:
            fits.append(str(tmp), hdu.data, hdu.header, checksum=True)


def _build_hdus(result, *, full_frame=False):
    """Yield the HDUs of the output in order, SOURCE images made one at a time."""
    blend = result.blend
    n_bands = blend.n_bands
    primary = fits.PrimaryHDU()
    ph = primary.header
    ph["ORIGIN"] = ("astrodeblend", "software that wrote this file")
    ph["DATE"] = (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                  "UTC time of writing")
    ph["PROCSOFT"] = (f"astrodeblend {__version__}", "processing software and version")
    ph["ADBFMT"] = (FORMAT_VERSION, "astrodeblend output format version")
    ph["ADBFLUX"] = (result.flux_mode, "SOURCE pixels: conserve (input) or model")
    ph["ADBMODEL"] = (result.model_name, "model used for deblending")
    ph["ADBMHASH"] = (result.model_hash, "sha256 of the model weights")
    for i, source in enumerate(_input_paths(blend), start=1):
        # any name a file system allows, as printable ASCII (%XX escapes)
        ph[f"PROV{i}"] = (header_name(Path(source).name), "input file")
    ph["NSOURCE"] = (result.n_sources, "number of SOURCE HDUs")
    for value in _history_cards(result.history):
        ph.add_history(value)
    yield primary

    blend_header = _image_header(blend, with_meta=True)
    yield fits.ImageHDU(_plane(blend.data, n_bands), header=blend_header, name="BLEND")

    wcs_header = _image_header(blend, with_meta=False)
    celestial = blend.wcs is not None and blend.wcs.has_celestial
    for i in range(result.n_sources):
        row = result.catalog[i]
        if full_frame:
            x0 = y0 = 0
            header = wcs_header.copy()
            data = np.zeros(blend.shape, dtype=np.float32)
            data[(slice(None), *result.source_slices(i))] = result.cutouts[i]
        else:
            x0, y0 = (int(v) for v in result.origins[i])
            # the cutout's WCS is the blend's with CRPIX moved by the origin
            # (what `~astropy.wcs.WCS.slice` and Cutout2D do)
            header = wcs_header.copy()
            if blend.wcs is not None:
                for axis, offset in ((1, x0), (2, y0)):
                    header[f"CRPIX{axis}"] = float(blend.wcs.wcs.crpix[axis - 1]) - offset
            data = result.cutouts[i]
        header["CUTX0"] = (x0, "0-based column of pixel (0, 0) in BLEND")
        header["CUTY0"] = (y0, "0-based row of pixel (0, 0) in BLEND")
        header["LTV1"] = (-x0, "IRAF physical x = x + CUTX0")
        header["LTV2"] = (-y0, "IRAF physical y = y + CUTY0")
        x, y = float(row["x_centroid"]), float(row["y_centroid"])
        header["X_CENT"] = (x, "0-based pixel x (column) of the centre in BLEND")
        header["Y_CENT"] = (y, "0-based pixel y (row) of the centre in BLEND")
        if celestial:
            ra, dec = blend.pixel_to_radec(x, y)
            if np.isfinite(ra[0]) and np.isfinite(dec[0]):
                header["RA_CENT"] = (float(ra[0]), "[deg] right ascension of the centre")
                header["DEC_CENT"] = (float(dec[0]), "[deg] declination of the centre")
        with np.errstate(all="ignore"):  # float64 sums: finite for any float32 pixels
            flux = float(np.sum(result.cutouts[i], dtype=np.float64))
        header["FLUX"] = ((flux, "sum over pixels of all bands") if np.isfinite(flux)
                          else (None, "sum over pixels of all bands: not finite"))
        yield fits.ImageHDU(_plane(data, n_bands), header=header, name="SOURCE", ver=i + 1)
        del data
    yield fits.ImageHDU(_plane(result.residual.data, n_bands), header=wcs_header.copy(),
                        name="RESIDUAL")
    seg_header = _image_header(blend, with_meta=False, unit=False)
    seg_header.remove("BANDS", ignore_missing=True)
    yield fits.ImageHDU(np.asarray(result.segmap, dtype=np.int32), header=seg_header,
                        name="SEGMAP")
    if blend.mask is not None and np.any(blend.mask):
        mask_header = seg_header.copy()
        mask_header.add_comment("1 = masked or non-finite input pixel, 0 = good")
        mask = blend.mask.astype(np.uint8)
        yield fits.ImageHDU(mask[0] if n_bands == 1 else mask, header=mask_header,
                            name="BLENDMSK")
    if blend.uncertainty is not None:
        from astropy.nddata import StdDevUncertainty

        try:
            std = blend.uncertainty.represent_as(StdDevUncertainty).array
        except Exception:  # noqa: BLE001 - an uncertainty type without conversion
            std = None
        if std is not None:
            unc_header = wcs_header.copy()
            unc_header["UTYPE"] = ("StdDevUncertainty", "one-sigma uncertainty of BLEND")
            yield fits.ImageHDU(_plane(np.broadcast_to(std, blend.shape), n_bands),
                                header=unc_header, name="BLENDUNC")
    yield _catalog_hdu(result)
