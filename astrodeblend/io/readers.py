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

import contextlib
import contextvars
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import AstrodeblendError, InvalidInputError, ReadError
from ..image import GalaxyImage
from ..utils import header_name

__all__ = ["read_image", "read_bands", "describe_image", "MAX_PIXELS", "MAX_ABS_VALUE",
           "FITS_SUFFIXES", "IMAGE_SUFFIXES"]

#: Default largest number of pixel values (bands x rows x columns) that the
#: readers accept (``max_pixels=``, ``--max-image-pixels``): 2**27, 512 MiB
#: as float32, so that reading the largest image (raw data, float32 copy and
#: mask) stays within 2 GiB of memory.  A file that declares more, in any
#: HDU, is refused before any data are decoded.
MAX_PIXELS = 2**27

#: Largest magnitude of a pixel value that the readers accept.  astrodeblend
#: computes in float32 (largest value 3.4e38): squares and sums of larger
#: values over a whole image overflow.
MAX_ABS_VALUE = 1e15

# The limit of `read_image` calls that do not give ``max_pixels`` (for the CLI's
# ``info --max-image-pixels``, whose describe function reads with the default).
_DEFAULT_LIMIT = contextvars.ContextVar("astrodeblend_max_pixels", default=None)

#: File name endings read as FITS (besides any file that starts with ``SIMPLE  =``).
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz",
                 ".fz", ".fits.bz2")

#: File name endings read with Pillow.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Extensions that hold per-pixel side information, never the image itself.
_SIDE_EXTENSIONS = {"MASK", "UNCERT", "ERR", "ERROR", "VAR", "VARIANCE", "IVAR", "WHT",
                    "DQ", "BLENDMSK", "BLENDUNC"}

_FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------- helpers
def _one_line(exc):
    """Return the message of an exception on one line (wcslib's ``ERROR n in ...`` dropped)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not re.match(r"ERROR \d+ in ", line)]
    text = " ".join(useful or lines) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _check_file(path):
    """Return ``path`` as a `Path` after checking that it is a readable, non-empty file."""
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise ReadError(f"expected a file path, not {type(path).__name__}")
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ReadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ReadError(f"{path}: cannot access the file ({exc.strerror or exc})") from None
    import stat

    if stat.S_ISDIR(mode):
        raise ReadError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(mode):
        raise ReadError(f"{path}: is not a regular file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(80)
    except OSError as exc:
        raise ReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if not head:
        raise ReadError(f"{path}: the file is empty (0 bytes)")
    return path, head


def _kind(path, head):
    """Return ``'fits'`` or ``'pillow'`` from the first bytes and the name of a file."""
    name = path.name.lower()
    by_suffix = ("fits" if name.endswith(FITS_SUFFIXES)
                 else "pillow" if name.endswith(IMAGE_SUFFIXES) else None)
    if head.startswith(_FITS_MAGIC):
        return "fits"
    if head.startswith((_JPEG_MAGIC, _PNG_MAGIC)):
        return "pillow"
    if head.startswith((_GZIP_MAGIC, _BZIP2_MAGIC)) and by_suffix == "fits":
        return "fits"
    if by_suffix == "fits":
        raise ReadError(f"{path}: not a FITS file (it does not start with 'SIMPLE  =')")
    if by_suffix == "pillow":
        raise ReadError(f"{path}: corrupt {name.rsplit('.', 1)[-1].upper()} file "
                        "(unknown first bytes)")
    raise ReadError(f"{path}: unsupported file type (expected FITS "
                    f"({', '.join(FITS_SUFFIXES[:3])}, ...), JPG or PNG)")


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


def _limit(max_pixels):
    """Return the pixel limit of a call: ``max_pixels``, the context's, or `MAX_PIXELS`."""
    if max_pixels is None:
        max_pixels = _DEFAULT_LIMIT.get()
        if max_pixels is None:
            return MAX_PIXELS
    if (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer))
            or max_pixels < 1):
        raise InvalidInputError(f"max_pixels must be a positive integer, not {max_pixels!r}")
    return int(max_pixels)


@contextlib.contextmanager
def _default_max_pixels(max_pixels):
    """Within the block, `read_image` calls without ``max_pixels`` use this limit."""
    token = _DEFAULT_LIMIT.set(None if max_pixels is None else _limit(max_pixels))
    try:
        yield
    finally:
        _DEFAULT_LIMIT.reset(token)


def _too_many(label, n_values, shape, limit, what="pixels"):
    return (f"{label} claims {n_values:,} {what} (shape {shape}), more than the limit of "
            f"{limit:,} (max_pixels, --max-image-pixels)")


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


def _load_pixels(path, label, hdu, shape, *, check_range=True):
    """Read the data of an image HDU as a new float32 array of ``shape``.

    With ``check_range``, values beyond +-``MAX_ABS_VALUE`` (among them float64
    values that do not fit in float32 at all) are refused before the cast.
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
            array = np.array(data, dtype=np.float32)
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
    if not any(_WCS_KEY.match(key) for key in header):
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


def _side_arrays(path, hdus, image_hdu, index, shape, limit):
    """Return ``(mask, uncertainty)`` from MASK / UNCERT, ERR, VAR, IVAR extensions."""
    if index > 0 and image_hdu.name in ("", "PRIMARY"):
        return None, None
    extver = image_hdu.header.get("EXTVER", 1)
    if image_hdu.name == "BLEND":
        names_mask, names_unc = ("BLENDMSK",), ("BLENDUNC",)
    else:
        names_mask, names_unc = ("MASK",), ("UNCERT", "ERR", "ERROR", "VAR", "VARIANCE", "IVAR")
    result = []
    for names in (names_mask, names_unc):
        hdu = _find_side(hdus, names, extver)
        if hdu is None:
            result.append(None)
            continue
        label = _hdu_label(hdus.index(hdu), hdu)
        side_shape = _check_image_header(path, label, hdu, limit)
        if side_shape not in (shape, shape[-2:]):
            raise ReadError(f"{path}: {label} has shape {side_shape}, the image "
                            f"has {shape}")
        values = _load_pixels(path, label, hdu, side_shape, check_range=False)
        if names is names_mask:
            result.append(values != 0)
            continue
        utype = str(hdu.header.get("UTYPE", "")).lower()
        if hdu.name in ("VAR", "VARIANCE") or "variance" in utype and "inverse" not in utype:
            values = np.sqrt(np.clip(values, 0, None))
        elif hdu.name == "IVAR" or "inverse" in utype:
            with np.errstate(divide="ignore"):
                values = np.where(values > 0, 1.0 / np.sqrt(np.clip(values, 0, None)), np.inf)
        result.append(values.astype(np.float32))
    mask, uncertainty = result
    if uncertainty is not None:
        uncertainty = np.broadcast_to(uncertainty, shape).astype(np.float32)
        bad = ~np.isfinite(uncertainty)
        if bad.any():
            mask = bad if mask is None else (np.broadcast_to(mask, shape) | bad)
            uncertainty = np.where(bad, 0, uncertainty).astype(np.float32)
    return mask, uncertainty


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
        data = _load_pixels(path, label, image_hdu, shape)
        mask, uncertainty = _side_arrays(path, hdus, image_hdu, index, shape, limit)
    finally:
        opened.close()
    if not np.isfinite(data).any():
        raise ReadError(f"{path}: {label} has no finite pixel (all NaN or Inf)")
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


# ---------------------------------------------------------------------- Pillow
# Pillow's own decompression-bomb check (`PIL.Image.MAX_IMAGE_PIXELS`, a global)
# is switched off while a file is opened, under this lock: the size is checked
# here against the caller's limit instead, before anything is decoded.
_PILLOW_LOCK = threading.Lock()


def _open_pillow(path):
    from PIL import Image

    with _PILLOW_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _read_pillow(path, *, bands=None, limit=MAX_PIXELS):
    from PIL import Image

    kind = path.suffix.lstrip(".").upper() or "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _open_pillow(path) as img:
                width, height = img.size
                kind = img.format or kind
                grey = img.mode in ("1", "L", "LA", "P;L", "I", "F") or img.mode.startswith("I;")
                n_values = width * height * (1 if grey else 3)
                if n_values > limit:
                    shape = (1 if grey else 3, height, width)
                    raise ReadError(f"{path}: {_too_many(kind, n_values, shape, limit)}")
                img.load()
                mode = img.mode
                if mode in ("1", "L", "LA", "P;L"):
                    pixels, scale = np.asarray(img.convert("L"))[None], 255.0
                elif mode.startswith("I;16") or mode in ("I", "I;16B"):
                    pixels, scale = np.asarray(img)[None], 65535.0
                elif mode == "F":
                    pixels, scale = np.asarray(img)[None], 1.0
                else:
                    pixels, scale = np.asarray(img.convert("RGB")).transpose(2, 0, 1), 255.0
    except AstrodeblendError:
        raise
    except Image.DecompressionBombError as exc:
        raise ReadError(f"{path}: image too large ({_one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ...
        raise ReadError(f"{path}: corrupt or truncated {kind} file ({_one_line(exc)})") from None
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise ReadError(f"{path}: {kind} file holds no pixels")
    # one pass: to float32, scaled to [0, 1], rows flipped so that row 0 is the bottom
    array = np.empty(pixels.shape, dtype=np.float32)
    np.divide(pixels[:, ::-1, :], scale, out=array, dtype=np.float32, casting="unsafe")
    header = fits.Header()
    header["ADBDISP"] = (True, "display-stretched values (gamma 2.2), not flux")
    header["ORIGFILE"] = (header_name(path.name), "file the image was read from")
    if bands is None:
        bands = ("R", "G", "B") if array.shape[0] == 3 else ("grey",)
    try:
        return GalaxyImage(array, meta=header, bands=bands, source=str(path))
    except InvalidInputError as exc:
        raise ReadError(f"{path}: {exc}") from None


# ----------------------------------------------------------------- public API
def read_image(path, *, hdu=None, bands=None, max_pixels=None):
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
        return _read_fits(path, head, hdu=hdu, bands=bands, limit=limit)
    return _read_pillow(path, bands=bands, limit=limit)


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


def read_bands(paths, *, bands=None, hdu=None, max_pixels=None):
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
        mask = np.concatenate([im.mask if im.mask is not None
                               else np.zeros(im.shape, bool) for im in images])
    else:
        mask = None
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
        return GalaxyImage(data, mask=mask, uncertainty=uncertainty, wcs=images[0].wcs,
                           meta=header, unit=unit, bands=bands,
                           source=", ".join(str(p) for p in paths))
    except InvalidInputError as exc:
        raise InvalidInputError(f"read_bands: {exc}") from None


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
        return "\n".join([line, *_describe_hdus(
            hdus, index, mark="  <- read (choose with hdu= or --hdu)")])
    finally:
        opened.close()


_BITPIX_TYPES = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32",
                 -64: "float64"}


def _describe_result_header(primary, hdus):
    """One line on an astrodeblend result: format, sources, model, flux mode."""
    n_sources = primary.get("NSOURCE")
    if not isinstance(n_sources, (int, np.integer)):
        n_sources = sum(h.name == "SOURCE" for h in hdus)
    text = (f"astrodeblend result, format {primary.get('ADBFMT')}, {n_sources} source"
            f"{'' if n_sources == 1 else 's'}")
    model = primary.get("ADBMODEL")
    if model:
        text += f", model {model!r}"
        model_hash = str(primary.get("ADBMHASH") or "")
        if model_hash:
            text += f" (sha256 {model_hash[:12]}...)"
    text += f", flux mode {primary.get('ADBFLUX', 'not recorded')}"
    if primary.get("PROCSOFT"):
        text += f", written by {primary['PROCSOFT']}"
    return text


def _hdu_kind(hdu):
    """Short description of an HDU's content from its header alone."""
    header = hdu.header
    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        rows, cols = header.get("NAXIS2", 0), header.get("TFIELDS", 0)
        return f"table, {rows} row{'' if rows == 1 else 's'} x {cols} column" \
               f"{'' if cols == 1 else 's'}"
    if not _is_image_hdu(hdu):
        return type(hdu).__name__
    try:
        axes = _naxes(header)
    except ValueError as exc:
        return f"image with a bad header ({exc})"
    if not axes or not all(axes):
        return "no data"
    return (f"image {tuple(reversed(axes))} "
            f"{_BITPIX_TYPES.get(header.get('BITPIX'), 'BITPIX=' + str(header.get('BITPIX')))}")


def _describe_hdus(hdus, read_index, *, mark):
    """Indented lines, one per HDU or per run of three or more same-named HDUs.

    The HDU ``read_index`` is never part of a run and gets ``mark`` appended.
    """
    lines = []
    start = 0
    while start < len(hdus):
        name = hdus[start].name
        stop = start + 1
        while stop < len(hdus) and name and hdus[stop].name == name and stop != read_index \
                and start != read_index:
            stop += 1
        if stop - start >= 3:
            first, last = (hdus[i].header.get("EXTVER", 1) for i in (start, stop - 1))
            lines.append(f"  HDU {start}-{stop - 1} ({name}, {first}-{last}): "
                         f"{stop - start} HDUs, the first {_hdu_kind(hdus[start])}")
        else:
            stop = start + 1
            text = f"  {_hdu_label(start, hdus[start])}: {_hdu_kind(hdus[start])}"
            if start == read_index:
                text += mark
            lines.append(text)
        start = stop
    return lines


def _describe_catalog(hdus, max_rows):
    """Return the first ``max_rows`` rows of a result's CATALOG as indented lines."""
    table = next((h for h in hdus if h.name == "CATALOG"), None)
    if table is None:
        return ["  no CATALOG HDU"]
    try:
        data = table.data
        n_rows = 0 if data is None else len(data)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for broken tables
        return [f"  CATALOG cannot be read ({_one_line(exc)})"]
    shown = min(n_rows, max(0, int(max_rows)))
    lines = [f"  catalog ({n_rows} row{'' if n_rows == 1 else 's'}"
             + (f", first {shown}" if shown < n_rows else "") + "):"]
    if not shown:
        return lines
    names = data.columns.names
    columns = [c for c in ("id", "x_centroid", "y_centroid", "ra", "dec", "flux") if c in names]
    widths = {"id": 6, "x_centroid": 10, "y_centroid": 10, "ra": 11, "dec": 11, "flux": 11}
    lines.append("    " + " ".join(f"{c:>{widths[c]}}" for c in columns)
                 + ("  (flux: sum over bands)" if "flux" in columns
                    and np.ndim(data["flux"][0]) > 0 else ""))
    for row in range(shown):
        cells = []
        for c in columns:
            value = data[c][row]
            if c == "id":
                cells.append(f"{int(value):>6d}")
            elif c == "flux":
                cells.append(f"{float(np.sum(value)):>11.5g}")
            elif c in ("ra", "dec"):
                cells.append(f"{float(value):>11.6f}")
            else:
                cells.append(f"{float(value):>10.2f}")
        lines.append("    " + " ".join(cells))
    return lines
