"""Property-based tests (hypothesis) of the blending recipes: no valid input crashes,
and each protocol's defining property holds for any valid input."""

import numpy as np
from astropy.modeling.models import Sersic2D
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astrodeblend.blend import blend_paper, blend_physical, blend_reiman

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def galaxy_pairs(draw):
    """Two random Sersic galaxies (1-3 bands) on the same 48..96 px square grid."""
    size = draw(st.integers(48, 96))
    n_bands = draw(st.integers(1, 3))
    yy, xx = np.mgrid[:size, :size]
    images = []
    for _ in range(2):
        model = Sersic2D(amplitude=draw(st.floats(0.1, 1.0)),
                         r_eff=draw(st.floats(2.0, size / 6)),
                         n=draw(st.floats(0.5, 4.0)),
                         x_0=(size - 1) / 2, y_0=(size - 1) / 2,
                         ellip=draw(st.floats(0.0, 0.7)),
                         theta=draw(st.floats(0.0, 3.1)))
        plane = model(xx, yy).astype(np.float32)
        images.append(np.repeat(plane[None], n_bands, axis=0))
    return images, draw(st.integers(0, 2**31 - 1))


@SETTINGS
@given(galaxy_pairs())
def test_reiman_is_pixelwise_max(pair):
    (a, b), seed = pair
    scene = blend_reiman(a, b, seed=seed)
    assert np.all(np.isfinite(scene.blend.data))
    np.testing.assert_allclose(scene.blend.data, scene.components.max(axis=0), rtol=0,
                               atol=1e-6)
    assert scene.centers.shape == (2, 2)


@SETTINGS
@given(galaxy_pairs())
def test_physical_without_noise_is_the_sum(pair):
    (a, b), seed = pair
    scene = blend_physical([a, b], seed=seed, sky_sigma=0, gain=None)
    np.testing.assert_allclose(scene.blend.data, scene.components.sum(axis=0), rtol=1e-5,
                               atol=1e-6)
    fluxes = scene.components.reshape(2, -1).sum(axis=1)
    ratio = fluxes[1] / fluxes[0]
    assert 0.1 - 1e-3 <= ratio <= 1.0 + 1e-3


@SETTINGS
@given(galaxy_pairs())
def test_paper_blend_and_partials_are_finite(pair):
    (a, b), seed = pair
    scene = blend_paper(a, b, seed=seed, shift=a.shape[-1] // 4, working_size=None)
    np.testing.assert_allclose(scene.blend.data, scene.components.max(axis=0), atol=1e-6)
    assert scene.partials.shape == scene.components.shape
    assert np.all(np.isfinite(scene.partials))


@SETTINGS
@given(galaxy_pairs())
def test_same_seed_same_scene(pair):
    (a, b), seed = pair
    one = blend_physical([a, b], seed=seed)
    two = blend_physical([a, b], seed=seed)
    np.testing.assert_array_equal(one.blend.data, two.blend.data)
    np.testing.assert_array_equal(one.centers, two.centers)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(16, 80), st.sampled_from([None, 1, 3, 5]))
def test_survey_scene_invariants(seed, size, n_bands):
    from astrodeblend.blend import blend_survey

    scene = blend_survey(seed=seed, size=size, n_bands=n_bands, radius=(1.0, size / 8))
    params = scene.params
    assert scene.n_sources == params["n_galaxies"] + params["n_stars"]
    assert 0 <= params["n_galaxies"] <= 4 and 1 <= params["n_bands"] <= 5
    assert scene.components.shape == (scene.n_sources, params["n_bands"], size, size)
    assert np.all(scene.components >= 0) and np.all(np.isfinite(scene.blend.data))
    assert np.all((scene.centers >= 0) & (scene.centers <= size - 1))
    assert 5 <= params["snr"] <= 200
    plain = blend_survey(seed=seed, size=size, n_bands=n_bands, radius=(1.0, size / 8),
                         noise=False, sky=False, mask_fraction=0.0)
    np.testing.assert_allclose(plain.blend.data, plain.components.sum(axis=0), rtol=1e-5,
                               atol=1e-6)
