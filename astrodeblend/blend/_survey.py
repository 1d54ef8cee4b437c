"""The ``survey`` protocol: scenes like real survey cutouts."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._random import json_seed, make_rng
from ..errors import InvalidInputError
from ..image import GalaxyImage, as_galaxy_image
from ._geometry import _block_mean
from ._physical import linear_flux
from ._scene import Scene, _pair
from ._stamps import _half_light_radius, _isolate

# ----------------------------------------------------------------- survey
#: Probabilities of 0, 1, 2, 3 and 4 galaxies in a ``survey`` scene.
SURVEY_GALAXY_PROBABILITIES = (0.05, 0.25, 0.30, 0.25, 0.15)
#: `blend_survey`'s default ``max_zoom``: no image galaxy drawn larger than in its image
SURVEY_MAX_ZOOM = 1.0

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
                 snr=(5.0, 200.0), sky=True, mask_fraction=0.3, noise=True, clean=True,
                 max_zoom=SURVEY_MAX_ZOOM):
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
    max_zoom : float or None, optional
        Largest factor by which a galaxy from ``images`` is drawn larger than
        it is in its image (drawn half-light radius over the image's): its
        drawn radius is cut there.  An image keeps its own noise, which
        averages out when the galaxy is shrunk but, enlarged, turns into
        blobs of the noiseless truth (a faint compact stamp drawn 3-8 times
        larger).  The default, 1, draws no image galaxy larger than it is;
        None: no limit (the draws made before this option existed, which
        the shipped model's ``survey`` training scenes used).

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
    if max_zoom is not None and not float(max_zoom) > 0:
        raise InvalidInputError(f"max_zoom must be positive or None, not {max_zoom}")

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
    for _ in range(n_star):
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
                if max_zoom is not None:
                    draw["radius"] = min(draw["radius"], float(max_zoom) * prepared[index][3])
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
              "max_zoom": None if max_zoom is None else float(max_zoom),
              "components": records}
    meta = {"PROTOCOL": ("survey", "astrodeblend blending protocol")}
    image = GalaxyImage(blend.astype(np.float32), mask=mask if mask.any() else None,
                        source="survey scene")
    image.meta["PROTOCOL"] = meta["PROTOCOL"]
    image.meta.add_history(f"astrodeblend blend_survey seed={json_seed(seed)}")
    centers = (np.array([[d["x"], d["y"]] for d in draws], dtype=float) if draws
               else np.zeros((0, 2)))
    return Scene(image, components.astype(np.float32), centers, "survey", params)
