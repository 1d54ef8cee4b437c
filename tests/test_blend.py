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
    blend_survey,
    clean_stamp,
    linear_flux,
    make_scene,
    read_clean_stamps,
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


# --------------------------------------------------------------------- survey
def survey_sky(scene):
    """The residual sky of a survey scene, rebuilt from its params."""
    size = scene.params["size"]
    c = (size - 1) / 2
    yy, xx = np.indices((size, size))
    sky = scene.params["sky"]
    return np.stack([o + g[0] * (xx - c) / size + g[1] * (yy - c) / size
                     for o, g in zip(sky["offset"], sky["gradient"], strict=True)])


def test_survey_is_deterministic_per_seed():
    images = [sersic(96), sersic(64, r_eff=3, n_bands=1)]
    one = blend_survey(images, seed=21)
    two = make_scene(images, protocol="survey", seed=21)
    other = blend_survey(images, seed=22)
    np.testing.assert_array_equal(one.blend.data, two.blend.data)
    np.testing.assert_array_equal(one.components, two.components)
    np.testing.assert_array_equal(one.centers, two.centers)
    assert one.params == two.params
    assert json.loads(json.dumps(one.params)) == one.params
    assert one.params != other.params
    assert one.blend.meta["PROTOCOL"] == "survey" and one.protocol == "survey"


@pytest.mark.parametrize("seed", range(8))
def test_survey_components_add_up_to_the_noiseless_blend(seed):
    images = [sersic(96, r_eff=8), sersic(96, r_eff=3, n=3.0)]
    noisy = blend_survey(images, seed=seed)
    clean = blend_survey(images, seed=seed, noise=False)
    # the noise is drawn last: everything else is the same
    np.testing.assert_array_equal(noisy.components, clean.components)
    assert noisy.params["components"] == clean.params["components"]
    good = ~clean.blend.mask if clean.blend.mask is not None else np.ones(
        clean.blend.shape, bool)
    expected = clean.components.sum(axis=0) + survey_sky(clean)
    np.testing.assert_allclose(clean.blend.data[good], expected[good], rtol=1e-5, atol=1e-6)
    # the noise has the recorded standard deviation per band
    noise = (noisy.blend.data - clean.blend.data)[good]
    sigma = np.mean(clean.params["sigma"])
    assert 0.7 * sigma < noise.std() < 1.4 * sigma
    no_sky = blend_survey(images, seed=seed, noise=False, sky=False, mask_fraction=0)
    np.testing.assert_allclose(no_sky.blend.data, no_sky.components.sum(axis=0), rtol=1e-5,
                               atol=1e-6)


def test_survey_counts_positions_bands_stars_and_masks():
    scenes = [blend_survey(seed=seed, size=48, radius=(1.0, 4.0)) for seed in range(400)]
    n_galaxies = np.array([s.params["n_galaxies"] for s in scenes])
    n_stars = np.array([s.params["n_stars"] for s in scenes])
    assert set(n_galaxies) == {0, 1, 2, 3, 4}
    assert 0.18 < np.mean(n_galaxies == 1) < 0.32  # isolated galaxies: about a quarter
    assert np.mean([s.params["isolated"] for s in scenes]) > 0.1
    assert 0.25 < np.mean(n_stars > 0) < 0.55 and n_stars.max() == 2
    assert {s.params["n_bands"] for s in scenes} == {1, 2, 3, 4, 5}
    for s in scenes:
        assert s.n_sources == s.params["n_galaxies"] + s.params["n_stars"]
        assert s.components.shape == (s.n_sources, s.params["n_bands"], 48, 48)
        assert s.centers.shape == (s.n_sources, 2)
        assert [c["kind"] for c in s.params["components"]] == (
            ["galaxy"] * s.params["n_galaxies"] + ["star"] * s.params["n_stars"])
        assert np.all(s.components >= 0) and np.all(np.isfinite(s.blend.data))
    # positions uniform over the frame, not favouring the centre
    xy = np.concatenate([s.centers for s in scenes if s.n_sources])
    assert np.all((xy >= 0) & (xy <= 47))
    inner = np.mean(np.all(np.abs(xy - 23.5) < 12, axis=1))  # a quarter of the area
    assert 0.18 < inner < 0.32
    counts, _ = np.histogram(xy[:, 0], bins=4, range=(0, 47))
    assert counts.min() > 0.7 * counts.mean()
    # flux ratios and S/N over the documented ranges
    ratios = [c["flux_ratio"] for s in scenes for c in s.params["components"][1:]]
    assert 0.05 <= min(ratios) < 0.1 and 0.7 < max(ratios) <= 1.0
    snr = [s.params["snr"] for s in scenes]
    assert 5 <= min(snr) < 8 and 150 < max(snr) <= 200
    # masked defects in some scenes, recorded in the blend's mask and the params
    masked = [s for s in scenes if s.params["defects"]]
    assert 0.2 < len(masked) / len(scenes) < 0.4
    for s in masked:
        assert s.blend.mask is not None and int(s.blend.mask.sum()) == s.params["n_masked"]
    assert {d["kind"] for s in masked for d in s.params["defects"]} == {"block", "column",
                                                                        "cosmic"}
    assert all(s.blend.mask is None for s in scenes if not s.params["defects"])


def test_survey_stars_are_the_psf_and_galaxies_come_from_every_source():
    images = [sersic(96, r_eff=6), display(sersic(128, r_eff=10) ** (1 / 2.2))]
    scenes = [blend_survey(images, seed=seed, n_galaxies=3, star_fraction=1.0, n_bands=2)
              for seed in range(30)]
    sources = {c["source"] for s in scenes for c in s.params["components"]}
    assert sources == {"image", "sersic", "bulge_disk", "psf"}
    for s in scenes:
        for j, c in enumerate(s.params["components"]):
            plane = s.components[j].sum(axis=0)
            x, y = weighted_center(plane)
            inside = 12 < c["x"] < 83 and 12 < c["y"] < 83  # whole light in the frame
            if c["kind"] == "star" and inside:
                assert abs(x - c["x"]) < 0.3 and abs(y - c["y"]) < 0.3
                # the colour is the band ratio
                ratio = s.components[j, 1].sum() / s.components[j, 0].sum()
                assert ratio == pytest.approx(c["colour"][1] / c["colour"][0], rel=1e-3)
            elif c["kind"] == "galaxy" and inside and c["radius"] < 3:
                assert abs(x - c["x"]) < 1.0 and abs(y - c["y"]) < 1.0
    image_draws = [(s, j, c) for s in scenes for j, c in enumerate(s.params["components"])
                   if c["source"] == "image"]
    assert {c["image"] for _, _, c in image_draws} == {0, 1}


def test_survey_without_images_and_fixed_options():
    scene = blend_survey(seed=5, size=32, n_bands=4, n_galaxies=0, star_fraction=0.0)
    assert scene.n_sources == 0 and scene.components.shape == (0, 4, 32, 32)
    assert scene.centers.shape == (0, 2)
    scene = blend_survey(seed=5, n_galaxies=4, psf_fwhm=2.0, snr=50)
    assert scene.params["psf"]["fwhm"] == 2.0 and scene.params["snr"] == pytest.approx(50)
    with pytest.raises(InvalidInputError, match="flux_ratio"):
        blend_survey(flux_ratio=(0, 1))
    with pytest.raises(InvalidInputError, match="size"):
        blend_survey(size=8)
    with pytest.raises(InvalidInputError, match="n_galaxies"):
        blend_survey(n_galaxies=-1)
    with pytest.raises(InvalidInputError, match="galaxy_probabilities"):
        blend_survey(galaxy_probabilities=(0.5, 0.2))
    with pytest.raises(InvalidInputError, match="star_fraction"):
        blend_survey(star_fraction=2)


def test_clean_stamp_removes_neighbours_and_sky():
    yy, xx = np.mgrid[:80, :80]
    central = np.exp(-((xx - 40) ** 2 + (yy - 38) ** 2) / 40.0)
    neighbour = 0.7 * np.exp(-((xx - 10) ** 2 + (yy - 66) ** 2) / 10.0)
    data = central + neighbour + 0.3 + np.random.default_rng(1).normal(0, 0.01, xx.shape)
    clean = clean_stamp(data[None].astype(np.float32), fill="zero")
    assert np.all(clean.data[0, 63:70, 7:14] == 0)
    assert abs(np.median(clean.data[0, :10, 60:])) < 0.01  # sky subtracted
    assert clean.meta["ADBCLEAN"] and clean.meta["ADBNMASK"] > 0
    assert abs(clean.meta["ADBCX"] - 40) < 0.5 and abs(clean.meta["ADBCY"] - 38) < 0.5
    noisy = clean_stamp(data, fill="noise", seed=3)
    assert 0.005 < np.std(noisy.data[0, 63:70, 7:14]) < 0.02
    with pytest.raises(InvalidInputError, match="fill"):
        clean_stamp(data, fill="nan")


def test_read_clean_stamps_from_a_folder(tmp_path):
    from astropy.io import fits

    yy, xx = np.mgrid[:64, :64]
    rng = np.random.default_rng(0)
    galaxy = (np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / 30.0)
              + rng.normal(0, 0.01, xx.shape)).astype(np.float32)
    (tmp_path / "sub").mkdir()
    fits.HDUList([fits.PrimaryHDU(galaxy), fits.ImageHDU(galaxy.T),
                  fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]
                 ).writeto(tmp_path / "sub" / "stamps.fits")
    fits.PrimaryHDU(np.stack([galaxy] * 3)).writeto(tmp_path / "cube.fits")
    fits.PrimaryHDU(galaxy).writeto(tmp_path / "star_psf.fits")
    stamps = read_clean_stamps(tmp_path)
    assert [s.shape for s in stamps] == [(3, 64, 64), (1, 64, 64), (1, 64, 64)]
    assert all(s.meta["ADBCLEAN"] for s in stamps)
    scene = blend_survey(stamps, seed=1, n_galaxies=3, image_fraction=1.0, n_bands=3)
    assert {c["source"] for c in scene.params["components"][:3]} == {"image"}
    with pytest.raises(InvalidInputError, match="no usable galaxy stamp"):
        read_clean_stamps(tmp_path / "sub", pattern="*.nope")


def test_survey_max_zoom_draws_no_image_galaxy_larger_than_its_image():
    """An image galaxy keeps its image's noise: drawn 3-8 times larger, a faint
    compact stamp's noise became blobs of the noiseless truth.  max_zoom cuts the
    drawn radius at that factor times the image's own (by default 1); None
    keeps the draws made before the option existed."""
    yy, xx = np.mgrid[:48, :48]
    rng = np.random.default_rng(2)
    stamp = (np.exp(-((xx - 24) ** 2 + (yy - 24) ** 2) / 4.0)
             + rng.normal(0, 0.02, xx.shape)).astype(np.float32)
    options = dict(n_galaxies=1, star_fraction=0.0, image_fraction=1.0, n_bands=1,
                   radius=(6.0, 9.0))
    for seed in range(3):
        free = blend_survey([stamp], seed=seed, max_zoom=None, **options)
        capped = blend_survey([stamp], seed=seed, **options)
        twice = blend_survey([stamp], seed=seed, max_zoom=2.0, **options)
        drawn = free.params["components"][0]["radius"]
        assert 6.0 <= drawn <= 9.0 and free.params["max_zoom"] is None
        own = capped.params["components"][0]["radius"]  # the stamp's half-light radius
        assert own < 3.0 and capped.params["max_zoom"] == 1.0
        assert twice.params["components"][0]["radius"] == pytest.approx(min(drawn, 2 * own))
        np.testing.assert_allclose(capped.centers, free.centers)  # the other draws kept
        # the truth stays compact (the PSF widens both): half the free one's half-light area
        light = [np.sort(s.components[0].ravel())[::-1] for s in (free, capped)]
        area = [np.searchsorted(np.cumsum(v), 0.5 * v.sum()) for v in light]
        assert area[1] < 0.5 * area[0]
    with pytest.raises(InvalidInputError, match="max_zoom"):
        blend_survey([stamp], max_zoom=0)


def test_survey_from_real_stamps(shared_data):
    folder = shared_data / "fits"
    if not folder.is_dir():
        pytest.skip("no FITS stamps in ../shared/data")
    stamps = read_clean_stamps(folder)
    assert len(stamps) >= 10
    for stamp in stamps:
        assert np.all(np.isfinite(stamp.data))
    scene = blend_survey(stamps, seed=2, n_galaxies=4, image_fraction=1.0)
    assert scene.n_sources >= 4 and np.all(np.isfinite(scene.components))
