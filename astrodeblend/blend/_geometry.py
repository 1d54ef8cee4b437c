"""Crops, flips, rotations and area-weighted resampling of scene images, with their WCS."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._random import json_seed
from ..errors import InvalidInputError
from ..image import GalaxyImage
from ._scene import REFERENCE_SIZE, _pair


def _geometry(shape, crop, factor, shift):
    """Effective crop, factor and shift range (scaled for images smaller than ``crop``)."""
    if not isinstance(factor, numbers.Integral) or isinstance(factor, bool) or factor < 1:
        raise InvalidInputError(f"factor must be a positive integer, not {factor!r}")
    if not isinstance(crop, numbers.Integral) or isinstance(crop, bool) or crop < 1:
        raise InvalidInputError(f"crop must be a positive integer, not {crop!r}")
    lo, hi = _pair(shift, "shift")
    if lo < 0 or hi < lo:
        raise InvalidInputError(f"shift must be (low, high) with 0 <= low <= high, not {shift!r}")
    size = min(shape[-2:])
    scale = 1.0
    if crop > size:
        scale = size / REFERENCE_SIZE
        crop = int(round(crop * scale))
    crop = min(crop, size) // factor * factor
    if crop < factor:
        raise InvalidInputError(f"images of shape {shape} are too small for a crop binned "
                                f"by factor={factor}")
    return int(crop), int(factor), (lo * scale, hi * scale)


def _filled(image):
    """Return the pixels of ``image``, masked ones at 0 (no copy without a mask)."""
    return image.data if image.mask is None else image.filled(0.0)


def _filled_crop(image, x0, y0, crop):
    """Return the ``crop`` x ``crop`` window at ``(x0, y0)`` of ``image``, masked at 0."""
    window = (slice(None), slice(y0, y0 + crop), slice(x0, x0 + crop))
    data = image.data[window]
    if image.mask is None:
        return data
    return np.where(image.mask[window], np.float32(0.0), data)


def _crop_origin(shape, crop):
    h, w = shape[-2:]
    return (w - crop) // 2, (h - crop) // 2


def _block_mean(array, factor):
    """Bin the last two axes by ``factor`` (area average), keeping float32.

    Summing the ``factor**2`` strided views is several times faster than a
    reshape-and-mean on the (non-contiguous) block axes.
    """
    if factor == 1:
        return np.ascontiguousarray(array, dtype=np.float32)
    h, w = array.shape[-2:]
    h, w = h // factor * factor, w // factor * factor
    out = np.array(array[..., 0:h:factor, 0:w:factor], dtype=np.float32)
    for i in range(factor):
        for j in range(factor):
            if i or j:
                out += array[..., i:h:factor, j:w:factor]
    out *= np.float32(1.0 / factor ** 2)
    return out


def _area_axis(array, n_out, axis):
    """Exact area averaging of one axis from ``n`` to ``n_out`` pixels (integral image)."""
    n_in = array.shape[axis]
    data = np.moveaxis(np.asarray(array, dtype=np.float32), axis, -1)
    cumulative = np.zeros(data.shape[:-1] + (n_in + 1,), dtype=np.float64)
    np.cumsum(data, axis=-1, out=cumulative[..., 1:])
    edges = np.arange(n_out + 1) * (n_in / n_out)
    index = np.minimum(np.floor(edges).astype(np.intp), n_in - 1)
    frac = edges - index
    integral = cumulative[..., index] + frac * data[..., index]
    out = np.diff(integral, axis=-1) * (n_out / n_in)
    return np.moveaxis(out.astype(np.float32), -1, axis)


def _area_resize(array, shape):
    """Area-average the last two axes of ``array`` to ``shape`` (exact, flux-consistent)."""
    h, w = array.shape[-2:]
    oh, ow = shape
    if (h, w) == (oh, ow):
        return np.asarray(array, dtype=np.float32)
    if h % oh == 0 and w % ow == 0 and h // oh == w // ow:
        return _block_mean(array, h // oh)
    return _area_axis(_area_axis(array, ow, -1), oh, -2)


def _draw_transform(rng, shift_range, *, transform=True):
    """Draw Reiman's random transform; the draws are the same whatever ``transform`` is."""
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    scale = float(math.exp(rng.uniform(-1.0, 0.5)))
    flip_x = bool(rng.random() < 0.5)
    flip_y = bool(rng.random() < 0.5)
    sign = np.where(rng.random(2) < 0.5, -1.0, 1.0)
    magnitude = rng.uniform(shift_range[0], shift_range[1], size=2)
    dx, dy = (float(v) for v in sign * magnitude)
    if not transform:
        angle, scale, flip_x, flip_y = 0.0, 1.0, False, False
    return {"angle": angle, "scale": scale, "flip_x": flip_x, "flip_y": flip_y,
            "shift": [dx, dy]}


def _transform_crop(array, t, x0, y0, crop):
    """Rotate/scale/flip ``array`` about its centre, shift it and return the crop window.

    One affine resampling (bilinear) per band, evaluated only on the crop.
    """
    from scipy.ndimage import affine_transform

    h, w = array.shape[-2:]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    cos, sin = math.cos(t["angle"]), math.sin(t["angle"])
    fx = -1.0 if t["flip_x"] else 1.0
    fy = -1.0 if t["flip_y"] else 1.0
    # inverse of p' = c + s R F (p - c) + d in (x, y): p = c + F R^T (p' - c - d) / s
    inv = np.array([[fx * cos, fx * sin], [-fy * sin, fy * cos]]) / t["scale"]
    # the same matrix in (row, col) = (y, x) order
    inv_rc = inv[::-1, ::-1]
    dx, dy = t["shift"]
    start = np.array([y0 - cy - dy, x0 - cx - dx])
    offset = np.array([cy, cx]) + inv_rc @ start
    out = np.empty((array.shape[0], crop, crop), dtype=np.float32)
    for band in range(array.shape[0]):
        affine_transform(array[band], inv_rc, offset=offset, output_shape=(crop, crop),
                         output=out[band], order=1, mode="constant", cval=0.0,
                         prefilter=False)
    return out


def _map_xy(x, y, x0, y0, fx, fy):
    """Map a 0-based position through a crop at ``(x0, y0)`` and a binning ``(fx, fy)``."""
    return (x - x0 + 0.5) / fx - 0.5, (y - y0 + 0.5) / fy - 0.5


def _resample_wcs(wcs, x0, y0, fx, fy, shape):
    """WCS of the image cropped at ``(x0, y0)`` and binned by ``(fx, fy)``."""
    if wcs is None:
        return None
    new = wcs.deepcopy()
    crpix = new.wcs.crpix
    new.wcs.crpix = [(crpix[0] - x0 - 0.5) / fx + 0.5, (crpix[1] - y0 - 0.5) / fy + 0.5]
    factors = np.array([fx, fy], dtype=float)[None, :]
    if new.wcs.has_cd():
        new.wcs.cd = new.wcs.cd * factors
    elif fx != 1 or fy != 1:
        new.wcs.pc = new.wcs.get_pc() * factors
    if fx != 1 or fy != 1:
        new.sip = None
    new.pixel_shape = (shape[-1], shape[-2])
    new.wcs.set()
    return new


def _scene_image(a, data, protocol, seed, *, display, x0=0, y0=0, fx=1.0, fy=1.0):
    """Return the scene's blend: a GalaxyImage with A's bands, resampled WCS and header."""
    meta = a.meta.copy()
    meta["PROTOCOL"] = (protocol, "astrodeblend blending protocol")
    if display:
        meta["ADBDISP"] = (True, "display-stretched values")
    else:
        meta.remove("ADBDISP", ignore_missing=True, remove_all=True)
    meta.add_history(f"astrodeblend blend_{protocol} seed={json_seed(seed)}")
    wcs = _resample_wcs(a.wcs, x0, y0, fx, fy, data.shape)
    return GalaxyImage(data, wcs=wcs, meta=meta, unit=a.unit, bands=a.bands,
                       source=f"{protocol} scene")
