"""What every reader does first: the pixel limits, the file checks and the file's kind."""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, ReadError

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
