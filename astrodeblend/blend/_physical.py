"""The ``physical`` protocol: linear flux, the sum of the galaxies, a PSF and noise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._random import json_seed, make_rng
from ..errors import InvalidInputError
from ..image import GalaxyImage, as_galaxy_image
from ._geometry import (
    _block_mean,
    _crop_origin,
    _draw_transform,
    _geometry,
    _map_xy,
    _scene_image,
    _transform_crop,
)
from ._scene import DISPLAY_GAMMA, Scene, _coerce, _galaxy_names, _is_display, _pair


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
    from ..detect import background_and_noise

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
        from ..io import read_image
    except ImportError:  # pragma: no cover - io without a reader yet
        read_image = None
    if read_image is not None:
        return read_image(path).filled(0.0)
    from astropy.io import fits

    from ..errors import ReadError

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
