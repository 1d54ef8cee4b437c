"""Tests of the paper's segmentation (astrodeblend.segment)."""

import numpy as np
import pytest

from astrodeblend import InvalidInputError
from astrodeblend.detect import find_centers
from astrodeblend.segment import partial_images


def blob(x, y, size=64, sigma=4.0, amplitude=1.0):
    yy, xx = np.mgrid[:size, :size]
    return (amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))[None]


def test_truth_mode_assigns_each_pixel_to_the_brightest_component():
    a, b = blob(20, 30), blob(40, 34, amplitude=0.8)
    components = np.stack([a, b]).astype(np.float32)
    blend = components.sum(axis=0)
    parts = partial_images(blend, components, noise_sigma=0)
    assert parts.shape == (2, 1, 64, 64) and parts.dtype == np.float32
    # every pixel belongs to exactly one galaxy, and the parts add up to the blend
    np.testing.assert_allclose(parts.sum(axis=0), blend, rtol=1e-6)
    assert np.all((parts[0] == 0) | (parts[1] == 0))
    assert parts[0, 0, 30, 20] == pytest.approx(blend[0, 30, 20])
    assert parts[1, 0, 30, 20] == 0
    assert parts[1, 0, 34, 40] == pytest.approx(blend[0, 34, 40])


def test_segmap_mode_and_noise():
    rng = np.random.default_rng(0)
    blend = blob(20, 30) + blob(44, 34) + rng.normal(0, 0.01, (1, 64, 64))
    segmap = find_centers(blend).segmap
    parts = partial_images(blend, segmap=segmap, noise_sigma=0.05, seed=3)
    assert parts.shape == (segmap.max(), 1, 64, 64) == (2, 1, 64, 64)
    outside = parts[0, 0][segmap != 1]
    assert outside.std() == pytest.approx(0.05, rel=0.05)
    again = partial_images(blend, segmap=segmap, noise_sigma=0.05, seed=3)
    np.testing.assert_array_equal(parts, again)


def test_errors():
    blend = blob(20, 30)
    with pytest.raises(InvalidInputError, match="components or a segmap"):
        partial_images(blend)
    with pytest.raises(InvalidInputError, match="components must have shape"):
        partial_images(blend, np.zeros((2, 3, 64, 64)))
    with pytest.raises(InvalidInputError, match="segmap"):
        partial_images(blend, segmap=np.zeros((10, 10), int))
    with pytest.raises(InvalidInputError, match="noise_sigma"):
        partial_images(blend, blend[None], noise_sigma=-1)
