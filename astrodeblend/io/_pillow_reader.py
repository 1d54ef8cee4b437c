"""The JPG and PNG reader (Pillow): the size checked before decoding, values scaled to [0, 1]."""

from __future__ import annotations

import threading
import warnings

import numpy as np
from astropy.io import fits

from ..errors import AstrodeblendError, InvalidInputError, ReadError
from ..image import GalaxyImage
from ..utils import header_name
from ._files import MAX_PIXELS, _one_line, _too_many

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
