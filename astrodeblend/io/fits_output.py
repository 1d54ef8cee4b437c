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
atomically, in one pass, one HDU at a time (with ``full_frame=True`` the
full-size sources are made as they are written, never all in memory at
once).  Headers are built as card images and written by the small
serializer of ``_fits_writer`` rather than through astropy's HDU classes,
whose copies and checks of every card made most of the cost of a small file
(issue 17); each card is still formatted by `astropy.io.fits.Card`.
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
from ._fits_writer import Cards, write_hdu

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
    return Path(output_dir) / f"{_input_stem(input_path)}_deblended.fits"


def _input_stem(input_path):
    """Return an input's file name without its image suffix (``.fits.gz``, ``.jpg``, ...).

    One file per band (``sdss_g.fits,sdss_r.fits,sdss_i.fits``, see
    `astrodeblend.batch.band_files`): the stems' common part and their
    distinct parts, ``sdss_gri``.
    """
    name = Path(input_path).name
    if "," in name and not Path(input_path).exists():
        stems = [_input_stem(part) for part in name.split(",")]
        prefix = os.path.commonprefix(stems)
        suffix = os.path.commonprefix([stem[len(prefix):][::-1] for stem in stems])[::-1]
        parts = [stem[len(prefix):len(stem) - len(suffix)] for stem in stems]
        if not all(parts):
            return "+".join(stems)
        return prefix + ("".join(parts) if all(len(p) == 1 for p in parts)
                         else "-".join(parts)) + suffix
    lower = name.lower()
    for suffix in sorted(FITS_SUFFIXES + IMAGE_SUFFIXES + (".gz", ".bz2"), key=len,
                         reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


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


def _image_header(blend, wcs_cards, *, with_meta, unit=True):
    """Cards of an image HDU: WCS (``WCSAXES`` first), (input cards,) BUNIT, BANDS.

    ``wcs_cards`` are the `_wcs_cards` of the blend (None without a WCS).
    """
    cards = wcs_cards.copy() if wcs_cards is not None else Cards()
    if with_meta:
        present = {image[:8].rstrip() for image in cards.images}
        for card in blend.meta.cards:
            if _STRUCTURAL.match(card.keyword or ""):
                continue
            if card.keyword in present and card.keyword not in ("HISTORY", "COMMENT", ""):
                continue  # a WCS card (DATE-OBS, MJD-OBS, ...) already in the WCS block
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    new = fits.Card(card.keyword, card.value, card.comment)
                    new.verify("silentfix")
                    image = str(new)  # the image of the card: bad values raise here
            except Exception:  # noqa: BLE001 - skip a card astropy cannot write
                continue
            cards.images.append(image)  # in the input's order, commentary included
            present.add(new.keyword)
        dropped = _dropped_wcs_axes(blend.meta)
        if dropped:
            text = (f"astrodeblend: input WCS axes {', '.join(dropped)} not kept "
                    "(celestial axes only)")
            if text not in cards.commentary("HISTORY"):
                cards.add_commentary("HISTORY", text)
    if unit:
        text = _unit_text(blend)
        if text is not None:
            cards.set("BUNIT", text, "unit of the pixel values")
        elif _NO_UNIT not in cards.commentary("COMMENT"):
            cards.add_commentary("COMMENT", _NO_UNIT)
    cards.set("BANDS", ",".join(blend.bands), "band names, one per plane")
    cards.strip_blank_end()
    return cards


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


def _wcs_cards(blend):
    """Cards of the blend's WCS, ``WCSAXES`` first.

    When the input's own cards describe the WCS exactly they are copied:
    copying keeps ``CRVAL``, ``CRPIX`` and ``CD`` (or ``CDELT``) bit for bit,
    where `~astropy.wcs.WCS.to_header` rounds to 14 digits and turns a CD
    matrix into PC and CDELT.  A cutout's WCS differs only in ``CRPIX``.
    """
    from astropy.wcs import WCS, WCSCOMPARE_ANCILLARY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cards = fits.Header()
        for card in blend.meta.cards:  # the first of duplicated cards (inputs have them)
            if _WCS_2D.match(card.keyword or "") and card.keyword not in cards:
                cards.append(fits.Card.fromstring(card.image))  # a copy
        same = False
        if "CTYPE1" in cards and "CTYPE2" in cards:
            try:
                for card in cards.cards:
                    card.verify("silentfix")  # what astropy's writeto did
                copied = WCS(cards, naxis=2)
                same = (copied.naxis == 2
                        and copied.wcs.compare(blend.wcs.wcs, cmp=WCSCOMPARE_ANCILLARY,
                                               tolerance=0.0)
                        and (copied.sip is None) == (blend.wcs.sip is None))
            except Exception:  # noqa: BLE001 - any problem: use astropy's own cards
                same = False
        if not same:
            cards = blend.wcs.to_header(relax=True)
            for key in ("MJDREF", "MJDREFI", "MJDREFF", "DATEREF"):
                # wcslib writes a zero reference time of its own: not the input's
                if key not in blend.meta:
                    cards.remove(key, ignore_missing=True)
    cards.remove("WCSAXES", ignore_missing=True)
    cards.insert(0, ("WCSAXES", 2, "number of WCS axes"))
    return Cards.from_header(cards)


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


def _catalog(result):
    """Cards and rows (a structured array, big-endian) of the CATALOG table."""
    catalog = result.catalog
    names = list(CATALOG_COLUMNS) + [c for c in catalog.colnames if c not in CATALOG_COLUMNS]
    n_bands = result.blend.n_bands
    bunit = _unit_text(result.blend)
    flux_unit = bunit if bunit is not None and _is_fits_unit(bunit) else None
    cards, fields = Cards(), []
    for n, name in enumerate(names, start=1):
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
        form, stored = _table_column(values)
        cards.set(f"TTYPE{n}", name)
        cards.set(f"TFORM{n}", form)
        if unit:
            cards.set(f"TUNIT{n}", unit)
        fields.append((name, stored))
    rows = np.zeros(len(catalog), dtype=[(name, v.dtype, v.shape[1:]) for name, v in fields])
    for name, stored in fields:
        rows[name] = stored
    cards.set("EXTNAME", "CATALOG", "extension name")
    cards.set("NBANDS", n_bands, "values per row of the flux column")
    if bunit is None:
        cards.add_commentary("COMMENT", "flux has no unit: the input image gave no BUNIT")
    elif flux_unit is None:
        cards.add_commentary("COMMENT", f"flux is in {bunit} (BUNIT of BLEND; no TUNIT: not a "
                             "FITS standard unit)")
    return cards, rows


_TABLE_CODES = {"f": ("D", ">f8"), "i": ("K", ">i8"), "u": ("K", ">i8"), "b": ("L", "u1")}


def _table_column(values):
    """Return the binary-table format (TFORM) of a column's values and the values as stored.

    One value or a fixed number of them per row; stored big-endian, strings
    as NUL-padded ASCII, booleans (``L``) as the bytes ``T`` and ``F``.
    """
    if values.dtype.kind in "US":
        width = max(values.dtype.itemsize // (4 if values.dtype.kind == "U" else 1), 1)
        return f"{width}A", values.astype(f"S{width}")  # ASCII, NUL-padded
    code, dtype = _TABLE_CODES[values.dtype.kind]
    repeat = int(np.prod(values.shape[1:]))
    if code == "L":
        stored = np.where(values, ord("T"), ord("F")).astype(dtype)
    else:
        stored = values.astype(dtype)
    return (f"{repeat}{code}" if repeat != 1 else code), stored


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
    with atomic_write(path, overwrite=overwrite) as tmp:
        with warnings.catch_warnings():
            # astropy warns each time it cuts a card's comment short (ADBMHASH)
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            try:
                _write_hdus(_build_hdus(result, full_frame=full_frame), tmp)
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - a card astropy refuses, and friends
                raise WriteError(f"cannot write {path}: {_one_line(exc)}") from None
    return path


def _write_hdus(hdus, tmp):
    """Write the HDUs of ``hdus`` (an iterator of (cards, data), PRIMARY first) to ``tmp``.

    Each HDU is written as soon as it is made, so that only one of them is
    in memory at once.
    """
    when = datetime.now().isoformat(timespec="seconds")  # local time, as astropy's
    with open(tmp, "xb") as stream:
        for i, (cards, data) in enumerate(hdus):
            write_hdu(stream, cards, data, primary=i == 0, when=when)


def _named(cards, name, ver=None):
    """Return a copy of ``cards`` with EXTNAME (and EXTVER) added."""
    cards = cards.copy()
    cards.set("EXTNAME", name, "extension name")
    if ver is not None:
        cards.set("EXTVER", ver, "extension value")
    return cards


def _build_hdus(result, *, full_frame=False):
    """Yield (cards, data) of each HDU of the output in order, SOURCE images made one at a time."""
    blend = result.blend
    n_bands = blend.n_bands
    primary = Cards()
    primary.set("ORIGIN", "astrodeblend", "software that wrote this file")
    primary.set("DATE", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                "UTC time of writing")
    primary.set("PROCSOFT", f"astrodeblend {__version__}", "processing software and version")
    primary.set("ADBFMT", FORMAT_VERSION, "astrodeblend output format version")
    primary.set("ADBFLUX", result.flux_mode, "SOURCE pixels: weighted, conserve or model")
    primary.set("ADBMODEL", result.model_name, "model used for deblending")
    primary.set("ADBMHASH", result.model_hash, "sha256 of the model weights")
    for i, source in enumerate(_input_paths(blend), start=1):
        # any name a file system allows, as printable ASCII (%XX escapes)
        primary.set(f"PROV{i}", header_name(Path(source).name), "input file")
    primary.set("NSOURCE", result.n_sources, "number of SOURCE HDUs")
    for value in _history_cards(result.history):
        primary.add_commentary("HISTORY", value)
    yield primary, None

    wcs_cards = _wcs_cards(blend) if blend.wcs is not None else None
    yield (_named(_image_header(blend, wcs_cards, with_meta=True), "BLEND"),
           _plane(blend.data, n_bands))

    image_cards = _image_header(blend, wcs_cards, with_meta=False)
    catalog = result.catalog
    xs = np.asarray(catalog["x_centroid"], dtype=float)
    ys = np.asarray(catalog["y_centroid"], dtype=float)
    celestial = blend.wcs is not None and blend.wcs.has_celestial
    if celestial and result.n_sources:
        ras, decs = blend.pixel_to_radec(xs, ys)
    for i in range(result.n_sources):
        cards = image_cards.copy()
        if full_frame:
            x0 = y0 = 0
            data = np.zeros(blend.shape, dtype=np.float32)
            data[(slice(None), *result.source_slices(i))] = result.cutouts[i]
        else:
            x0, y0 = (int(v) for v in result.origins[i])
            # the cutout's WCS is the blend's with CRPIX moved by the origin
            # (what `~astropy.wcs.WCS.slice` and Cutout2D do)
            if blend.wcs is not None:
                for axis, offset in ((1, x0), (2, y0)):
                    cards.set(f"CRPIX{axis}", float(blend.wcs.wcs.crpix[axis - 1]) - offset)
            data = result.cutouts[i]
        cards.set("CUTX0", x0, "0-based column of pixel (0, 0) in BLEND")
        cards.set("CUTY0", y0, "0-based row of pixel (0, 0) in BLEND")
        cards.set("LTV1", -x0, "IRAF physical x = x + CUTX0")
        cards.set("LTV2", -y0, "IRAF physical y = y + CUTY0")
        cards.set("X_CENT", float(xs[i]), "0-based pixel x (column) of the centre in BLEND")
        cards.set("Y_CENT", float(ys[i]), "0-based pixel y (row) of the centre in BLEND")
        if celestial and np.isfinite(ras[i]) and np.isfinite(decs[i]):
            cards.set("RA_CENT", float(ras[i]), "[deg] right ascension of the centre")
            cards.set("DEC_CENT", float(decs[i]), "[deg] declination of the centre")
        with np.errstate(all="ignore"):  # float64 sums: finite for any float32 pixels
            flux = float(np.sum(result.cutouts[i], dtype=np.float64))
        if np.isfinite(flux):
            cards.set("FLUX", flux, "sum over pixels of all bands")
        else:
            cards.set("FLUX", None, "sum over pixels of all bands: not finite")
        yield _named(cards, "SOURCE", i + 1), _plane(data, n_bands)
        del data
    yield _named(image_cards, "RESIDUAL"), _plane(result.residual.data, n_bands)
    seg_cards = wcs_cards if wcs_cards is not None else Cards()
    yield _named(seg_cards, "SEGMAP"), np.asarray(result.segmap, dtype=np.int32)
    if blend.mask is not None and np.any(blend.mask):
        mask_cards = seg_cards.copy()
        mask_cards.add_commentary("COMMENT", "1 = masked or non-finite input pixel, 0 = good")
        mask = blend.mask.astype(np.uint8)
        yield _named(mask_cards, "BLENDMSK"), mask[0] if n_bands == 1 else mask
    if blend.uncertainty is not None:
        from astropy.nddata import StdDevUncertainty

        try:
            std = blend.uncertainty.represent_as(StdDevUncertainty).array
        except Exception:  # noqa: BLE001 - an uncertainty type without conversion
            std = None
        if std is not None:
            unc_cards = image_cards.copy()
            unc_cards.set("UTYPE", "StdDevUncertainty", "one-sigma uncertainty of BLEND")
            yield (_named(unc_cards, "BLENDUNC"),
                   _plane(np.broadcast_to(std, blend.shape), n_bands))
    yield _catalog(result)
