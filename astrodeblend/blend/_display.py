"""The ``paper`` and ``reiman`` protocols: display images blended by their pixel-wise maximum."""

from __future__ import annotations

import numbers

import numpy as np

from .._random import json_seed, make_rng
from ..errors import InvalidInputError
from ._geometry import (
    _area_resize,
    _block_mean,
    _crop_origin,
    _draw_transform,
    _filled,
    _filled_crop,
    _geometry,
    _map_xy,
    _scene_image,
    _transform_crop,
)
from ._scene import Scene, _coerce, _is_display


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
    from ..segment import partial_images

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
