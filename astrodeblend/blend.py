"""Blended scenes with ground truth: the three protocols of ``spec/protocols.md``.

Each function takes isolated galaxy images (`~astrodeblend.GalaxyImage` or
arrays ``(C, H, W)`` / ``(H, W)``, all of one shape and band count), galaxy A
first, and returns a `Scene`: the blended image, the noiseless truth of every
galaxy in the same value space as the blend, their centres and every random
draw (``params``), so that a scene can be described and rebuilt.  A scene is
a pure function of its inputs and ``seed``: only
``numpy.random.default_rng(seed)`` is used, never a global generator.

``paper``
    The seed paper: B shifted 50 px to the right, blend = pixel-wise
    maximum, partial (segmented, noisy) images of each galaxy, everything
    area-averaged to 128x128.
``reiman``
    Reiman & Goehre (2019): B rotated, scaled, flipped and shifted, both
    centre-cropped to 240 px and binned by 3 (80x80 from 424 px Galaxy Zoo
    images), blend = pixel-wise maximum, no noise.
``physical``
    What a survey sees: linear flux, blend = sum of the components (any
    number of galaxies), flux ratios, optional PSF, Poisson and sky noise on
    the blend only.

Value spaces: display images (header card ``ADBDISP = True``, JPG/PNG) are
gamma-stretched values in [0, 1].  ``paper`` and ``reiman`` work on the
values as given and keep ``ADBDISP`` in the scene header; ``physical``
linearises display images (``value ** 2.2``) and subtracts a sigma-clipped
sky per band (`astrodeblend.detect.background_and_noise`), so its blends and
truths are linear flux and carry no ``ADBDISP`` card.  Other images (FITS,
arrays) are used as they are.

Images smaller than the 240 px crop (``reiman``, ``physical``) are handled by
scaling the crop and the shift range by ``min(H, W) / 424``, i.e. the same
geometry as for a 424 px Galaxy Zoo image.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._random import json_seed, make_rng
from .errors import InvalidInputError
from .image import GalaxyImage, as_galaxy_image

__all__ = [
    "PROTOCOLS",
    "Scene",
    "blend_paper",
    "blend_reiman",
    "blend_physical",
    "make_scene",
    "linear_flux",
]

#: Names of the blending protocols, as accepted by `make_scene`.
PROTOCOLS = ("paper", "reiman", "physical")

#: Size of a Galaxy Zoo image: the frame in which crops and shifts are defined.
REFERENCE_SIZE = 424

#: Exponent that undoes the display gamma of JPG/PNG images.
DISPLAY_GAMMA = 2.2


@dataclass(repr=False)
class Scene:
    """A blended scene and its ground truth.

    Attributes
    ----------
    blend : `~astrodeblend.GalaxyImage`
        The blended image ``(C, H, W)``, with the WCS (resampled to the
        scene's pixel grid), bands and header of galaxy A, and the header
        card ``PROTOCOL``.
    components : `numpy.ndarray`
        ``float32 (N, C, H, W)``: the noiseless image of each galaxy, in the
        same value space as ``blend``.
    centers : `numpy.ndarray`
        ``float64 (N, 2)``: 0-based ``(x, y)`` centre of each galaxy.
    protocol : str
        ``'paper'``, ``'reiman'`` or ``'physical'``.
    params : dict
        JSON-serialisable record of the settings and of every random draw.
    partials : `numpy.ndarray` or None
        ``float32 (N, C, H, W)`` noisy partial images (``paper`` only).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((1, 48, 48), np.float32); a[0, 20:28, 20:28] = 1
    >>> scene = blend_reiman(a, a, seed=1)
    >>> scene.n_sources, scene.blend.shape, scene.components.shape
    (2, (1, 9, 9), (2, 1, 9, 9))
    """

    blend: GalaxyImage
    components: np.ndarray
    centers: np.ndarray
    protocol: str
    params: dict
    partials: np.ndarray | None = None

    @property
    def n_sources(self):
        """Number of galaxies in the scene."""
        return int(self.components.shape[0])

    def __repr__(self):
        return (f"<Scene protocol={self.protocol!r} n_sources={self.n_sources} "
                f"shape={self.blend.shape} seed={self.params.get('seed')!r}>")


# ----------------------------------------------------------------- helpers
def _coerce(images, names):
    """Return the inputs as GalaxyImages of one shape, or raise InvalidInputError."""
    out = []
    for name, image in zip(names, images, strict=True):
        try:
            out.append(as_galaxy_image(image))
        except InvalidInputError as exc:
            raise InvalidInputError(f"galaxy {name}: {exc}") from None
    first = out[0]
    for name, image in zip(names[1:], out[1:], strict=True):
        if image.n_bands != first.n_bands:
            raise InvalidInputError(
                f"galaxy {name} has {image.n_bands} bands but galaxy {names[0]} has "
                f"{first.n_bands}: all images of a scene need the same bands")
        if image.shape != first.shape:
            raise InvalidInputError(
                f"galaxy {name} has shape {image.shape} but galaxy {names[0]} has "
                f"{first.shape}: all images of a scene need the same shape")
    return out


def _is_display(image):
    return bool(image.meta.get("ADBDISP", False))


def _galaxy_names(n):
    return [chr(ord("A") + i) if i < 26 else f"#{i}" for i in range(n)]


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


def _pair(value, name):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a (low, high) pair, not {value!r}") from None
    return lo, hi


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


# ----------------------------------------------------------------- protocols
def blend_paper(a, b, *, seed=0, shift=50, noise_sigma=0.02, working_size=128):
    """Blend two galaxies as in the seed paper (Usaid, Ahmed & Jamal).

    B is shifted ``shift`` pixels to the right (+x; zeros shifted in), the
    blend is the pixel-wise maximum per band, and the partial image of each
    galaxy keeps the pixels where it is the brighter one (summed over bands,
    `astrodeblend.segment.partial_images`), zero elsewhere.  Everything is
    then area-averaged to ``working_size`` and Gaussian noise of standard
    deviation ``noise_sigma`` is added to the partial images (at the
    working size, so ``noise_sigma`` is the noise the network sees).

    Parameters
    ----------
    a, b : `~astrodeblend.GalaxyImage` or array-like
        Galaxy A (centred) and galaxy B, same shape and bands.
    seed : int, optional
        Seed of the noise.
    shift : int, optional
        Shift of B in pixels of the input frame (negative: to the left).
    noise_sigma : float, optional
        Standard deviation of the noise of the partial images, in image units.
    working_size : int, (int, int) or None, optional
        Output size (area averaging); None keeps the input size.

    Returns
    -------
    Scene
        ``blend``, ``components`` (A and the shifted B), ``centers`` (A at the
        image centre, B at centre + shift, scaled to the working size) and
        ``partials``.

    Raises
    ------
    InvalidInputError
        If the images differ in shape or bands, or an argument is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((3, 64, 64), np.float32); a[:, 30:34, 30:34] = 1
    >>> scene = blend_paper(a, a, shift=10, working_size=32)
    >>> scene.blend.shape, scene.partials.shape, scene.centers.tolist()
    ((3, 32, 32), (2, 3, 32, 32), [[15.5, 15.5], [20.5, 15.5]])
    """
    from .segment import partial_images

    rng = make_rng(seed)
    ga, gb = _coerce([a, b], ["A", "B"])
    if not isinstance(shift, numbers.Integral) or isinstance(shift, bool):
        raise InvalidInputError(f"shift must be an integer number of pixels, not {shift!r}")
    if noise_sigma is None or not noise_sigma >= 0:
        raise InvalidInputError(f"noise_sigma must be >= 0, not {noise_sigma!r}")
    c, h, w = ga.shape
    if abs(shift) >= w:
        raise InvalidInputError(f"shift={shift} moves B out of the {w} px wide image")
    if working_size is None:
        out_shape = (h, w)
    elif isinstance(working_size, numbers.Integral) and working_size > 0:
        out_shape = (int(working_size), int(working_size))
    else:
        try:
            out_shape = tuple(int(v) for v in working_size)
        except TypeError:
            out_shape = ()
        if len(out_shape) != 2 or min(out_shape) < 1:
            raise InvalidInputError(f"working_size must be a positive integer, a (height, "
                                    f"width) pair or None, not {working_size!r}")
    data_a = ga.filled(0.0)
    data_b = gb.filled(0.0)
    shifted = np.zeros_like(data_b)
    if shift >= 0:
        shifted[:, :, shift:] = data_b[:, :, :w - shift]
    else:
        shifted[:, :, :shift] = data_b[:, :, -shift:]
    components = np.stack([data_a, shifted])
    blend = components.max(axis=0)
    partials = partial_images(blend, components, noise_sigma=0.0)
    fy, fx = h / out_shape[0], w / out_shape[1]
    if out_shape != (h, w):
        blend = _area_resize(blend, out_shape)
        components = _area_resize(components, out_shape)
        partials = _area_resize(partials, out_shape)
    if noise_sigma > 0:
        partials = partials + rng.standard_normal(partials.shape, dtype=np.float32) * np.float32(
            noise_sigma)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    centers = np.array([_map_xy(cx, cy, 0, 0, fx, fy), _map_xy(cx + shift, cy, 0, 0, fx, fy)])
    params = {"protocol": "paper", "seed": json_seed(seed), "shift": int(shift),
              "noise_sigma": float(noise_sigma), "input_shape": [c, h, w],
              "working_size": list(out_shape)}
    image = _scene_image(ga, blend, "paper", seed, display=_is_display(ga), fx=fx, fy=fy)
    return Scene(image, components.astype(np.float32, copy=False), centers, "paper", params,
                 partials.astype(np.float32, copy=False))


def blend_reiman(a, b, *, seed=0, crop=240, factor=3, shift=(10, 50)):
    """Blend two galaxies as Reiman & Goehre (2019).

    B is rotated by U(0, 2 pi), scaled by exp(U(-1, 0.5)), flipped
    horizontally and vertically with probability 1/2 each (all about the
    image centre) and shifted along each axis by a random sign times
    U[``shift``) pixels; both images are then centre-cropped to ``crop``
    pixels and binned by ``factor`` (80x80 from 424 px).  The blend is the
    pixel-wise maximum per band, without noise.  Images smaller than
    ``crop`` use a crop and shift range scaled by ``min(H, W) / 424``.

    Parameters
    ----------
    a, b : `~astrodeblend.GalaxyImage` or array-like
        Galaxy A (centred) and galaxy B, same shape and bands.
    seed : int, optional
        Seed of the random transform.
    crop : int, optional
        Side of the centre crop in input pixels.
    factor : int, optional
        Binning factor (area average) after cropping.
    shift : (float, float), optional
        Range of the per-axis shift magnitude of B, in pixels of a 424 px image.

    Returns
    -------
    Scene
        ``params`` holds ``angle`` (radians), ``scale``, ``flip_x``,
        ``flip_y`` and ``shift`` (``[dx, dy]`` in input pixels).

    Raises
    ------
    InvalidInputError
        If the images differ in shape or bands or an argument is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((3, 424, 424), np.float32); a[:, 200:224, 200:224] = 1
    >>> scene = blend_reiman(a, a, seed=3)
    >>> scene.blend.shape, scene.centers[0].tolist()
    ((3, 80, 80), [39.5, 39.5])
    """
    rng = make_rng(seed)
    ga, gb = _coerce([a, b], ["A", "B"])
    crop, factor, shift_range = _geometry(ga.shape, crop, factor, shift)
    x0, y0 = _crop_origin(ga.shape, crop)
    t = _draw_transform(rng, shift_range)
    comp_a = _block_mean(_filled_crop(ga, x0, y0, crop), factor)
    comp_b = _block_mean(_transform_crop(_filled(gb), t, x0, y0, crop), factor)
    components = np.stack([comp_a, comp_b])
    blend = np.maximum(comp_a, comp_b)
    cx, cy = (ga.width - 1) / 2.0, (ga.height - 1) / 2.0
    dx, dy = t["shift"]
    centers = np.array([_map_xy(cx, cy, x0, y0, factor, factor),
                        _map_xy(cx + dx, cy + dy, x0, y0, factor, factor)])
    params = {"protocol": "reiman", "seed": json_seed(seed), "crop": crop, "factor": factor,
              "shift_range": list(shift_range), "input_shape": list(ga.shape), **t}
    image = _scene_image(ga, blend, "reiman", seed, display=_is_display(ga), x0=x0, y0=y0,
                         fx=factor, fy=factor)
    return Scene(image, components, centers, "reiman", params)


def linear_flux(image, *, subtract_sky=None):
    """Return an image's pixels as linear flux, ``(C, H, W)`` float32.

    Display images (header ``ADBDISP = True``) are linearised with
    ``value ** 2.2`` and, by default, a sigma-clipped sky level per band is
    subtracted (`astrodeblend.detect.background_and_noise`).  Other images
    are returned as they are (masked pixels set to 0).

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage` or array-like
        The image.
    subtract_sky : bool or None, optional
        Subtract the sky; None (default) does it for display images only.

    Returns
    -------
    `numpy.ndarray`

    Examples
    --------
    >>> import numpy as np
    >>> from astrodeblend import GalaxyImage
    >>> img = GalaxyImage(np.full((1, 2, 2), 0.5), meta={"ADBDISP": True})
    >>> round(float(linear_flux(img, subtract_sky=False)[0, 0, 0]), 4)
    0.2176
    """
    from .detect import background_and_noise

    image = as_galaxy_image(image)
    data = image.filled(0.0)
    display = _is_display(image)
    if display:
        np.clip(data, 0.0, None, out=data)
        data **= np.float32(DISPLAY_GAMMA)
    if subtract_sky is None:
        subtract_sky = display
    if subtract_sky:
        mask = None if image.mask is None else image.mask
        background, _ = background_and_noise(data if mask is None else
                                             np.where(mask, np.nan, data))
        data -= background.astype(np.float32)[:, None, None]
        if mask is not None:
            data[mask] = 0.0
    return data


def _psf_kernels(psf, psf_fwhm, psf_beta, n_bands, shape):
    """Return a ``(C or 1, h, w)`` normalised PSF kernel and its description, or (None, None)."""
    if psf is not None and psf_fwhm is not None:
        raise InvalidInputError("give either psf (an image) or psf_fwhm, not both")
    if psf_beta is not None and psf_fwhm is None:
        raise InvalidInputError("psf_beta (Moffat) needs psf_fwhm")
    if psf is None and psf_fwhm is None:
        return None, None
    if psf is not None:
        name = "psf"
        if isinstance(psf, (str, Path)):
            name = f"psf file {psf}"
            kernel = _read_psf(psf)
            describe = {"kind": "image", "path": str(psf)}
        else:
            kernel = as_galaxy_image(psf).filled(0.0)
            describe = {"kind": "image", "shape": list(kernel.shape)}
        if kernel.shape[0] not in (1, n_bands):
            raise InvalidInputError(f"{name} has {kernel.shape[0]} planes for {n_bands} bands")
    else:
        if not psf_fwhm > 0:
            raise InvalidInputError(f"psf_fwhm must be > 0 pixels, not {psf_fwhm!r}")
        from astropy.convolution import Gaussian2DKernel, Moffat2DKernel

        limit = max(shape) // 2
        if psf_beta is None:
            sigma = psf_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
            size = 2 * min(max(int(math.ceil(4.0 * sigma)), 1), limit) + 1
            kernel = Gaussian2DKernel(sigma, x_size=size, y_size=size, mode="center")
            describe = {"kind": "gaussian", "fwhm": float(psf_fwhm)}
        else:
            if not psf_beta > 1:
                raise InvalidInputError(f"psf_beta must be > 1, not {psf_beta!r}")
            gamma = psf_fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / psf_beta) - 1.0))
            size = 2 * min(max(int(math.ceil(5.0 * psf_fwhm)), 1), limit) + 1
            kernel = Moffat2DKernel(gamma, psf_beta, x_size=size, y_size=size, mode="center")
            describe = {"kind": "moffat", "fwhm": float(psf_fwhm), "beta": float(psf_beta)}
        kernel = kernel.array[None]
        name = "psf"
    kernel = np.asarray(kernel, dtype=np.float64)
    sums = kernel.sum(axis=(1, 2))
    if not np.all(np.isfinite(sums)) or np.any(sums <= 0):
        raise InvalidInputError(f"{name} must have a positive, finite sum in every band")
    return (kernel / sums[:, None, None]).astype(np.float32), describe


def _read_psf(path):
    path = Path(path)
    try:
        from .io import read_image
    except ImportError:  # pragma: no cover - io without a reader yet
        read_image = None
    if read_image is not None:
        return read_image(path).filled(0.0)
    from astropy.io import fits

    from .errors import ReadError

    try:
        data = fits.getdata(path)
    except (OSError, ValueError) as exc:
        raise ReadError(f"cannot read PSF file {path}: {exc}") from None
    return as_galaxy_image(data).filled(0.0)


def blend_physical(images, *, seed=0, n_galaxies=None, flux_ratio=(0.1, 1.0), shift=(10, 50),
                   transform=True, psf=None, psf_fwhm=None, psf_beta=None, sky_sigma=0.005,
                   gain=4.0e4, crop=240, factor=3):
    """Blend any number of galaxies as a survey sees them: in linear flux, with noise.

    Every image is turned into linear flux (`linear_flux`: display images
    are linearised and sky-subtracted).  Galaxy A (the first) stays centred;
    every other galaxy gets Reiman's random rotation, scale and flips
    (unless ``transform=False``) and a shift of random sign and magnitude
    U[``shift``) pixels per axis, all in the input frame.  All are
    centre-cropped to ``crop`` and binned by ``factor`` (80x80 from 424 px),
    and galaxy *j* is rescaled so that its total flux (all bands) is
    U(``flux_ratio``) times that of A.  The components are optionally
    convolved with a PSF, then summed; Poisson noise (``gain``) and Gaussian
    sky noise (``sky_sigma``) are added to the blend only, so that
    ``blend == components.sum(0) + noise`` and the components are
    noiseless.

    Parameters
    ----------
    images : sequence of `~astrodeblend.GalaxyImage` or array-like
        Two or more galaxy images of one shape and band count; the first is A.
    seed : int, optional
        Seed of every random draw.
    n_galaxies : int, optional
        Number of galaxies; must equal ``len(images)`` when given.
    flux_ratio : (float, float), optional
        Range of the flux ratio of each companion to A.
    shift : (float, float), optional
        Range of the per-axis shift magnitude of each companion, in pixels
        of a 424 px image (about 3-17 px in the 80 px scene).
    transform : bool, optional
        Rotate, scale and flip the companions.
    psf : array-like, `~astrodeblend.GalaxyImage`, str or path, optional
        PSF image ``(h, w)`` or one per band ``(C, h, w)`` at the scene's
        pixel scale, or a FITS file; normalised to sum 1.
    psf_fwhm : float, optional
        FWHM in scene pixels of a Gaussian PSF (Moffat with ``psf_beta``).
    psf_beta : float, optional
        Moffat index (> 1).
    sky_sigma : float, optional
        Standard deviation of the Gaussian sky noise in units of the peak
        of galaxy A's noiseless component; 0 for none.
    gain : float or None, optional
        Electrons in a pixel as bright as galaxy A's peak (i.e. electrons per
        unit flux once the scene is expressed in units of A's peak): the
        Poisson noise is ``sqrt(value * peak / gain)``.  The default 4e4 gives
        a Poisson noise at the peak equal to the default sky noise.  None for
        no Poisson noise.
    crop, factor : int, optional
        Centre crop (input pixels) and binning factor, as in `blend_reiman`.

    Returns
    -------
    Scene
        Linear-flux scene (no ``ADBDISP`` card); ``params`` records each
        companion's transform and flux ratio, the PSF, the peak of A and the
        noise levels.

    Raises
    ------
    InvalidInputError
        If fewer than two images are given, they differ in shape or bands,
        galaxy A has no positive flux, or an argument is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:96, :96]
    >>> g = np.exp(-((xx - 47.5) ** 2 + (yy - 47.5) ** 2) / 50.0)[None]
    >>> scene = blend_physical([g, g, g], seed=2, sky_sigma=0, gain=None)
    >>> scene.components.shape
    (3, 1, 18, 18)
    >>> bool(np.array_equal(scene.blend.data, scene.components.sum(axis=0)))
    True
    """
    rng = make_rng(seed)
    if isinstance(images, (np.ndarray, GalaxyImage)) or not hasattr(images, "__len__"):
        raise InvalidInputError("images must be a list of two or more galaxy images")
    images = list(images)
    if len(images) < 2:
        raise InvalidInputError(f"blend_physical needs at least 2 images, got {len(images)}")
    if n_galaxies is not None and n_galaxies != len(images):
        raise InvalidInputError(f"n_galaxies={n_galaxies} but {len(images)} images were given")
    ratio_lo, ratio_hi = _pair(flux_ratio, "flux_ratio")
    if not 0 < ratio_lo <= ratio_hi:
        raise InvalidInputError(f"flux_ratio must be (low, high) with 0 < low <= high, "
                                f"not {flux_ratio!r}")
    if sky_sigma is None or not sky_sigma >= 0:
        raise InvalidInputError(f"sky_sigma must be >= 0, not {sky_sigma!r}")
    if gain is not None and not gain > 0:
        raise InvalidInputError(f"gain must be > 0 or None, not {gain!r}")
    names = _galaxy_names(len(images))
    galaxies = _coerce(images, names)
    ga = galaxies[0]
    crop, factor, shift_range = _geometry(ga.shape, crop, factor, shift)
    x0, y0 = _crop_origin(ga.shape, crop)
    out_hw = (crop // factor, crop // factor)
    kernel, psf_info = _psf_kernels(psf, psf_fwhm, psf_beta, ga.n_bands, out_hw)

    comp_a = _block_mean(linear_flux(ga)[:, y0:y0 + crop, x0:x0 + crop], factor)
    flux_a = float(comp_a.sum(dtype=np.float64))
    if not flux_a > 0:
        raise InvalidInputError(f"galaxy A ({ga.source or 'image 0'}) has no positive flux "
                                f"after sky subtraction")
    components = [comp_a]
    draws = [{"galaxy": 0, "shift": [0.0, 0.0], "flux_ratio": 1.0}]
    cx, cy = (ga.width - 1) / 2.0, (ga.height - 1) / 2.0
    centers = [_map_xy(cx, cy, x0, y0, factor, factor)]
    for j, galaxy in enumerate(galaxies[1:], start=1):
        t = _draw_transform(rng, shift_range, transform=transform)
        ratio = float(rng.uniform(ratio_lo, ratio_hi))
        comp = _block_mean(_transform_crop(linear_flux(galaxy), t, x0, y0, crop), factor)
        flux = float(comp.sum(dtype=np.float64))
        if not flux > 0:
            raise InvalidInputError(f"galaxy {names[j]} ({galaxy.source or f'image {j}'}) has no "
                                    f"positive flux in the crop after sky subtraction")
        comp *= np.float32(ratio * flux_a / flux)
        components.append(comp)
        draws.append({"galaxy": j, **t, "flux_ratio": ratio})
        dx, dy = t["shift"]
        centers.append(_map_xy(cx + dx, cy + dy, x0, y0, factor, factor))
    components = np.stack(components)
    if kernel is not None:
        from scipy.signal import fftconvolve

        components = fftconvolve(components, kernel[None], mode="same",
                                 axes=(-2, -1)).astype(np.float32)
    total = components.sum(axis=0)
    peak = float(components[0].max())
    noise = np.zeros_like(total)
    if gain is not None:
        counts = np.clip(total, 0.0, None) * np.float32(gain / peak)
        noise += ((rng.poisson(counts) - counts) * np.float32(peak / gain)).astype(np.float32)
    if sky_sigma > 0:
        noise += rng.standard_normal(total.shape, dtype=np.float32) * np.float32(sky_sigma * peak)
    blend = total + noise if (gain is not None or sky_sigma > 0) else total
    params = {"protocol": "physical", "seed": json_seed(seed), "n_galaxies": len(galaxies),
              "crop": crop, "factor": factor, "shift_range": list(shift_range),
              "flux_ratio_range": [ratio_lo, ratio_hi], "transform": bool(transform),
              "linearised": [_is_display(g) for g in galaxies], "psf": psf_info,
              "peak": peak, "sky_sigma": float(sky_sigma),
              "gain": None if gain is None else float(gain), "galaxies": draws,
              "input_shape": list(ga.shape)}
    image = _scene_image(ga, blend, "physical", seed, display=False, x0=x0, y0=y0,
                         fx=factor, fy=factor)
    return Scene(image, components, np.array(centers, dtype=float), "physical", params)


def make_scene(images, *, protocol, seed=0, **kwargs):
    """Make a blended scene with the named protocol.

    Parameters
    ----------
    images : sequence of `~astrodeblend.GalaxyImage` or array-like
        Galaxy A first; exactly two for ``paper`` and ``reiman``.
    protocol : {'paper', 'reiman', 'physical'}
        The blending protocol.
    seed : int, optional
        Seed of every random draw.
    **kwargs
        Options of `blend_paper`, `blend_reiman` or `blend_physical`.

    Returns
    -------
    Scene

    Raises
    ------
    InvalidInputError
        For an unknown protocol, a wrong number of images or bad options.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.zeros((1, 48, 48), np.float32); g[0, 22:26, 22:26] = 1
    >>> make_scene([g, g], protocol="reiman", seed=4).protocol
    'reiman'
    """
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"protocol must be one of {', '.join(PROTOCOLS)}, "
                                f"not {protocol!r}")
    if isinstance(images, (np.ndarray, GalaxyImage)) or not hasattr(images, "__len__"):
        raise InvalidInputError("images must be a list of galaxy images")
    images = list(images)
    try:
        if protocol == "physical":
            return blend_physical(images, seed=seed, **kwargs)
        n = kwargs.pop("n_galaxies", None)
        if len(images) != 2 or n not in (None, 2):
            raise InvalidInputError(f"protocol {protocol!r} blends exactly 2 galaxies, "
                                    f"got {n if n not in (None, 2) else len(images)}")
        function = blend_paper if protocol == "paper" else blend_reiman
        return function(images[0], images[1], seed=seed, **kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"protocol {protocol!r}: {exc}") from None
