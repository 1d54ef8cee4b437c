"""The value space of the models: a sign-preserving power-law stretch.

The networks work in a normalised, display-like space where a galaxy's
bright core is near 1 and the sky near 0.  Display-stretched scenes (JPG
protocols ``reiman`` and ``paper``, values already gamma-stretched in
[0, 1]) are used as they are.  Linear (physical) scenes are mapped with::

    model = stretch(linear / robust_peak(blend))
    linear = unstretch(model) * robust_peak(blend)

with the *same* per-scene scale for the blend and for every component, so
that fluxes add up again after `unstretch`.  The training loop and the
deblender both use these three functions.

Every function accepts `numpy.ndarray` and `torch.Tensor` inputs and returns
the same kind.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAMMA", "stretch", "unstretch", "robust_peak"]

#: Exponent of the display stretch (the sRGB-like gamma of the JPG protocols).
GAMMA = 2.2


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def stretch(x, *, gamma=GAMMA):
    """Map linear values to model space: ``sign(x) * |x| ** (1 / gamma)``.

    Parameters
    ----------
    x : `numpy.ndarray` or `torch.Tensor`
        Linear values, normally divided by `robust_peak` of the blend.
    gamma : float, optional
        Stretch exponent (2.2).

    Returns
    -------
    `numpy.ndarray` or `torch.Tensor`
        Same shape and kind as ``x``; negative values (sky noise) keep their
        sign.

    Examples
    --------
    >>> import numpy as np
    >>> stretch(np.array([-1.0, 0.0, 1.0, 2.2 ** 2.2])).round(3)
    array([-1. ,  0. ,  1. ,  2.2])
    """
    if _is_torch(x):
        return x.sign() * x.abs().pow(1.0 / gamma)
    x = np.asarray(x)
    return np.sign(x) * np.abs(x) ** (1.0 / gamma)


def unstretch(y, *, gamma=GAMMA):
    """Invert `stretch`: ``sign(y) * |y| ** gamma``.

    Parameters
    ----------
    y : `numpy.ndarray` or `torch.Tensor`
        Values in model space.
    gamma : float, optional
        Stretch exponent (2.2).

    Returns
    -------
    `numpy.ndarray` or `torch.Tensor`
        Linear values (in units of the scene's `robust_peak`).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([-0.5, 0.0, 0.25, 3.0])
    >>> np.allclose(unstretch(stretch(x)), x)
    True
    """
    if _is_torch(y):
        return y.sign() * y.abs().pow(gamma)
    y = np.asarray(y)
    return np.sign(y) * np.abs(y) ** gamma


def robust_peak(x, *, percentile=99.5, floor=1e-12):
    """Return a robust peak level per scene: a high percentile of the band mean.

    Parameters
    ----------
    x : `numpy.ndarray` or `torch.Tensor`
        One scene ``(C, H, W)`` or a batch ``(B, C, H, W)`` of linear values.
    percentile : float, optional
        Percentile of the band-averaged image (99.5).
    floor : float, optional
        Smallest value returned, so that dividing by it is always safe.

    Returns
    -------
    float, `numpy.ndarray` or `torch.Tensor`
        A positive scalar for one scene (a 0-d tensor for torch input), or
        one value per scene ``(B,)`` for a batch.

    Raises
    ------
    InvalidInputError
        If ``x`` is not 3- or 4-dimensional.

    Examples
    --------
    >>> import numpy as np
    >>> scene = np.zeros((3, 20, 20)); scene[:, 5:15, 5:15] = 2.0
    >>> float(robust_peak(scene))
    2.0
    >>> robust_peak(np.zeros((2, 1, 4, 4)))
    array([1.e-12, 1.e-12])
    """
    from ..errors import InvalidInputError

    if x.ndim not in (3, 4):
        raise InvalidInputError(f"robust_peak needs a (C, H, W) or (B, C, H, W) array, "
                                f"not shape {tuple(x.shape)}")
    if _is_torch(x):

        flat = x.float().mean(dim=-3).flatten(start_dim=-2)
        # torch.quantile's linear interpolation between two order statistics,
        # taken from the top values: a partial selection where quantile sorts
        # everything (and refuses more than 2**24 values)
        position = percentile / 100.0 * (flat.shape[-1] - 1)
        low = int(position)
        top = flat.topk(flat.shape[-1] - low, dim=-1).values  # descending
        value = top[..., -1]
        if position > low:
            value = value + (position - low) * (top[..., -2] - value)
        return value.clamp_min(floor).to(x.dtype)
    flat = np.asarray(x, dtype=np.float64).mean(axis=-3)
    flat = flat.reshape(flat.shape[:-2] + (-1,))
    value = np.maximum(np.percentile(flat, percentile, axis=-1), floor)
    return float(value) if value.ndim == 0 else value
