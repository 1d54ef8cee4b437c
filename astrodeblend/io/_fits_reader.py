"""The FITS reader: sizes checked before decoding; the HDU, its pixels, WCS, bands, masks."""

from __future__ import annotations

import math
import os
import re
import warnings

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import AstrodeblendError, InvalidInputError, ReadError
from ..image import GalaxyImage
from ..utils import header_name
from ._files import _BZIP2_MAGIC, _GZIP_MAGIC, MAX_ABS_VALUE, MAX_PIXELS, _one_line, _too_many

# Extensions that hold per-pixel side information, never the image itself.
_SIDE_EXTENSIONS = {"MASK", "UNCERT", "ERR", "ERROR", "VAR", "VARIANCE", "IVAR", "WHT",
                    "DQ", "BLENDMSK", "BLENDUNC"}


#: Extension names of products with an image's shape that are no band of it.
_NOT_BANDS = _SIDE_EXTENSIONS | {"PRIMARY", "MODEL", "RESID", "RESIDUAL", "PSF", "BKG",
                                 "BACKGROUND", "SKY", "SEGM", "SEGMAP", "SEGMENTATION",
                                 "WEIGHT", "RMS", "NOISE", "SIGMA", "EXP", "EXPTIME",
                                 "EXPOSURE", "CON", "CTX", "CONTEXT", "SAMP", "TIME", "BLEND",
                                 "SOURCE", "FLAGS"}


def _parse_unit(text):
    """Return an astropy unit for a ``BUNIT`` string, or None when it does not parse."""
    if not isinstance(text, str) or not text.strip():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for candidate, fmt in ((text, "fits"), (text, None), (text.lower(), None)):
            try:
                unit = u.Unit(candidate, format=fmt)
            except (ValueError, TypeError):
                continue
            if not isinstance(unit, u.UnrecognizedUnit):
                return unit
    return None


def _normalise_hdu(hdu):
    """Turn a CLI string (``'1'``, ``'SCI'``, ``'SCI,2'``) into an HDU key."""
    if hdu is None or isinstance(hdu, (int, np.integer)):
        return None if hdu is None else int(hdu)
    if isinstance(hdu, tuple):
        if len(hdu) != 2:
            raise InvalidInputError(f"hdu must be a number, a name or (name, version), "
                                    f"not {hdu!r}")
        return (str(hdu[0]).upper(), int(hdu[1]))
    if isinstance(hdu, str):
        text = hdu.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if "," in text:
            name, _, ver = text.partition(",")
            if re.fullmatch(r"\s*\d+\s*", ver):
                return (name.strip().upper(), int(ver))
        return text.upper()
    raise InvalidInputError(f"hdu must be a number, a name or (name, version), not {hdu!r}")


def _hdu_label(index, hdu):
    name = hdu.name or ("PRIMARY" if index == 0 else "")
    ver = hdu.header.get("EXTVER")
    label = f"HDU {index}"
    if name:
        label += f" ({name}" + (f", {ver})" if ver not in (None, 1) else ")")
    return label


def _naxes(header):
    """Return the axis lengths ``(NAXIS1, NAXIS2, ...)`` claimed by an image header."""
    naxis = header.get("NAXIS", 0)
    if not isinstance(naxis, (int, np.integer)) or naxis < 0 or naxis > 999:
        raise ValueError(f"invalid NAXIS = {naxis!r}")
    axes = []
    for i in range(1, naxis + 1):
        n = header.get(f"NAXIS{i}")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"invalid NAXIS{i} = {n!r}")
        axes.append(int(n))
    return tuple(axes)


def _is_image_hdu(hdu):
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def _has_image_data(hdu):
    if not _is_image_hdu(hdu):
        return False
    try:
        axes = _naxes(hdu.header)
    except ValueError:
        return True  # let the checks of _check_image_header report the problem
    return len(axes) > 0 and all(n > 0 for n in axes)


def _filter_card(header):
    """Return the band a header names (``FILTER``, ``BAND`` or ``FILTNAM1``), or None."""
    for key in ("FILTER", "BAND", "FILTNAM1"):
        value = header.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _band_hdus(hdus, first):
    """Return ``[(index, hdu), ...]`` and band names when a file holds one HDU per band.

    Those are the image HDUs from ``first`` on with its 2-D shape, other
    than mask, uncertainty and weight extensions, when there are at least
    two and each names its band: distinct ``FILTER`` (``BAND``) cards, or,
    without such cards, distinct extension names that are no other product
    (``MODEL``, ``RESIDUAL``, ``PSF``, ...).  Chips of one exposure
    (``SCI,1``, ``SCI,2``) share their name, the CCDs of a mosaic camera
    their filter, and are not bands; a file whose HDUs do not
    name their bands is read as before, its first image.  Returns None
    otherwise.
    """
    try:
        shape = _naxes(hdus[first].header)
    except ValueError:
        return None
    if len(shape) != 2:
        return None
    found = []
    for index, candidate in enumerate(hdus[first:], start=first):
        if index > 0 and candidate.name in _SIDE_EXTENSIONS:
            continue
        try:
            if not _has_image_data(candidate) or _naxes(candidate.header) != shape:
                continue
        except ValueError:
            continue
        found.append((index, candidate))
    if len(found) < 2:
        return None
    filters = [_filter_card(candidate.header) for _, candidate in found]
    if any(filters):
        # the CCDs of a mosaic camera name one filter in each of their HDUs
        return (found, filters) if all(filters) and len(set(filters)) == len(filters) else None
    names = [candidate.name.strip() if index else "" for index, candidate in found]
    if all(names) and len({n.upper() for n in names}) == len(names) \
            and not any(n.upper() in _NOT_BANDS for n in names):
        return found, names
    return None


# ------------------------------------------------------------------------ FITS
class _OpenFits:
    """A FITS file opened read-only and lazily from our own file handle.

    astropy can leave its file handle open when it fails half-way through a
    corrupt header; opening the handle here lets `close` always release it.
    """

    def __init__(self, path, *, memmap=True):
        try:
            self.handle = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.hdul = fits.open(self.handle, mode="readonly", memmap=memmap,
                                      lazy_load_hdus=True, ignore_missing_simple=False)
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for corrupt files
            self.handle.close()
            raise ReadError(f"{path}: corrupt or unreadable FITS file "
                            f"({_one_line(exc)})") from None

    def close(self):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.hdul.close()
        finally:
            self.handle.close()


def _card_int(cards, key, default=None):
    """Return a raw header card's integer value, ``default`` when absent, None if no int."""
    text = cards.get(key)
    if text is None:
        return default
    match = re.match(r"\s*([+-]?\d+)\s*(/.*)?$", text)
    return int(match.group(1)) if match else None


def _card_text(cards, key):
    return cards.get(key, "").split("/")[0].strip().strip("'").strip().upper()


def _raw_header(stream):
    """Read one header from ``stream``: a dict of raw card values, or None (EOF, garbage)."""
    cards = {}
    for _ in range(1000):  # at most 36,000 cards
        block = stream.read(2880)
        if len(block) < 2880:
            return None
        for i in range(0, 2880, 80):
            text = block[i:i + 80].decode("ascii", "replace")
            key = text[:8].strip()
            if key == "END":
                return cards
            if text[8:10] == "= " and key not in cards:
                cards[key] = text[10:]
    return None


def _declared_size_problem(path, head, limit):
    """Check the declared size of every HDU before astropy sees the file.

    The headers are parsed by hand, from the decompressed stream for
    ``.gz``/``.bz2`` files, and the data are skipped without being decoded.
    Return a description of the first HDU over ``limit`` values (for
    tile-compressed HDUs: ``ZNAXISn`` and the tile size ``ZTILEn``), or None.
    Anything that does not parse is left to astropy to report.
    """
    import bz2
    import gzip

    compressed = head.startswith((_GZIP_MAGIC, _BZIP2_MAGIC))
    try:
        opener = (gzip.open if head.startswith(_GZIP_MAGIC)
                  else bz2.open if head.startswith(_BZIP2_MAGIC) else open)
        with opener(path, "rb") as stream:
            for index in range(1000):
                cards = _raw_header(stream)
                if cards is None:
                    return None
                naxis = _card_int(cards, "NAXIS", 0)
                bitpix = _card_int(cards, "BITPIX")
                if naxis is None or bitpix is None or not 0 <= naxis <= 999:
                    return None
                axes = [_card_int(cards, f"NAXIS{i}") for i in range(1, naxis + 1)]
                if any(a is None or a < 0 for a in axes):
                    return None
                extension = _card_text(cards, "XTENSION")
                name = _card_text(cards, "EXTNAME") or ("PRIMARY" if index == 0 else "")
                label = f"HDU {index}" + (f" ({name})" if name else "")
                n_values = int(np.prod(axes, dtype=object)) if axes else 0
                if index == 0 or extension == "IMAGE":
                    if n_values > limit:
                        return _too_many(label, n_values, tuple(reversed(axes)), limit)
                elif extension == "BINTABLE" and _card_text(cards, "ZIMAGE") == "T":
                    znaxis = _card_int(cards, "ZNAXIS", 0) or 0
                    zaxes = [_card_int(cards, f"ZNAXIS{i}") for i in range(1, znaxis + 1)]
                    if 0 < znaxis <= 999 and all(a is not None and a >= 0 for a in zaxes):
                        n_image = int(np.prod(zaxes, dtype=object))
                        if n_image > limit:
                            return _too_many(label, n_image, tuple(reversed(zaxes)), limit)
                        tiles = [_card_int(cards, f"ZTILE{i}", zaxes[0] if i == 1 else 1)
                                 for i in range(1, znaxis + 1)]
                        if all(t is not None and t > 0 for t in tiles):
                            n_tile = int(np.prod(tiles, dtype=object))
                            if n_tile > limit:
                                return _too_many(label, n_tile, tuple(reversed(tiles)), limit,
                                                 "pixels per compression tile")
                pcount = _card_int(cards, "PCOUNT", 0) or 0
                gcount = _card_int(cards, "GCOUNT", 1) or 1
                n_bytes = (abs(bitpix) // 8 * gcount * (pcount + n_values)) if axes else 0
                if compressed and n_bytes > 8 * limit:
                    # skipping it would mean decompressing it: refuse it now
                    return (f"{label} declares {n_bytes:,} bytes of data in a compressed "
                            f"file, more than {8 * limit:,} (8 bytes x the limit of "
                            f"{limit:,} pixels: max_pixels, --max-image-pixels)")
                stream.seek(n_bytes + (-n_bytes % 2880), os.SEEK_CUR)
    except (OSError, EOFError, ValueError, OverflowError):
        return None
    return None


def _list_hdus(path, hdul):
    """Load every HDU header, turning astropy's complaints into `ReadError`."""
    hdus = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for hdu in hdul:
                hdus.append(hdu)
        except Exception as exc:  # noqa: BLE001
            if not hdus:
                raise ReadError(f"{path}: corrupt FITS file ({_one_line(exc)})") from None
    if not hdus:
        messages = "; ".join(_one_line(w.message) for w in caught)
        raise ReadError(f"{path}: corrupt FITS file, no readable HDU"
                        + (f" ({messages})" if messages else ""))
    return hdus


def _select_hdu(path, hdus, hdu):
    """Return ``(index, hdu)`` of the image to read."""
    key = _normalise_hdu(hdu)
    if key is None:
        if "ADBFMT" in hdus[0].header:
            for index, candidate in enumerate(hdus):
                if candidate.name == "BLEND":
                    return index, candidate
            raise ReadError(f"{path}: astrodeblend output without a BLEND HDU")
        for index, candidate in enumerate(hdus):
            if candidate.name in _SIDE_EXTENSIONS and index > 0:
                continue
            if _has_image_data(candidate):
                return index, candidate
        kinds = ", ".join(f"{_hdu_label(i, h)}: {type(h).__name__}" for i, h in enumerate(hdus))
        raise ReadError(f"{path}: no image data in any HDU ({kinds})")
    if isinstance(key, int):
        if not -len(hdus) <= key < len(hdus):
            raise ReadError(f"{path}: no HDU {key} (the file has {len(hdus)} HDU"
                            f"{'s' if len(hdus) != 1 else ''}, numbered from 0)")
        index = key % len(hdus)
        return index, hdus[index]
    name, ver = key if isinstance(key, tuple) else (key, None)
    for index, candidate in enumerate(hdus):
        cname = candidate.name or ("PRIMARY" if index == 0 else "")
        if cname.upper() != name:
            continue
        if ver is not None and candidate.header.get("EXTVER", 1) != ver:
            continue
        return index, candidate
    names = sorted({(h.name or ("PRIMARY" if i == 0 else "?")) for i, h in enumerate(hdus)})
    wanted = name if ver is None else f"{name},{ver}"
    raise ReadError(f"{path}: no HDU named {wanted!r} (available: {', '.join(names)})")


def _check_image_header(path, label, hdu, limit):
    """Return the numpy shape ``(..., H, W)`` of an image HDU after checking its header."""
    if not _is_image_hdu(hdu):
        raise ReadError(f"{path}: {label} is a {type(hdu).__name__}, not an image")
    header = hdu.header
    try:
        axes = _naxes(header)
    except ValueError as exc:
        raise ReadError(f"{path}: {label} has a bad header ({exc})") from None
    bitpix = header.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise ReadError(f"{path}: {label} has an invalid BITPIX = {bitpix!r}")
    for key in ("BSCALE", "BZERO"):
        value = header.get(key)
        if value is not None and (isinstance(value, (str, bool))
                                  or not np.isfinite(float(value))):
            raise ReadError(f"{path}: {label} has an invalid {key} = {value!r}")
    if header.get("BSCALE") == 0:
        raise ReadError(f"{path}: {label} has BSCALE = 0 (every pixel would be the same)")
    if not axes or 0 in axes:
        raise ReadError(f"{path}: {label} holds no image data (NAXIS = {len(axes)}"
                        + (f", shape {tuple(reversed(axes))})" if axes else ")"))
    if len(axes) == 1:
        raise ReadError(f"{path}: {label} is 1-D (NAXIS1 = {axes[0]}); "
                        "expected a 2-D image or a 3-D cube")
    if len(axes) > 3 and any(n != 1 for n in axes[3:]):
        raise ReadError(f"{path}: {label} is {len(axes)}-D with shape "
                        f"{tuple(reversed(axes))}; expected a 2-D image or a 3-D cube")
    n_pixels = 1
    for n in axes:
        n_pixels *= n
    if n_pixels > limit:
        raise ReadError(f"{path}: {_too_many(label, n_pixels, tuple(reversed(axes)), limit)}")
    if not isinstance(hdu, fits.CompImageHDU):
        info = hdu.fileinfo()
        handle = info["file"] if info else None
        if handle is not None and not getattr(handle, "compression", None):
            expected = info["datLoc"] + abs(bitpix) // 8 * n_pixels
            size = os.path.getsize(path)
            if size < expected:
                raise ReadError(f"{path}: truncated FITS file ({size:,} bytes, the header of "
                                f"{label} needs {expected:,})")
    shape = tuple(reversed(axes[:3]))
    return shape


def _largest_finite(data, *, chunk=1 << 22):
    """Largest finite ``|value|`` of an array (0 when none), in chunks: no full-size temporary."""
    flat = data.reshape(-1)
    largest = 0.0
    with np.errstate(all="ignore"):
        for start in range(0, flat.size, chunk):
            part = np.asarray(flat[start:start + chunk])
            if part.dtype.kind == "f":
                value = np.max(np.abs(part), where=np.isfinite(part), initial=0.0)
            else:
                value = max(abs(float(part.max())), abs(float(part.min())))
            largest = max(largest, float(value))
    return largest


def _load_pixels(path, label, hdu, shape, *, check_range=True, dtype=np.float32):
    """Read the data of an image HDU as a new float32 array of ``shape``.

    With ``check_range``, values beyond +-``MAX_ABS_VALUE`` (among them float64
    values that do not fit in float32 at all) are refused before the cast.
    ``dtype=None`` keeps the HDU's own type (integer flags keep every bit).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = hdu.data
            if data is None:
                raise ReadError(f"{path}: {label} holds no image data")
            if check_range and data.size:
                largest = _largest_finite(data)
                if largest > MAX_ABS_VALUE:
                    raise ReadError(
                        f"{path}: {label} has values up to {largest:.3g}; astrodeblend "
                        f"computes in float32 and reads values within +-{MAX_ABS_VALUE:.0e} "
                        "(rescale the image, or set blank-pixel markers to NaN)")
            array = np.array(data, dtype=dtype)
    except AstrodeblendError:
        raise
    except MemoryError:
        raise ReadError(f"{path}: {label} does not fit in memory (shape {shape})") from None
    except Exception as exc:  # noqa: BLE001 - corrupt or truncated data
        raise ReadError(f"{path}: cannot read the data of {label}, the file may be "
                        f"truncated or corrupt ({_one_line(exc)})") from None
    if array.size != int(np.prod(shape)):
        raise ReadError(f"{path}: {label} has {array.size} values, its header says "
                        f"{int(np.prod(shape))}")
    return array.reshape(shape)


_WCS_KEY = re.compile(r"^(CTYPE|CRVAL|CRPIX|CDELT|CD\d_\d|PC\d_\d)\d*[A-Z]?$")


def _read_wcs(path, label, header):
    """Return the celestial (or 2-D linear) WCS of a header, None when it has none."""
    if not _has_wcs_keys(header):
        return None
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        try:
            wcs = WCS(header, naxis=2, fix=True)
            if wcs.has_celestial:
                wcs = wcs.celestial
                matrix = wcs.pixel_scale_matrix
                if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) == 0:
                    raise ValueError("the pixel scale matrix is singular")
                ny = header.get("NAXIS2", 1)
                nx = header.get("NAXIS1", 1)
                ra, dec = wcs.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0)
                if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
                    raise ValueError("the image centre has no valid sky position")
        except Exception as exc:  # noqa: BLE001 - wcslib raises many kinds
            raise ReadError(f"{path}: {label} has an invalid WCS ({_one_line(exc)})") from None
    # a celestial WCS, or (only CRPIX/CDELT-like keywords) a linear pixel WCS as it is
    return wcs


def _find_side(hdus, names, extver):
    for candidate in hdus[1:]:
        if candidate.name in names and candidate.header.get("EXTVER", 1) == extver:
            return candidate
    return None


#: LSST / HSC mask planes (``MP_<NAME>`` cards of a ``MASK`` extension) that mark bad
#: pixels: the LSST pipelines' scarlet deblender's default ``badMask`` (``BAD``, ``CR``,
#: ``NO_DATA``, ``SAT``, ``SUSPECT``, ``EDGE``) and ``UNMASKEDNAN``
BAD_MASK_PLANES = ("BAD", "SAT", "CR", "NO_DATA", "SUSPECT", "EDGE", "UNMASKEDNAN")


def _bad_pixels(header, flags):
    """Return where a ``MASK`` or ``DQ`` extension's values mark a pixel as bad.

    A mask that names its bit planes in ``MP_<NAME>`` cards (LSST and HSC
    images) flags a pixel as bad only in the planes of `BAD_MASK_PLANES`:
    its other planes (``DETECTED`` is set on every source, ``INTRP``,
    ``CROSSTALK``, ...) are information, not defects.  Any other mask, and
    an HST data-quality (``DQ``) array, flags every non-zero pixel.
    """
    planes = {key[3:]: value for key, value in header.items()
              if key.startswith("MP_") and isinstance(value, int) and 0 <= value < 63}
    integral = np.issubdtype(flags.dtype, np.integer) or bool(
        np.all(np.isfinite(flags)) and np.all(flags == np.round(flags)))
    if planes and integral:
        bits = sum(1 << planes[name] for name in BAD_MASK_PLANES if name in planes)
        return (flags.astype(np.int64) & bits) != 0
    return flags != 0


def _side_arrays(path, hdus, image_hdu, index, shape, limit):
    """Return ``(mask, uncertainty)`` from the image's side extensions.

    ``MASK`` or ``DQ`` give the mask (`_bad_pixels`), ``UNCERT``, ``ERR``,
    ``VAR`` or ``IVAR`` the uncertainty, a drizzled image's ``WHT`` masks
    the pixels of weight 0 (no exposure covered them); each with the
    image's ``EXTVER``.
    """
    if index > 0 and image_hdu.name in ("", "PRIMARY"):
        return None, None
    extver = image_hdu.header.get("EXTVER", 1)
    output = image_hdu.name == "BLEND"
    names_mask = ("BLENDMSK",) if output else ("MASK", "DQ")
    names_unc = ("BLENDUNC",) if output else ("UNCERT", "ERR", "ERROR", "VAR", "VARIANCE",
                                              "IVAR")

    def side(names, dtype=np.float32):
        hdu = _find_side(hdus, names, extver)
        if hdu is None:
            return None, None
        label = _hdu_label(hdus.index(hdu), hdu)
        side_shape = _check_image_header(path, label, hdu, limit)
        if side_shape not in (shape, shape[-2:]):
            raise ReadError(f"{path}: {label} has shape {side_shape}, the image "
                            f"has {shape}")
        return hdu, _load_pixels(path, label, hdu, side_shape, check_range=False, dtype=dtype)

    hdu, flags = side(names_mask, dtype=None)
    mask = None if hdu is None else _bad_pixels(hdu.header, flags)
    hdu, uncertainty = side(names_unc)
    if hdu is not None:
        utype = str(hdu.header.get("UTYPE", "")).lower()
        if hdu.name in ("VAR", "VARIANCE") or "variance" in utype and "inverse" not in utype:
            uncertainty = np.sqrt(np.clip(uncertainty, 0, None))
        elif hdu.name == "IVAR" or "inverse" in utype:
            with np.errstate(divide="ignore"):
                uncertainty = np.where(uncertainty > 0,
                                       1.0 / np.sqrt(np.clip(uncertainty, 0, None)), np.inf)
        uncertainty = np.broadcast_to(uncertainty, shape).astype(np.float32)
        bad = ~np.isfinite(uncertainty)
        if bad.any():
            mask = bad if mask is None else (np.broadcast_to(mask, shape) | bad)
            uncertainty = np.where(bad, 0, uncertainty).astype(np.float32)
    hdu, weight = (None, None) if output else side(("WHT",))
    if hdu is not None:
        empty = ~(weight > 0)
        mask = empty if mask is None else (np.broadcast_to(mask, shape) | empty)
    return mask, uncertainty


def _has_wcs_keys(header):
    """Whether a header holds any WCS keyword (``CTYPE1``, ``CRPIX1``, ``CD1_1``, ...)."""
    return any(_WCS_KEY.match(key) for key in header)


def _channel_last(shape, header):
    """Whether a cube is an (H, W, C) colour array: 2-4 planes last, no WCS.

    FITS cubes hold their bands along NAXIS3 (numpy's first axis); an RGB
    array saved with ``fits.writeto(name, rgb)`` has them along NAXIS1, and
    read as FITS it would be H planes W x 3 pixels each.
    """
    return (len(shape) == 3 and 2 <= shape[2] <= 4 and min(shape[:2]) >= 16
            and not _has_wcs_keys(header))


def _header_bands(header, primary, n_bands):
    """Band names from BANDS, FILTER or FILTERnn cards (image header first), or None."""
    for source in (header, primary):
        if source is None:
            continue
        text = source.get("BANDS")
        if isinstance(text, str):
            names = [b.strip() for b in text.split(",")]
            if len(names) == n_bands and all(names):
                return names
        if n_bands == 1:
            value = source.get("FILTER")
            if isinstance(value, str) and value.strip():
                return [value.strip()]
            # HST ACS/WFPC2 style FILTER1/FILTER2 wheels: the one that is not CLEAR
            wheels = [str(source.get(f"FILTER{i}", "")).strip() for i in range(1, 4)]
            wheels = [w for w in wheels if w and not w.upper().startswith(("CLEAR", "N/A"))]
            if len(wheels) == 1:
                return wheels
            continue
        names = [source.get(f"FILTER{i}") for i in range(1, n_bands + 1)]
        if all(isinstance(v, str) and v.strip() for v in names):
            names = [v.strip() for v in names]
            if len(set(names)) == n_bands:
                return names
    return None


def _read_fits(path, head, *, hdu=None, bands=None, limit=MAX_PIXELS):
    problem = _declared_size_problem(path, head, limit)
    if problem:
        raise ReadError(f"{path}: {problem}")
    opened = _OpenFits(path)
    hdul = opened.hdul
    try:
        hdus = _list_hdus(path, hdul)
        index, image_hdu = _select_hdu(path, hdus, hdu)
        label = _hdu_label(index, image_hdu)
        shape = _check_image_header(path, label, image_hdu, limit)
        if any(not isinstance(h, fits.CompImageHDU) and _is_image_hdu(h)
               and any(k in h.header for k in ("BSCALE", "BZERO", "BLANK")) for h in hdus):
            # astropy cannot scale memory-mapped data: read this file without memmap
            opened.close()
            opened = _OpenFits(path, memmap=False)
            hdul = opened.hdul
            hdus = _list_hdus(path, hdul)
            image_hdu = hdus[index]
        header = image_hdu.header.copy()
        primary = hdus[0].header if index > 0 else None
        per_band = (_band_hdus(hdus, index)
                    if hdu is None and "ADBFMT" not in hdus[0].header else None)
        if per_band is not None:
            # one HDU per band: stacked in file order, the first one's header and WCS
            found, names = per_band
            stacked = (len(found), *shape[-2:])
            if math.prod(stacked) > limit:
                raise ReadError(f"{path}: " + _too_many(f"{len(found)} HDUs of one band each",
                                                        math.prod(stacked), stacked, limit))
            labels = [_hdu_label(i, h) for i, h in found]
            data = np.stack([_load_pixels(path, name, h, _check_image_header(path, name, h, limit))
                             for name, (_, h) in zip(labels, found, strict=True)])
            shape = data.shape
            bands = bands if bands is not None else names
            header.add_history(f"astrodeblend: HDUs {', '.join(str(i) for i, _ in found)} "
                               "read as one band each")
        else:
            data = _load_pixels(path, label, image_hdu, shape)
        mask, uncertainty = _side_arrays(path, hdus, image_hdu, index, shape, limit)
    finally:
        opened.close()
    if not np.isfinite(data).any():
        raise ReadError(f"{path}: {label} has no finite pixel (all NaN or Inf)")
    if _channel_last(data.shape, header):
        # an (H, W, C) colour array written as it was: planes of 2-4 px a side are no image
        data = np.ascontiguousarray(np.moveaxis(data, -1, 0))
        mask, uncertainty = (None if a is None else
                             np.ascontiguousarray(np.moveaxis(np.broadcast_to(a, shape), -1, 0))
                             for a in (mask, uncertainty))
        header.add_history(f"astrodeblend: an (H, W, C) array, read as {shape[2]} bands of "
                           f"{shape[1]} x {shape[0]} px")
    wcs = _read_wcs(path, label, header)
    unit = _parse_unit(header.get("BUNIT"))
    if bands is None:
        bands = _header_bands(header, primary, 1 if data.ndim == 2 else data.shape[0])
    if "ORIGFILE" not in header:
        header["ORIGFILE"] = (header_name(path.name), "file the image was read from")
    if index > 0 and "ORIGHDU" not in header:
        header["ORIGHDU"] = (index, "HDU the image was read from")
    try:
        return GalaxyImage(data, mask=mask, uncertainty=uncertainty, wcs=wcs, meta=header,
                           unit=unit, bands=bands, source=str(path))
    except InvalidInputError as exc:
        raise ReadError(f"{path}: {exc}") from None
