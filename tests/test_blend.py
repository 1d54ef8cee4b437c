"""Tests of the blending protocols (astrodeblend.blend)."""

import json

import numpy as np
import pytest
from astropy.modeling.models import Sersic2D
from astropy.wcs import WCS

from astrodeblend import GalaxyImage, InvalidInputError
from astrodeblend.blend import (
    PROTOCOLS,
    Scene,
    blend_paper,
    blend_physical,
    blend_reiman,
    linear_flux,
    make_scene,
)


def sersic(size=96, *, x=None, y=None, r_eff=5.0, n=1.5, n_bands=3, ellip=0.3, theta=0.4):
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    plane = Sersic2D(amplitude=1.0, r_eff=r_eff, n=n, x_0=c if x is None else x,
                     y_0=c if y is None else y, ellip=ellip, theta=theta)(xx, yy)
    plane = plane / plane.max()
    return (np.linspace(0.8, 1.2, n_bands)[:, None, None] * plane[None]).astype(np.float32)


def gaussian(size=424, *, sigma=4.0, n_bands=1, x=None, y=None):
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    x = c if x is None else x
    y = c if y is None else y
    plane = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(plane[None], n_bands, axis=0).astype(np.float32)


def weighted_center(plane):
    yy, xx = np.mgrid[:plane.shape[0], :plane.shape[1]]
    return (plane * xx).sum() / plane.sum(), (plane * yy).sum() / plane.sum()


def display(data):
    return GalaxyImage(data, meta={"ADBDISP": True}, bands=list("RGB")[:data.shape[0]])


# --------------------------------------------------------------------- paper
def test_paper_is_max_with_b_shifted_right():
    a = sersic(128, r_eff=8)
    b = sersic(128, r_eff=5, theta=1.2) * 0.7
    scene = blend_paper(a, b, shift=50, working_size=None, noise_sigma=0.0)
    shifted = np.zeros_like(b)
    shifted[:, :, 50:] = b[:, :, :-50]
    np.testing.assert_array_equal(scene.components[0], a)
    np.testing.assert_array_equal(scene.components[1], shifted)
    np.testing.assert_array_equal(scene.blend.data, np.maximum(a, shifted))
    np.testing.assert_allclose(scene.centers, [[63.5, 63.5], [113.5, 63.5]])
    # partials: A where A >= B (band sum), B elsewhere; no noise here
    a_wins = a.sum(0) >= shifted.sum(0)
    np.testing.assert_array_equal(scene.partials[0], np.where(a_wins, scene.blend.data, 0))
    np.testing.assert_array_equal(scene.partials[1], np.where(~a_wins, scene.blend.data, 0))
    assert scene.protocol == "paper" and scene.blend.meta["PROTOCOL"] == "paper"


def test_paper_downsamples_everything_by_area():
    a, b = sersic(424, r_eff=30), sersic(424, r_eff=20, theta=2.0)
    scene = blend_paper(a, b, seed=3)
    assert scene.blend.shape == (3, 128, 128)
    assert scene.components.shape == scene.partials.shape == (2, 3, 128, 128)
    full = blend_paper(a, b, seed=3, working_size=None, noise_sigma=0.0)
    # area averaging keeps the mean
    np.testing.assert_allclose(scene.blend.data.mean(), full.blend.data.mean(), rtol=1e-5)
    np.testing.assert_allclose(scene.centers, (full.centers + 0.5) * 128 / 424 - 0.5)
    noise = scene.partials - blend_paper(a, b, seed=3, noise_sigma=0.0).partials
    assert abs(noise.std() - 0.02) < 0.001


def test_paper_keeps_display_card():
    a = display(sersic(64))
    scene = blend_paper(a, a, shift=10, working_size=32)
    assert scene.blend.meta["ADBDISP"] is True
    assert scene.blend.bands == ("R", "G", "B")


# -------------------------------------------------------------------- reiman
def test_reiman_geometry_and_centers():
    g = gaussian(424, sigma=5.0)
    for seed in range(4):
        scene = blend_reiman(g, g, seed=seed)
        assert scene.blend.shape == (1, 80, 80)
        np.testing.assert_array_equal(scene.blend.data, scene.components.max(axis=0))
        np.testing.assert_allclose(scene.centers[0], [39.5, 39.5])
        for k in range(2):
            np.testing.assert_allclose(weighted_center(scene.components[k, 0]),
                                       scene.centers[k], atol=0.05)
        p = scene.params
        assert 0 <= p["angle"] < 2 * np.pi and np.exp(-1) <= p["scale"] <= np.exp(0.5)
        assert all(10 <= abs(v) < 50 for v in p["shift"])
        json.dumps(p)


def test_reiman_matches_a_plain_crop_and_bin():
    a = sersic(424, r_eff=40)
    scene = blend_reiman(a, a, seed=0)
    expected = a[:, 92:332, 92:332].reshape(3, 80, 3, 80, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(scene.components[0], expected, rtol=1e-5, atol=1e-7)


def test_reiman_small_images_scale_crop_and_shift():
    scene = blend_reiman(sersic(96), sersic(96), seed=1)
    crop = scene.params["crop"]
    assert crop == round(240 * 96 / 424) // 3 * 3
    assert scene.blend.shape == (3, crop // 3, crop // 3)
    lo, hi = scene.params["shift_range"]
    assert lo == pytest.approx(10 * 96 / 424) and hi == pytest.approx(50 * 96 / 424)


def test_reiman_resamples_the_wcs_of_a():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [212.5, 212.5]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.cdelt = [-0.1 / 3600, 0.1 / 3600]
    a = GalaxyImage(gaussian(424, sigma=6.0), wcs=wcs)
    scene = blend_reiman(a, a, seed=2)
    # the same sky position at A's centre, pixels 3 times larger
    ra, dec = scene.blend.pixel_to_radec(39.5, 39.5)
    ra0, dec0 = a.pixel_to_radec(211.5, 211.5)
    np.testing.assert_allclose([ra[0], dec[0]], [ra0[0], dec0[0]], atol=1e-9)
    assert scene.blend.pixel_scale.value == pytest.approx(0.3)


# ------------------------------------------------------------------ physical
def test_physical_blend_is_sum_of_components_without_noise():
    images = [sersic(96), sersic(96, r_eff=3), sersic(96, n=3)]
    scene = blend_physical(images, seed=5, sky_sigma=0, gain=None)
    np.testing.assert_array_equal(scene.blend.data, scene.components.sum(axis=0))
    assert scene.n_sources == 3 and scene.centers.shape == (3, 2)


def test_physical_noise_is_on_the_blend_only():
    images = [sersic(424, r_eff=20), sersic(424, r_eff=15)]
    quiet = blend_physical(images, seed=5, sky_sigma=0, gain=None)
    noisy = blend_physical(images, seed=5, sky_sigma=0.01, gain=None)
    np.testing.assert_array_equal(quiet.components, noisy.components)
    noise = noisy.blend.data - noisy.components.sum(axis=0)
    assert noise.std() == pytest.approx(0.01 * noisy.params["peak"], rel=0.05)
    poisson = blend_physical(images, seed=5, sky_sigma=0, gain=100.0)
    residual = poisson.blend.data - poisson.components.sum(axis=0)
    assert residual.std() > 0
    np.testing.assert_allclose(poisson.blend.data,
                               poisson.components.sum(axis=0) + residual, rtol=0, atol=0)


def test_physical_flux_ratio_is_respected():
    images = [sersic(424, r_eff=25), sersic(424, r_eff=12), sersic(424, r_eff=18)]
    for seed in range(3):
        scene = blend_physical(images, seed=seed, flux_ratio=(0.2, 0.6), sky_sigma=0,
                               gain=None)
        flux = scene.components.sum(axis=(1, 2, 3), dtype=np.float64)
        for j in (1, 2):
            ratio = scene.params["galaxies"][j]["flux_ratio"]
            assert 0.2 <= ratio <= 0.6
            assert flux[j] / flux[0] == pytest.approx(ratio, rel=1e-4)


def test_crop_and_bin_conserve_flux_of_a_centred_compact_source():
    g = gaussian(424, sigma=4.0)
    scene = blend_physical([g, g], seed=0, sky_sigma=0, gain=None)
    factor = scene.params["factor"]
    # binning averages: total flux = sum of binned pixels * factor**2
    assert scene.components[0].sum() * factor ** 2 == pytest.approx(g.sum(), rel=1e-5)


def test_physical_linearises_display_images_and_drops_the_card():
    data = np.clip(sersic(96) ** (1 / 2.2) + 0.02, 0, 1)
    scene = blend_physical([display(data), display(data)], seed=1, sky_sigma=0, gain=None)
    assert "ADBDISP" not in scene.blend.meta
    assert scene.blend.meta["PROTOCOL"] == "physical"
    linear = linear_flux(display(data))
    # the sky (0.02 in display units) is removed after linearisation
    assert abs(np.median(linear[:, :5, :5])) < 1e-3
    assert scene.params["linearised"] == [True, True]


@pytest.mark.parametrize("psf", [dict(psf_fwhm=2.5), dict(psf_fwhm=2.5, psf_beta=3.0),
                                 dict(psf=np.outer(np.hanning(9), np.hanning(9)))])
def test_psf_convolution_conserves_flux(psf):
    images = [gaussian(424, sigma=8.0, n_bands=2), gaussian(424, sigma=6.0, n_bands=2)]
    plain = blend_physical(images, seed=3, sky_sigma=0, gain=None, shift=(10, 20))
    blurred = blend_physical(images, seed=3, sky_sigma=0, gain=None, shift=(10, 20), **psf)
    np.testing.assert_allclose(blurred.components.sum(axis=(2, 3)),
                               plain.components.sum(axis=(2, 3)), rtol=2e-3)
    assert blurred.components[0].max() < plain.components[0].max()
    assert blurred.params["psf"]["kind"] in ("gaussian", "moffat", "image")


def test_psf_from_fits_file(tmp_path):
    from astropy.io import fits

    kernel = np.outer(np.hanning(7), np.hanning(7)).astype(np.float32)
    fits.writeto(tmp_path / "psf.fits", kernel)
    images = [gaussian(96, sigma=3.0), gaussian(96, sigma=3.0)]
    scene = blend_physical(images, seed=0, sky_sigma=0, gain=None, psf=tmp_path / "psf.fits")
    assert scene.params["psf"]["path"].endswith("psf.fits")


@pytest.mark.parametrize("n_bands", [1, 5])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_any_band_count(protocol, n_bands):
    a, b = sersic(96, n_bands=n_bands), sersic(96, r_eff=3, n_bands=n_bands)
    kwargs = {"working_size": 48, "shift": 20} if protocol == "paper" else {}
    if protocol == "survey":  # draws 1-5 bands unless told
        kwargs = {"n_bands": n_bands, "n_galaxies": 2}
    scene = make_scene([a, b], protocol=protocol, seed=2, **kwargs)
    assert isinstance(scene, Scene)
    assert scene.blend.n_bands == n_bands and scene.components.shape[1] == n_bands
    assert scene.components.dtype == np.float32 and scene.centers.dtype == np.float64
    json.dumps(scene.params)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_same_seed_same_scene(protocol):
    a, b = sersic(96), sersic(96, r_eff=3, theta=1.0)
    kwargs = {"working_size": 48, "shift": 20} if protocol == "paper" else {}
    one = make_scene([a, b], protocol=protocol, seed=11, **kwargs)
    two = make_scene([a, b], protocol=protocol, seed=11, **kwargs)
    other = make_scene([a, b], protocol=protocol, seed=12, **kwargs)
    np.testing.assert_array_equal(one.blend.data, two.blend.data)
    np.testing.assert_array_equal(one.components, two.components)
    assert one.params == two.params
    different = other.partials if protocol == "paper" else other.blend.data
    same = one.partials if protocol == "paper" else one.blend.data
    assert not np.array_equal(different, same)


def test_errors_name_the_bad_input():
    a = sersic(96)
    with pytest.raises(InvalidInputError, match="galaxy B has shape"):
        blend_reiman(a, sersic(64))
    with pytest.raises(InvalidInputError, match="galaxy C has 1 bands"):
        blend_physical([a, a, sersic(96, n_bands=1)])
    with pytest.raises(InvalidInputError, match="at least 2 images"):
        blend_physical([a])
    with pytest.raises(InvalidInputError, match="protocol must be one of"):
        make_scene([a, a], protocol="nope")
    with pytest.raises(InvalidInputError, match="exactly 2 galaxies"):
        make_scene([a, a, a], protocol="reiman")
    with pytest.raises(InvalidInputError, match="seed"):
        blend_reiman(a, a, seed=1.5)
    with pytest.raises(InvalidInputError, match="flux_ratio"):
        blend_physical([a, a], flux_ratio=(0, 1))
    with pytest.raises(InvalidInputError, match="psf_beta"):
        blend_physical([a, a], psf_beta=2.0)
    with pytest.raises(InvalidInputError, match="shift"):
        blend_paper(a, a, shift=2.5)
    with pytest.raises(InvalidInputError, match="protocol 'reiman'"):
        make_scene([a, a], protocol="reiman", bogus=1)
