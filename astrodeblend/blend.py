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
``survey``
    Scenes like real survey cutouts: 0 to 4 galaxies (from the images
    given and from Sersic or bulge+disk profiles) and stars anywhere in the
    frame, 1 to 5 bands, PSF, residual sky, noise over a range of S/N and
    masked defects (`blend_survey`).  `read_clean_stamps` isolates the
    galaxies of real FITS stamps for it.

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
    "blend_survey",
    "make_scene",
    "linear_flux",
    "clean_stamp",
    "read_clean_stamps",
]

#: Names of the blending protocols, as accepted by `make_scene`.
PROTOCOLS = ("paper", "reiman", "physical", "survey")

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
        ``float64 (N, 2)``: 0-based ``(x, y)`` centre of each galaxy (and star).
    protocol : str
        ``'paper'``, ``'reiman'``, ``'physical'`` or ``'survey'``.
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
        """Number of sources (galaxies and, in ``survey`` scenes, stars) in the scene."""
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
        Galaxy A first; exactly two for ``paper`` and ``reiman``; any number
        (also none) for ``survey``.
    protocol : {'paper', 'reiman', 'physical', 'survey'}
        The blending protocol.
    seed : int, optional
        Seed of every random draw.
    **kwargs
        Options of `blend_paper`, `blend_reiman`, `blend_physical` or
        `blend_survey`.

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
        if protocol == "survey":
            return blend_survey(images, seed=seed, **kwargs)
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


# ----------------------------------------------------------------- survey
#: Probabilities of 0, 1, 2, 3 and 4 galaxies in a ``survey`` scene.
SURVEY_GALAXY_PROBABILITIES = (0.05, 0.25, 0.30, 0.25, 0.15)

#: Oversampling of the analytic profiles (Sersic, bulge+disk, PSF) of ``survey``.
_OVERSAMPLE = 3


def _log_uniform(rng, low, high):
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _check_range(value, name, *, low=0.0, strict=True):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)  # a fixed value
    lo, hi = _pair(value, name)
    ok = (lo > low if strict else lo >= low) and hi >= lo and math.isfinite(hi)
    if not ok:
        raise InvalidInputError(f"{name} must be (low, high) with {low} "
                                f"{'<' if strict else '<='} low <= high, not {value!r}")
    return lo, hi


def _check_fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise InvalidInputError(f"{name} must be a fraction in [0, 1], not {value!r}")
    return float(value)


def _psf_model(psf, x, y):
    """Return the astropy.modeling PSF model (unit peak) of a ``psf`` record at ``(x, y)``."""
    from astropy.modeling.models import Gaussian2D, Moffat2D

    fwhm = psf["fwhm"]
    if psf["kind"] == "gaussian":
        sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        return Gaussian2D(1.0, x, y, sigma, sigma)
    beta = psf["beta"]
    gamma = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return Moffat2D(1.0, x, y, gamma, beta)


def _render(model, shape, box=None, oversample=_OVERSAMPLE):
    """Pixel-integrate ``model`` (oversampled) on ``shape``, optionally only inside ``box``.

    ``box`` is ``(x0, x1, y0, y1)`` (pixels, end excluded); outside it the result is 0.
    """
    h, w = shape
    x0, x1, y0, y1 = (0, w, 0, h) if box is None else box
    out = np.zeros(shape, dtype=np.float64)
    if x1 <= x0 or y1 <= y0:
        return out
    fine = (np.arange(oversample) + 0.5) / oversample - 0.5
    xs = (np.arange(x0, x1)[:, None] + fine[None, :]).ravel()
    ys = (np.arange(y0, y1)[:, None] + fine[None, :]).ravel()
    values = model(xs[None, :], ys[:, None])
    values = values.reshape(y1 - y0, oversample, x1 - x0, oversample).mean(axis=(1, 3))
    out[y0:y1, x0:x1] = values
    return out


def _box(x, y, half, shape):
    h, w = shape
    return (max(int(math.floor(x - half)), 0), min(int(math.ceil(x + half)) + 1, w),
            max(int(math.floor(y - half)), 0), min(int(math.ceil(y + half)) + 1, h))


def _psf_kernel_from(psf):
    """Pixel-integrated, normalised ``(k, k)`` kernel of a ``psf`` record."""
    fwhm = psf["fwhm"]
    half = int(math.ceil((2.0 if psf["kind"] == "gaussian" else 4.0) * fwhm))
    size = 2 * half + 1
    kernel = _render(_psf_model(psf, half, half), (size, size))
    return kernel / kernel.sum()


def _half_light_radius(plane, x, y):
    """Radius (pixels) around ``(x, y)`` holding half of the positive flux of ``plane``."""
    yy, xx = np.indices(plane.shape)
    r = np.hypot(xx - x, yy - y).ravel()
    flux = np.clip(plane, 0, None).ravel()
    order = np.argsort(r)
    cumulative = np.cumsum(flux[order])
    if cumulative[-1] <= 0:
        return 0.0
    return float(r[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]) + 0.5


def _isolate(data, *, n_sigma=2.0, grow=2):
    """Find the central source of a linear, sky-subtracted ``(C, H, W)`` stamp.

    Sources are detected and deblended (`astrodeblend.detect.find_centers`).
    The central source is the connected group of segments under the centre
    pixel (or the nearest to the centre), so that the arms and knots of a
    spiral stay with it, less its deblended parts centred more than 2.5
    half-light radii of the central part away: touching neighbours.

    Returns ``(central, others, x, y)``: boolean ``(H, W)`` maps of the central
    source and of every other source (grown by ``grow`` pixels), and the
    flux-weighted centre of the central source; None when nothing is detected.
    """
    from scipy.ndimage import binary_dilation, label

    from .detect import find_centers

    c, h, w = data.shape
    finite = np.isfinite(data).all(axis=0)
    values = np.where(np.isfinite(data), data, 0.0)
    detections = find_centers(values, n_sigma=n_sigma, n_pixels=5, deblend=True,
                              mask=~finite)
    segmap = np.asarray(detections.segmap)
    if not segmap.any():
        return None
    parents, _ = label(segmap > 0)
    cy, cx = (h - 1) // 2, (w - 1) // 2
    child = int(segmap[cy, cx])
    catalog = detections.catalog
    xs = np.asarray(catalog["x_centroid"], float)
    ys = np.asarray(catalog["y_centroid"], float)
    labels = np.asarray(catalog["id"], int)
    if child == 0:
        d = np.hypot(xs - (w - 1) / 2, ys - (h - 1) / 2)
        d[~np.isfinite(d)] = np.inf
        child = int(labels[int(np.argmin(d))])
    plane = np.clip(values.sum(axis=0), 0, None)
    core = segmap == child
    yy, xx = np.indices((h, w))
    flux = float(plane[core].sum())
    if flux > 0:
        x0, y0 = float((plane * xx)[core].sum() / flux), float((plane * yy)[core].sum() / flux)
        radius = _half_light_radius(np.where(core, plane, 0.0), x0, y0)
    else:
        x0, y0, radius = (w - 1) / 2, (h - 1) / 2, 1.0
    central = parents == parents[core][0]
    for k, label_k in enumerate(labels):
        if label_k == child or not np.isfinite(xs[k]):
            continue
        part = segmap == label_k
        if central[part].any() and math.hypot(xs[k] - x0, ys[k] - y0) > max(2.5 * radius, 6):
            central &= ~part
    others = (segmap > 0) & ~central
    if grow > 0 and others.any():
        others = binary_dilation(others, iterations=int(grow)) & ~central
    plane = np.where(central, plane, 0.0)
    total = plane.sum()
    if not total > 0:
        return None
    return central, others, float((plane * xx).sum() / total), float((plane * yy).sum() / total)


def clean_stamp(image, *, n_sigma=2.0, grow=2, fill="noise", seed=0):
    """Isolate the central galaxy of a real stamp: sky subtracted, neighbours removed.

    The image is turned into linear flux (`linear_flux`; display images are
    linearised), a sigma-clipped sky level is subtracted per band, sources are
    detected and deblended (`astrodeblend.detect.find_centers`) and every
    source but the central one, grown by ``grow`` pixels, is replaced by
    noise of the image's sky level or by zero.  The central source is the
    group of touching segments under the centre pixel (or the nearest to the
    centre), so that the arms of a spiral stay with it, less its deblended
    parts centred more than 2.5 half-light radii away (touching neighbours).  Masked and non-finite pixels are treated
    the same way.

    Parameters
    ----------
    image : `~astrodeblend.GalaxyImage` or array-like
        The stamp ``(H, W)`` or ``(C, H, W)``, the galaxy near its centre.
    n_sigma : float, optional
        Detection threshold of the segments, in units of the sky noise.
    grow : int, optional
        Pixels by which the other sources' segments are grown.
    fill : {'noise', 'zero'}, optional
        What replaces the other sources: Gaussian noise of the sky's
        standard deviation (seeded by ``seed``), or zero.
    seed : int, optional
        Seed of the fill noise.

    Returns
    -------
    `~astrodeblend.GalaxyImage`
        Linear flux without ``ADBDISP`` card, no mask, with the header cards
        ``ADBCLEAN = True``, ``ADBCX``/``ADBCY`` (0-based centre of the
        galaxy) and ``ADBNMASK`` (pixels replaced), and a HISTORY line.

    Raises
    ------
    InvalidInputError
        If ``fill`` is unknown or no source is detected in the stamp.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> data = np.exp(-((xx - 32) ** 2 + (yy - 31) ** 2) / 30.0)
    >>> data += 0.8 * np.exp(-((xx - 8) ** 2 + (yy - 50) ** 2) / 8.0)
    >>> data += np.random.default_rng(0).normal(0, 0.01, data.shape)
    >>> clean = clean_stamp(data, fill="zero")
    >>> bool(clean.data[0, 50, 8] == 0), bool(clean.data[0, 31, 32] > 0.9)
    (True, True)
    """
    from .detect import background_and_noise

    if fill not in ("noise", "zero"):
        raise InvalidInputError(f"fill must be 'noise' or 'zero', not {fill!r}")
    image = as_galaxy_image(image)
    rng = make_rng(seed)
    data = linear_flux(image, subtract_sky=False)
    bad = ~np.isfinite(image.data) if image.mask is None else (image.mask |
                                                               ~np.isfinite(image.data))
    background, noise = background_and_noise(np.where(bad, np.nan, data), mask_sources=True)
    data = data - background.astype(np.float32)[:, None, None]
    data[bad] = np.nan
    found = _isolate(data, n_sigma=n_sigma, grow=grow)
    if found is None:
        raise InvalidInputError(f"{image.source or 'stamp'}: no source detected above "
                                f"{n_sigma} sigma")
    central, others, x, y = found
    replace = others[None] | (bad & ~central[None])
    if fill == "noise":
        values = rng.standard_normal(data.shape).astype(np.float32) * np.asarray(
            noise, np.float32)[:, None, None]
    else:
        values = np.zeros_like(data)
    data = np.where(replace, values, data)
    data[~np.isfinite(data)] = 0.0
    meta = image.meta.copy()
    meta.remove("ADBDISP", ignore_missing=True, remove_all=True)
    meta["ADBCLEAN"] = (True, "central galaxy isolated, sky subtracted")
    meta["ADBCX"] = (x, "0-based x of the central galaxy")
    meta["ADBCY"] = (y, "0-based y of the central galaxy")
    meta["ADBNMASK"] = (int(replace.any(axis=0).sum()), "pixels of other sources replaced")
    meta.add_history(f"astrodeblend clean_stamp n_sigma={n_sigma} grow={grow} fill={fill}")
    return GalaxyImage(data.astype(np.float32), wcs=image.wcs, meta=meta, unit=image.unit,
                       bands=image.bands, source=image.source)


def read_clean_stamps(folder, *, pattern="*.fits", max_size=256, n_sigma=2.0, grow=2,
                      fill="noise", seed=0, skip=("psf", "mask", "catalog")):
    """Read a folder of real galaxy stamps (FITS) and isolate each central galaxy.

    Every image HDU of every FITS file below ``folder`` (recursively) whose
    name contains none of ``skip`` (case-insensitive) becomes one stamp:
    ``(H, W)`` images and ``(C, H, W)`` cubes of up to 5 bands, centre-cropped
    to at most ``max_size`` pixels per side, then cleaned by `clean_stamp`.
    Table HDUs, empty HDUs and stamps without a detected source are left out.

    Parameters
    ----------
    folder : str or `~pathlib.Path`
        Folder of FITS files, e.g. ``shared/data/fits``.
    pattern : str, optional
        Glob of the files (matched recursively).
    max_size : int, optional
        Largest side kept (central crop).
    n_sigma, grow, fill : optional
        Options of `clean_stamp`.
    seed : int, optional
        Seed of the fill noise; stamp ``i`` uses ``[seed, i]``.
    skip : sequence of str, optional
        Files whose name contains one of these are ignored (PSFs, masks,
        catalogs).

    Returns
    -------
    list of `~astrodeblend.GalaxyImage`
        The cleaned stamps, sorted by file name and HDU; ``source`` is
        ``'path[hdu]'``.

    Raises
    ------
    InvalidInputError
        If ``folder`` is not a folder or holds no usable stamp.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> yy, xx = np.mgrid[:48, :48]
    >>> data = np.exp(-((xx - 24) ** 2 + (yy - 24) ** 2) / 20.0) + 0.01 * np.sin(xx * yy)
    >>> fits.PrimaryHDU(data.astype(np.float32)).writeto(folder / "g.fits")
    >>> stamps = read_clean_stamps(folder)
    >>> len(stamps), stamps[0].shape
    (1, (1, 48, 48))
    """
    from astropy.io import fits

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"stamp folder {folder} is not a folder")
    stamps = []
    for path in sorted(folder.rglob(pattern)):
        if any(word.lower() in path.name.lower() for word in skip):
            continue
        try:
            with fits.open(path, memmap=False) as hdul:
                planes = [(i, np.asarray(hdu.data, dtype=np.float32))
                          for i, hdu in enumerate(hdul)
                          if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU))
                          and hdu.data is not None and hdu.data.ndim in (2, 3)]
        except (OSError, ValueError, TypeError):
            continue
        for i, data in planes:
            if data.ndim == 3 and not 1 <= data.shape[0] <= 5:
                continue
            h, w = data.shape[-2:]
            y0, x0 = max((h - max_size) // 2, 0), max((w - max_size) // 2, 0)
            data = data[..., y0:y0 + max_size, x0:x0 + max_size]
            if min(data.shape[-2:]) < 16 or not np.isfinite(data).any():
                continue
            try:
                stamp = clean_stamp(GalaxyImage(data, source=f"{path}[{i}]"), n_sigma=n_sigma,
                                    grow=grow, fill=fill, seed=[seed, len(stamps)])
            except InvalidInputError:
                continue
            stamps.append(stamp)
    if not stamps:
        raise InvalidInputError(f"no usable galaxy stamp in {folder} ({pattern})")
    return stamps


def _prepare_image(image, clean):
    """Linear flux of an image galaxy, its own segment only, and its centre and radius."""
    from scipy.ndimage import binary_dilation

    image = as_galaxy_image(image)
    data = linear_flux(image)
    if image.mask is not None:
        data[image.mask] = 0.0
    c, h, w = data.shape
    if clean:
        found = _isolate(data)
        if found is None:
            return None
        central, _, x, y = found
        grow = max(2, int(round(0.25 * math.sqrt(central.sum() / math.pi))))
        keep = binary_dilation(central, iterations=grow)
        data = np.where(keep[None], data, np.float32(0.0))
    # noise is kept (it averages out when the galaxy is shrunk); the centre and
    # radius are measured on the positive light
    plane = np.clip(data.sum(axis=0), 0.0, None)
    total = float(plane.sum())
    if not total > 0:
        return None
    yy, xx = np.indices((h, w))
    x, y = float((plane * xx).sum() / total), float((plane * yy).sum() / total)
    radius = _half_light_radius(plane, x, y)
    if not radius > 0:
        return None
    return data, x, y, radius


def _place_image(prepared, draw, canvas_shape, n_bands):
    """Resample a prepared image galaxy into the canvas; ``(C or 1, H, W)`` float64."""
    from scipy.ndimage import affine_transform

    data, x, y, radius = prepared
    scale = draw["radius"] / radius
    factor = max(1, int(math.floor(1.0 / scale)))
    if factor > 1:
        data = _block_mean(data, factor)
        x, y = (x + 0.5) / factor - 0.5, (y + 0.5) / factor - 0.5
        scale *= factor
    if data.shape[0] != n_bands:
        data = data.sum(axis=0, keepdims=True)
    cos, sin = math.cos(draw["angle"]), math.sin(draw["angle"])
    fx = -1.0 if draw["flip_x"] else 1.0
    fy = 1.0
    inv = np.array([[fx * cos, fx * sin], [-fy * sin, fy * cos]]) / scale
    inv_rc = inv[::-1, ::-1]
    target = np.array([draw["canvas_y"], draw["canvas_x"]])
    offset = np.array([y, x]) - inv_rc @ target
    out = np.empty((data.shape[0],) + canvas_shape, dtype=np.float64)
    for band in range(data.shape[0]):
        affine_transform(data[band].astype(np.float64), inv_rc, offset=offset,
                         output_shape=canvas_shape, output=out[band], order=1,
                         mode="constant", cval=0.0, prefilter=False)
    return out


def _parametric_model(draw):
    from astropy.modeling.models import Sersic2D

    x, y = draw["canvas_x"], draw["canvas_y"]
    if draw["source"] == "sersic":
        return Sersic2D(1.0, draw["radius"], draw["sersic_n"], x, y, draw["ellip"],
                        draw["theta"])
    bulge = Sersic2D(1.0, draw["bulge_radius"], 4.0, x, y, draw["bulge_ellip"],
                     draw["theta"])
    disk = Sersic2D(1.0, draw["radius"], 1.0, x, y, draw["ellip"], draw["theta"])
    return bulge, disk


def _draw_galaxy(rng, n_images, image_fraction, radius_range, size, pad):
    draw = {"kind": "galaxy"}
    if n_images and rng.random() < image_fraction:
        draw["source"] = "image"
    else:
        draw["source"] = "sersic" if rng.random() < 0.5 else "bulge_disk"
    draw["x"] = float(rng.uniform(0, size - 1))
    draw["y"] = float(rng.uniform(0, size - 1))
    draw["canvas_x"], draw["canvas_y"] = draw["x"] + pad, draw["y"] + pad
    draw["radius"] = _log_uniform(rng, *radius_range)
    if draw["source"] == "image":
        draw["image"] = int(rng.integers(n_images))
        draw["angle"] = float(rng.uniform(0, 2 * math.pi))
        draw["flip_x"] = bool(rng.random() < 0.5)
    elif draw["source"] == "sersic":
        draw["sersic_n"] = float(rng.uniform(0.5, 4.0))
        draw["ellip"] = float(rng.uniform(0.0, 0.7))
        draw["theta"] = float(rng.uniform(0, math.pi))
    else:
        draw["bulge_fraction"] = float(rng.uniform(0.1, 0.7))
        draw["bulge_radius"] = draw["radius"] * float(rng.uniform(0.2, 0.5))
        draw["bulge_ellip"] = float(rng.uniform(0.0, 0.3))
        draw["ellip"] = float(rng.uniform(0.0, 0.8))
        draw["theta"] = float(rng.uniform(0, math.pi))
    return draw


def _draw_colour(rng, n_bands):
    slope = float(rng.uniform(-0.4, 0.4))
    steps = np.arange(n_bands) - (n_bands - 1) / 2.0
    colour = np.exp(slope * steps + rng.normal(0.0, 0.1, n_bands))
    return (colour / colour.mean()).tolist()


def _draw_masks(rng, n_bands, size):
    """Draw the defects of one scene: blocks, columns and cosmic rays."""
    defects = []
    kinds = [k for k in ("block", "column", "cosmic") if rng.random() < 0.5] or ["cosmic"]
    for kind in kinds:
        if kind == "block":
            w, h = (int(v) for v in rng.integers(3, 13, size=2))
            x0, y0 = (int(v) for v in rng.integers(0, size - 2, size=2))
            defects.append({"kind": "block", "x0": x0, "x1": min(x0 + w, size), "y0": y0,
                            "y1": min(y0 + h, size), "bands": list(range(n_bands)),
                            "value": "zero"})
        elif kind == "column":
            x0 = int(rng.integers(0, size))
            width = int(rng.integers(1, 3))
            full = bool(rng.random() < 0.5)
            y0 = 0 if full else int(rng.integers(0, size // 2))
            y1 = size if full else int(rng.integers(y0 + size // 4, size + 1))
            hot = bool(rng.random() < 0.5)
            defects.append({"kind": "column", "x0": x0, "x1": min(x0 + width, size), "y0": y0,
                            "y1": y1, "bands": list(range(n_bands)),
                            "value": float(rng.uniform(3, 20)) if hot else "zero"})
        else:
            pixels = []
            for _ in range(int(rng.integers(3, 21))):
                x, y = (int(v) for v in rng.integers(0, size, size=2))
                band = int(rng.integers(n_bands))
                length = int(rng.integers(1, 4))
                dx, dy = [(1, 0), (0, 1), (1, 1)][int(rng.integers(3))]
                amplitude = float(rng.uniform(5, 50))
                for k in range(length):
                    if x + k * dx < size and y + k * dy < size:
                        pixels.append([band, x + k * dx, y + k * dy, amplitude])
            defects.append({"kind": "cosmic", "pixels": pixels})
    return defects


def blend_survey(images=(), *, seed=0, size=96, n_bands=None, n_galaxies=None,
                 galaxy_probabilities=SURVEY_GALAXY_PROBABILITIES, star_fraction=0.4,
                 max_stars=2, image_fraction=0.6, flux_ratio=(0.05, 1.0),
                 radius=(1.0, 12.0), psf_fwhm=(1.5, 4.5), moffat_fraction=0.5,
                 snr=(5.0, 200.0), sky=True, mask_fraction=0.3, noise=True, clean=True):
    """Make a scene like a real survey cutout: 0-4 galaxies and stars anywhere.

    Galaxies are drawn from ``images`` (linearised with `linear_flux`; with
    ``clean`` each image keeps only its central source's segment) or made
    from analytic Sersic or bulge (n=4) + disk (n=1) profiles
    (`astropy.modeling.models.Sersic2D`).  The number of galaxies follows
    ``galaxy_probabilities`` (a quarter of scenes have exactly one galaxy),
    their centres are uniform over the frame, their half-light radii
    log-uniform in ``radius`` and their total fluxes, relative to the first
    (brightest) source, log-uniform in ``flux_ratio``.  A fraction
    ``star_fraction`` of scenes holds 1 to ``max_stars`` stars (point
    sources: the PSF).  Every source gets its own colour over 1-5 bands.
    Galaxies are convolved with a Gaussian or Moffat PSF of FWHM
    U(``psf_fwhm``) pixels.  The blend is the sum of the components, plus a
    residual sky (a constant and a linear gradient per band, up to about the
    noise level), Gaussian noise whose standard deviation makes the peak
    signal-to-noise ratio of the noiseless blend log-uniform in ``snr``, and,
    in a fraction ``mask_fraction`` of scenes, defects (dead blocks, dead or
    hot columns, cosmic rays) whose pixels are in the blend's mask.

    Values are linear flux in units of the peak of the first source's
    noiseless component.  Components are noiseless, without sky and
    defects: ``blend == components.sum(0) + sky + noise`` outside the mask,
    with the sky given by ``params['sky']``
    (``offset[b] + gradient[b][0] * (x - c) / size + gradient[b][1] * (y - c) / size``,
    ``c = (size - 1) / 2``).

    Parameters
    ----------
    images : sequence of `~astrodeblend.GalaxyImage` or array-like, optional
        Isolated galaxy images of any shape and band count (Galaxy Zoo JPGs,
        `read_clean_stamps` stamps, arrays); empty for parametric galaxies only.
    seed : int, optional
        Seed of every random draw.
    size : int, optional
        Side of the square frame in pixels.
    n_bands : int, optional
        Number of bands; drawn from 1-5 by default.  Images with this many
        bands keep their own colours (times the drawn colour), others are
        summed over bands and coloured.
    n_galaxies : int, optional
        Number of galaxies; drawn from ``galaxy_probabilities`` by default.
    galaxy_probabilities : sequence of float, optional
        Probabilities of 0, 1, 2, ... galaxies.
    star_fraction : float, optional
        Fraction of scenes with stars.
    max_stars : int, optional
        Most stars in a scene.
    image_fraction : float, optional
        Probability that a galaxy comes from ``images`` (when there are any)
        rather than from a profile.
    flux_ratio : (float, float), optional
        Range of the total flux of each further source relative to the first.
    radius : (float, float), optional
        Range of the half-light radii of galaxies, in pixels.
    psf_fwhm : (float, float), optional
        Range of the PSF FWHM, in pixels.
    moffat_fraction : float, optional
        Fraction of scenes with a Moffat PSF (beta U(2.5, 5)), others Gaussian.
    snr : (float, float), optional
        Range of the peak signal-to-noise ratio.
    sky : bool, optional
        Add the residual sky.
    mask_fraction : float, optional
        Fraction of scenes with masked defects.
    noise : bool, optional
        Add the noise (the other draws do not depend on it).
    clean : bool, optional
        Keep only the central source of each image (`astrodeblend.detect`
        segmentation); False uses the images as they are.

    Returns
    -------
    Scene
        ``components`` ``(N, C, size, size)``: galaxies first, then stars
        (N may be 0); ``centers``; ``blend`` with the mask of the defects and
        header card ``PROTOCOL = 'survey'``; ``params`` records every draw:
        ``n_galaxies``, ``n_stars``, ``isolated`` (one galaxy, no star),
        ``components`` (``kind`` 'galaxy' or 'star', ``source``, ``image``
        index, position, radius, flux ratio, colour, shape), ``psf``,
        ``snr``, ``sigma`` (per band), ``sky``, ``defects`` and ``n_masked``.

    Raises
    ------
    InvalidInputError
        If an argument is out of range or an image cannot be used.

    Examples
    --------
    >>> scene = blend_survey(seed=3, size=48)
    >>> scene.protocol, scene.blend.shape[1:], scene.components.shape[0] == len(scene.centers)
    ('survey', (48, 48), True)
    >>> scene.params["n_galaxies"] + scene.params["n_stars"] == scene.n_sources
    True
    """
    from scipy.signal import fftconvolve

    rng = make_rng(seed)
    if isinstance(images, (np.ndarray, GalaxyImage)):
        images = [images]
    images = [] if images is None else list(images)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 16:
        raise InvalidInputError(f"size must be an integer >= 16 pixels, not {size!r}")
    size = int(size)
    probabilities = np.asarray(galaxy_probabilities, dtype=float)
    if (probabilities.ndim != 1 or probabilities.size == 0 or np.any(probabilities < 0)
            or not np.isclose(probabilities.sum(), 1.0)):
        raise InvalidInputError(f"galaxy_probabilities must be non-negative and add up to 1, "
                                f"not {galaxy_probabilities!r}")
    probabilities = probabilities / probabilities.sum()
    for value, name, least in ((n_bands, "n_bands", 1), (n_galaxies, "n_galaxies", 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, numbers.Integral) or value < least):
            raise InvalidInputError(f"{name} must be an integer >= {least} or None, "
                                    f"not {value!r}")
    if isinstance(max_stars, bool) or not isinstance(max_stars, numbers.Integral) or max_stars < 0:
        raise InvalidInputError(f"max_stars must be a non-negative integer, not {max_stars!r}")
    star_fraction = _check_fraction(star_fraction, "star_fraction")
    image_fraction = _check_fraction(image_fraction, "image_fraction")
    moffat_fraction = _check_fraction(moffat_fraction, "moffat_fraction")
    mask_fraction = _check_fraction(mask_fraction, "mask_fraction")
    ratio_range = _check_range(flux_ratio, "flux_ratio")
    radius_range = _check_range(radius, "radius")
    fwhm_range = _check_range(psf_fwhm, "psf_fwhm")
    snr_range = _check_range(snr, "snr")

    # ---- draws (the order is fixed: a scene is a pure function of the seed)
    bands = int(rng.integers(1, 6)) if n_bands is None else int(n_bands)
    n_gal = (int(rng.choice(len(probabilities), p=probabilities)) if n_galaxies is None
             else int(n_galaxies))
    has_stars = bool(rng.random() < star_fraction) and max_stars > 0
    n_star = int(rng.integers(1, max_stars + 1)) if has_stars else 0
    psf = {"kind": "moffat" if rng.random() < moffat_fraction else "gaussian",
           "fwhm": float(rng.uniform(*fwhm_range))}
    if psf["kind"] == "moffat":
        psf["beta"] = float(rng.uniform(2.5, 5.0))
    peak_snr = _log_uniform(rng, *snr_range)
    pad = size // 2
    canvas = (size + 2 * pad, size + 2 * pad)
    draws = []
    for j in range(n_gal):
        draw = _draw_galaxy(rng, len(images), image_fraction, radius_range, size, pad)
        draw["flux_ratio"] = 1.0 if j == 0 else _log_uniform(rng, *ratio_range)
        draw["colour"] = _draw_colour(rng, bands)
        draws.append(draw)
    for j in range(n_star):
        draw = {"kind": "star", "source": "psf", "x": float(rng.uniform(0, size - 1)),
                "y": float(rng.uniform(0, size - 1))}
        draw["canvas_x"], draw["canvas_y"] = draw["x"] + pad, draw["y"] + pad
        draw["flux_ratio"] = 1.0 if not draws else _log_uniform(rng, *ratio_range)
        draw["colour"] = _draw_colour(rng, bands)
        draws.append(draw)
    sky_draw = rng.normal(0.0, 1.0, size=(bands, 3))
    noise_scale = rng.uniform(0.8, 1.25, size=bands)
    defects = _draw_masks(rng, bands, size) if rng.random() < mask_fraction else []

    # ---- rendering on a padded canvas (light from outside the frame is kept)
    kernel = _psf_kernel_from(psf)
    prepared = {}
    components = np.zeros((len(draws), bands, size, size), dtype=np.float64)
    for j, draw in enumerate(draws):
        if draw["kind"] == "star":
            half = 10.0 * psf["fwhm"] if psf["kind"] == "moffat" else 3.0 * psf["fwhm"]
            box = _box(draw["canvas_x"], draw["canvas_y"], half, canvas)
            planes = _render(_psf_model(psf, draw["canvas_x"], draw["canvas_y"]), canvas,
                             box)[None]
        else:
            if draw["source"] == "image":
                index = draw["image"]
                if index not in prepared:
                    prepared[index] = _prepare_image(images[index], clean)
                if prepared[index] is None:
                    name = getattr(images[index], "source", None) or "array"
                    raise InvalidInputError(f"image {index} ({name}) has no positive flux in "
                                            f"its central source")
                planes = _place_image(prepared[index], draw, canvas, bands)
            else:
                box = _box(draw["canvas_x"], draw["canvas_y"], 8.0 * draw["radius"] + 4, canvas)
                model = _parametric_model(draw)
                if isinstance(model, tuple):
                    bulge = _render(model[0], canvas, box)
                    disk = _render(model[1], canvas, box)
                    fb = draw["bulge_fraction"]
                    planes = (fb * bulge / max(bulge.sum(), 1e-300)
                              + (1 - fb) * disk / max(disk.sum(), 1e-300))[None]
                else:
                    planes = _render(model, canvas, box)[None]
            planes = fftconvolve(planes, kernel[None], mode="same", axes=(-2, -1))
        total = planes.sum()
        if not total > 0:
            raise InvalidInputError(f"source {j} of the scene has no flux")
        colour = np.asarray(draw["colour"])[:, None, None]
        if planes.shape[0] == bands and draw["source"] == "image":
            planes = planes / total * bands * colour
        else:
            planes = planes / total * colour
        components[j] = draw["flux_ratio"] * planes[:, pad:pad + size, pad:pad + size]
    components = np.clip(components, 0.0, None)

    # ---- units: the first source's peak is 1; noise from the peak S/N
    unit = float(components[0].max()) if len(draws) and components[0].max() > 0 else 1.0
    components /= unit
    truth_total = components.sum(axis=0) if len(draws) else np.zeros((bands, size, size))
    peak = float(truth_total.max()) if len(draws) else 0.0
    sigma = (peak if peak > 0 else 1.0) / peak_snr * noise_scale
    c = (size - 1) / 2.0
    yy, xx = np.indices((size, size))
    sky_model = np.zeros((bands, size, size))
    sky_params = {"offset": [0.0] * bands, "gradient": [[0.0, 0.0]] * bands}
    if sky:
        offset = 0.5 * sky_draw[:, 0] * sigma
        gradient = 0.5 * sky_draw[:, 1:] * sigma[:, None]
        sky_model = (offset[:, None, None] + gradient[:, 0, None, None] * (xx - c) / size
                     + gradient[:, 1, None, None] * (yy - c) / size)
        sky_params = {"offset": offset.tolist(), "gradient": gradient.tolist()}
    blend = truth_total + sky_model
    if noise:
        blend = blend + rng.standard_normal(blend.shape) * sigma[:, None, None]
    mask = np.zeros((bands, size, size), dtype=bool)
    for defect in defects:
        if defect["kind"] == "cosmic":
            for band, x, y, amplitude in defect["pixels"]:
                blend[band, y, x] += amplitude * sigma[band]
                mask[band, y, x] = True
        else:
            window = (defect["bands"], slice(defect["y0"], defect["y1"]),
                      slice(defect["x0"], defect["x1"]))
            if defect["value"] == "zero":
                blend[window] = 0.0
            else:
                blend[window] += defect["value"] * sigma[defect["bands"], None, None]
            mask[window] = True

    records = []
    for draw in draws:
        record = {k: v for k, v in draw.items() if k not in ("canvas_x", "canvas_y")}
        records.append(record)
    params = {"protocol": "survey", "seed": json_seed(seed), "size": size, "n_bands": bands,
              "n_galaxies": n_gal, "n_stars": n_star,
              "isolated": bool(n_gal == 1 and n_star == 0), "psf": psf,
              "snr": peak_snr, "peak": peak, "sigma": sigma.tolist(), "unit": unit,
              "sky": sky_params, "defects": defects, "n_masked": int(mask.sum()),
              "noise": bool(noise), "clean": bool(clean), "n_images": len(images),
              "components": records}
    meta = {"PROTOCOL": ("survey", "astrodeblend blending protocol")}
    image = GalaxyImage(blend.astype(np.float32), mask=mask if mask.any() else None,
                        source="survey scene")
    image.meta["PROTOCOL"] = meta["PROTOCOL"]
    image.meta.add_history(f"astrodeblend blend_survey seed={json_seed(seed)}")
    centers = (np.array([[d["x"], d["y"]] for d in draws], dtype=float) if draws
               else np.zeros((0, 2)))
    return Scene(image, components.astype(np.float32), centers, "survey", params)
