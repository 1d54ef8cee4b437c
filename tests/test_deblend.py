import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.modeling.models import Gaussian2D, Sersic2D
from astropy.wcs import WCS

from astrodeblend import DeblendResult, GalaxyImage
from astrodeblend.errors import CheckpointError, InvalidInputError
from astrodeblend.models import ModelConfig, build_models
from astrodeblend.pipeline import Deblender, deblend, get_deblender


def two_gaussians(shape=(64, 64), *, noise=0.01, seed=0, n_bands=3):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    a = Gaussian2D(1.0, 24, 32, 3, 3)(xx, yy)
    b = Gaussian2D(0.6, 42, 30, 3, 2)(xx, yy)
    rng = np.random.default_rng(seed)
    cube = np.stack([a + b] * n_bands) + rng.normal(0, noise, (n_bands, *shape))
    return cube.astype(np.float32), np.array([[24.0, 32.0], [42.0, 30.0]])


@pytest.fixture
def untrained():
    """A Deblender with an untrained generator (returns the blend) and photutils detection."""
    cfg = ModelConfig(generator_channels=8, detector_channels=4, discriminator_channels=4)
    generator = build_models(cfg)["generator"]
    return Deblender(generator, None, cfg, device=torch.device("cpu"), name="untrained")


def outside_footprints(result):
    """Boolean (H, W): pixels that belong to no source's cutout footprint."""
    covered = np.zeros(result.blend.shape[1:], dtype=bool)
    for i, cutout in enumerate(result.cutouts):
        sy, sx = result.source_slices(i)
        covered[sy, sx] |= (cutout != 0).any(axis=0)
    return ~covered


def test_linear_mode_finds_both_and_leaves_noise_outside(untrained):
    cube, truth = two_gaussians()
    result = untrained(cube)
    assert isinstance(result, DeblendResult)
    assert result.n_sources == 2
    assert result.flux_mode == "weighted"
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    for t in truth:
        assert np.min(np.hypot(*(found - t).T)) < 1.0
    # outside the footprints the residual is the sky: zero mean, the input noise
    sky = result.residual.data[:, outside_footprints(result)]
    assert sky.size > 300
    assert abs(sky.mean()) < 3 * 0.01 / np.sqrt(sky.size) + 1e-3
    assert sky.std() == pytest.approx(0.01, rel=0.1)
    assert set(np.unique(result.segmap)) <= {0, 1, 2}
    assert any("flux" in line for line in result.history)


def test_flux_model_gives_scaled_models(untrained):
    cube, _ = two_gaussians()
    conserve = untrained(cube, flux="conserve")
    model = untrained(cube, flux="model")
    assert model.flux_mode == "model"
    assert any("flux: model" in line for line in model.history)
    # the untrained generator returns its input: models scaled to the data give
    # the same total flux as sharing the data
    assert model.fluxes.sum() == pytest.approx(conserve.fluxes.sum(), rel=0.1)
    with pytest.raises(InvalidInputError, match="flux"):
        untrained(cube, flux="share")


def test_keeps_wcs_and_catalog_sky_positions(untrained):
    cube, _ = two_gaussians()
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [32.5, 32.5]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    result = untrained(GalaxyImage(cube, wcs=wcs))
    assert result.blend.wcs is not None
    ra, dec = wcs.all_pix2world(result.catalog["x_centroid"], result.catalog["y_centroid"], 0)
    np.testing.assert_allclose(result.catalog["ra"], ra)
    np.testing.assert_allclose(result.catalog["dec"], dec)


def test_display_mode_uses_model_output(untrained):
    cube, _ = two_gaussians(noise=0.0)
    cube = np.clip(cube, 0, 1)
    image = GalaxyImage(cube, meta={"ADBDISP": True})
    result = untrained(image)
    assert result.n_sources == 2
    # the untrained generator returns its input, so each source is the blend
    np.testing.assert_allclose(result.sources[0], cube, atol=1e-5)


def display_pair(seed=0):
    """Two galaxies as a JPG shows them: stretched, sky near black, 8-bit levels."""
    yy, xx = np.mgrid[:80, :80]
    light = Sersic2D(0.3, 6, 1.5, 36, 40, 0.3, 0.5)(xx, yy) + Sersic2D(0.2, 4, 1, 50, 44)(xx, yy)
    rng = np.random.default_rng(seed)
    # gamma stretch, the black point set just under the sky
    rgb = np.stack([light, 0.9 * light, 0.7 * light]) ** (1 / 2.2) - 0.02
    rgb = rgb + rng.normal(0, 0.01, rgb.shape)
    return np.round(255 * np.clip(rgb, 0, 1)).astype(np.uint8)


@pytest.mark.parametrize("form", ["uint8", "float 0-1", "float 0-255 resampled"])
def test_display_values_saved_as_fits_are_deblended_as_display(tmp_path, form):
    """A JPG's RGB saved as FITS (no ADBDISP card) gets what the JPG would get."""
    levels = display_pair()
    reference = deblend(GalaxyImage(levels / np.float32(255), meta={"ADBDISP": True}),
                        device="cpu")
    if form == "uint8":
        data, scale = levels, 255.0
    elif form == "float 0-1":
        data, scale = (levels / np.float32(255)).astype(np.float32), 1.0
    else:  # values off the 8-bit grid (shifted by half a pixel, as resampled), in 0-255
        levels = levels.astype(np.float32)
        levels = (levels[:, 1:, 1:] + levels[:, :-1, 1:] + levels[:, 1:, :-1]
                  + levels[:, :-1, :-1]) / np.float32(4)
        reference = deblend(GalaxyImage(levels / np.float32(255), meta={"ADBDISP": True}),
                            device="cpu")
        data, scale = levels, 255.0
    path = tmp_path / "rgb.fits"
    fits.PrimaryHDU(data).writeto(path)
    result = deblend(path, device="cpu")
    assert any(line.startswith("mode: display (auto)") for line in result.history)
    assert result.n_sources == reference.n_sources == 2
    np.testing.assert_allclose(result.blend.data, data)   # BLEND: the input as read
    for ours, theirs in zip(result.sources, reference.sources, strict=True):
        np.testing.assert_allclose(ours / scale, theirs, atol=1e-6)
    # --mode display on 0-255 values: the same, not the networks fed 0-255
    forced = deblend(path, device="cpu", mode="display")
    np.testing.assert_allclose(forced.sources[0], result.sources[0])


def test_linear_images_are_not_taken_for_display():
    from astrodeblend.image import looks_display

    rgb = display_pair() / np.float32(255)
    assert looks_display(GalaxyImage(rgb))
    yy, xx = np.mgrid[:80, :80]
    sersic = Sersic2D(0.01, 6, 1, 40, 40)(xx, yy)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    rng = np.random.default_rng(1)
    for linear in (rgb - np.median(rgb),             # sky-subtracted: negative noise
                   rgb + 0.05,                       # a sky level above black
                   np.stack([sersic] * 3) / sersic.max(),  # noiseless profiles in 0-1
                   rng.poisson(20 + 50 * np.stack([sersic] * 3) / sersic.max()) / 100.0,
                   rgb[:1], rgb[:2]):                # not three planes
        assert not looks_display(GalaxyImage(linear))
    assert not looks_display(GalaxyImage(rgb, wcs=wcs))
    with pytest.raises(InvalidInputError, match="above 65535"):
        deblend(GalaxyImage(rgb * 1e5), device="cpu", mode="display")


def test_large_image_sources_are_cutouts(untrained):
    cube = np.zeros((3, 200, 240), dtype=np.float32)
    small, _ = two_gaussians(noise=0.0)
    cube[:, 20:84, 30:94] = small
    cube[:, 120:184, 150:214] = small
    cube += np.random.default_rng(1).normal(0, 0.01, cube.shape).astype(np.float32)
    result = untrained(cube)
    assert result.n_sources == 4
    assert result.sources.shape[1:] == cube.shape
    # memory grows with the footprints: every cutout is a small part of the frame
    assert sum(c.size for c in result.cutouts) < 0.5 * cube.size


def test_no_source_gives_empty_result(untrained):
    noise = np.random.default_rng(2).normal(0, 1, (3, 40, 40)).astype(np.float32)
    result = untrained(noise)
    assert result.n_sources == 0
    np.testing.assert_allclose(result.residual.data, noise)


@pytest.mark.parametrize("n_bands", [1, 2, 5])
def test_any_band_count(untrained, n_bands):
    cube, truth = two_gaussians(n_bands=n_bands)
    result = untrained(cube)
    assert result.sources.shape == (2, n_bands, 64, 64)
    assert all(c.shape[0] == n_bands for c in result.cutouts)
    if n_bands != 3:
        assert any("bands:" in line for line in result.history)


def test_bad_mode():
    cfg = ModelConfig(generator_channels=8)
    with pytest.raises(InvalidInputError, match="mode"):
        Deblender(build_models(cfg)["generator"], None, cfg, device=torch.device("cpu"),
                  mode="nonsense")


def test_get_deblender_unknown():
    with pytest.raises(InvalidInputError, match="unknown method"):
        get_deblender("magic")


def test_load_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError):
        Deblender.load(tmp_path / "nothing.pt", device="cpu")


def test_default_model_deblends_fits(tmp_path):
    cube, truth = two_gaussians()
    path = tmp_path / "cutout.fits"
    fits.PrimaryHDU(cube).writeto(path)
    result = deblend(path, device="cpu")
    assert result.n_sources == 2
    assert result.model_name == "default"
    assert len(result.model_hash) == 64
    # ADBMHASH names the networks that deblended: the generator and the detector
    from astrodeblend._checkpoint import load_checkpoint, models_hash
    from astrodeblend.weights import default_model_path

    shipped = load_checkpoint(default_model_path())["models"]
    assert result.model_hash == models_hash({n: shipped[n] for n in ("generator", "detector")})
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    for t in truth:
        assert np.min(np.hypot(*(found - t).T)) < 1.5


def test_noiseless_8bit_png_finds_its_galaxies(tmp_path):
    """A synthetic PNG without noise (sky exactly 0): noise from the 8-bit quantisation."""
    from PIL import Image

    yy, xx = np.mgrid[:100, :100]
    pair = (Gaussian2D(200, 45, 50, 4, 4)(xx, yy) + Gaussian2D(150, 58, 52, 3, 3)(xx, yy))
    path = tmp_path / "pair.png"
    Image.fromarray(np.repeat(pair[..., None], 3, axis=2).astype(np.uint8)).save(path)
    result = deblend(path, device="cpu")
    assert result.n_sources == 2
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    for truth in ([45, 99 - 50], [58, 99 - 52]):   # rows bottom-up, as FITS
        assert np.min(np.hypot(*(found - truth).T)) < 1.0
    assert any("noise: 0.001132" in line for line in result.history)   # 1/255/sqrt(12)


def test_default_model_two_gaussian_fluxes():
    """Each Gaussian's flux within 10 % (the two are 18 px apart; -29 % / +11 % before
    the models were made monotonic)."""
    cube, _ = two_gaussians()
    result = Deblender.load(device="cpu")(cube)
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    for (x, y), amp, sx, sy in [((24, 32), 1.0, 3, 3), ((42, 30), 0.6, 3, 2)]:
        j = int(np.argmin(np.hypot(found[:, 0] - x, found[:, 1] - y)))
        true = 3 * amp * 2 * np.pi * sx * sy
        assert result.cutouts[j].sum() == pytest.approx(true, rel=0.10)


def test_demo_runs(tmp_path, capsys):
    from astrodeblend.cli import main

    assert main(["demo", "--output-dir", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "found" in out
    assert (tmp_path / "demo_blend_deblended.fits").is_file()
    assert (tmp_path / "demo_blend_deblended.png").is_file()
    with fits.open(tmp_path / "demo_blend_deblended.fits", checksum=True) as hdul:
        assert hdul[0].header["ADBMODEL"] == "default"
        assert hdul[0].header["NSOURCE"] >= 1


def test_large_image_detection_in_tiles(untrained):
    cube = np.random.default_rng(3).normal(0, 0.01, (3, 300, 300)).astype(np.float32)
    small, _ = two_gaussians(noise=0.0)
    for y, x in [(10, 10), (10, 200), (200, 120)]:
        cube[:, y:y + 64, x:x + 64] += small
    result = untrained(cube)
    assert result.n_sources == 6
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    assert len({(round(x), round(y)) for x, y in found}) == 6


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xfail(reason="at the target's edge: 90.0 % with two symmetric copies of each "
                   "stamp, 89.5 % with one; the shipped model misses some B galaxies and a "
                   "linear image's centre detection needs a data peak", strict=False)
def test_default_model_finds_physical_pairs(galaxy_zoo_dir):
    """Issue 3's detection target on held-out galaxies: both galaxies of physical pairs
    separated by more than 8 px found (within 4 px) in >= 90 % of 200 scenes (photutils
    alone: ~61 %, see tests/test_detect.py)."""
    from astrodeblend.blend import blend_physical
    from astrodeblend.data import split_galaxies
    from astrodeblend.io import read_image
    from astrodeblend.metrics import match_sources

    files = {int(p.stem): p for p in galaxy_zoo_dir.glob("*.jpg")}
    test_ids = sorted(split_galaxies(list(files))["test"])
    deblender = Deblender.load(device="cpu")
    rng = np.random.default_rng(321)
    found = total = seed = 0
    while total < 200:
        a, b = rng.choice(test_ids, 2, replace=False)
        scene = blend_physical([read_image(files[a]), read_image(files[b])], seed=seed)
        seed += 1
        if np.hypot(*(scene.centers[0] - scene.centers[1])) <= 8:
            continue
        total += 1
        result = deblender(scene.blend)
        xy = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
        found += len(match_sources(scene.centers, xy, max_distance=4.0).pairs) == 2
    print(f"both galaxies found in {found}/{total} held-out physical pairs")
    assert found / total >= 0.90


def test_background_given_by_caller(untrained):
    cube, _ = two_gaussians(noise=0.0)
    cube = cube + 0.5
    cube += np.random.default_rng(4).normal(0, 0.01, cube.shape).astype(np.float32)
    auto = untrained(cube)
    untrained.background = np.array([0.5])
    given = untrained(cube)
    sky = given.residual.data[:, outside_footprints(given)]
    assert sky.mean() == pytest.approx(0.5, abs=2e-3)
    assert any("given by the caller" in line for line in given.history)
    assert given.sources.sum() == pytest.approx(auto.sources.sum(), rel=0.05)
    with pytest.raises(InvalidInputError, match="background"):
        Deblender(untrained.generator, None, untrained.config, device=torch.device("cpu"),
                  background="sky")


def sersic_scene(shape, centers, *, amplitudes, colours, noise=1.0, sky=3.0, seed=0, r_eff=3.0):
    """Noiseless Sersic components (n=1) and their noisy, sky-added blend."""
    from astropy.modeling.models import Sersic2D
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[:shape[0], :shape[1]]
    comps = []
    for (x, y), amp, colour in zip(centers, amplitudes, colours, strict=True):
        plane = gaussian_filter(Sersic2D(1.0, r_eff, 1.0, x, y, 0.2, 0.7)(xx, yy), 1.0)
        plane *= amp / plane.max()
        comps.append(np.asarray(colour, dtype=float)[:, None, None] * plane[None])
    comps = np.asarray(comps, dtype=np.float32)
    rng = np.random.default_rng(seed)
    blend = comps.sum(0) + sky + rng.normal(0, noise, comps.shape[1:])
    return blend.astype(np.float32), comps


def test_default_model_isolated_galaxy_off_centre():
    """One galaxy away from the frame centre: one source there, none at the centre,
    flux within 8 % (sky estimated and subtracted; the noise in the footprint
    alone is 2-3 %)."""
    deblender = Deblender.load(device="cpu")
    for k, (x, y) in enumerate([(20.0, 70.0), (75.0, 30.0), (60.0, 62.0)]):
        blend, comps = sersic_scene((96, 96), [(x, y)], amplitudes=[40], colours=[[1, 1, 1]],
                                    seed=k)
        result = deblender(blend)
        assert result.n_sources == 1
        assert np.hypot(result.catalog["x_centroid"][0] - x,
                        result.catalog["y_centroid"][0] - y) < 2
        assert result.cutouts[0].sum() == pytest.approx(comps.sum(), rel=0.08)


def test_default_model_pure_noise_has_no_source():
    noise = np.random.default_rng(9).normal(5, 1, (3, 96, 96)).astype(np.float32)
    assert Deblender.load(device="cpu")(noise).n_sources == 0


@pytest.mark.parametrize("n_bands", [3, 5])
def test_default_model_keeps_colours(n_bands):
    """A blue and a red galaxy 10 px apart: each band's flux within 12 % (separable
    models; 16 % without)."""
    blue = np.linspace(1.5, 0.5, n_bands)
    centers = [(36.0, 40.0), (46.0, 40.0)]
    blend, comps = sersic_scene((80, 80), centers, amplitudes=[60, 60],
                                colours=[blue, blue[::-1]], seed=3)
    result = Deblender.load(device="cpu")(blend)
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    for t, (x, y) in enumerate(centers):
        j = int(np.argmin(np.hypot(found[:, 0] - x, found[:, 1] - y)))
        np.testing.assert_allclose(result.cutouts[j].sum(axis=(1, 2)),
                                   comps[t].sum(axis=(1, 2)), rtol=0.12)


def test_default_model_nan_block():
    """A 10x20 NaN block on a galaxy's core: one source near its centre (the block's
    Gaussian fill sagged in the middle and the galaxy came back as two sources, one on
    each side), no source takes the block, totals stay positive."""
    blend, comps = sersic_scene((96, 96), [(48.0, 40.0)], amplitudes=[40], colours=[[1, 1, 1]],
                                r_eff=8.0)
    blend[:, 35:45, 40:60] = np.nan
    result = Deblender.load(device="cpu")(blend)
    assert result.n_sources == 1
    assert np.hypot(result.catalog["x_centroid"][0] - 48.0,
                    result.catalog["y_centroid"][0] - 40.0) < 3
    assert all(np.isfinite(c).all() for c in result.cutouts)
    assert (result.sources[:, :, 35:45, 40:60] == 0).all()
    assert np.isnan(result.residual.data[:, 35:45, 40:60]).all()
    assert all(c.sum(axis=(1, 2)).min() > 0 for c in result.cutouts)


@pytest.mark.parametrize("amplitude", [3, 25])
def test_default_model_masked_column_through_a_galaxy(amplitude):
    """A masked column through an isolated galaxy's centre (a bad CCD column): one
    source, where the column cut it into two groups (bright: a source on each side;
    faint: two halves too faint to be found)."""
    blend, comps = sersic_scene((96, 96), [(47.0, 52.0)], amplitudes=[amplitude],
                                colours=[[1, 1, 1]], r_eff=6.0, seed=4)
    mask = np.zeros(blend.shape[1:], bool)
    mask[:, 47] = True
    result = Deblender.load(device="cpu")(GalaxyImage(blend, mask=mask))
    assert result.n_sources == 1
    assert result.catalog["x_centroid"][0] == pytest.approx(47.0, abs=2)
    assert (result.sources[:, :, :, 47] == 0).all()


def test_inpainted_block_is_as_significant_as_its_border():
    """Inside a masked block (inpainted for the networks) the aperture S/N is capped
    by the largest on its unmasked border: a bump continued from the sky's noise
    into a block on empty sky is no detection (two spurious sources in 60 real
    survey scenes with defects), a galaxy whose core the block covers keeps the S/N
    of its light around the block."""
    from astrodeblend.pipeline import _cap_in_blocks

    yy, xx = np.mgrid[:64, :64]
    sky = np.random.default_rng(0).normal(0, 1, (64, 64))
    blocks = np.zeros((64, 64), bool)
    blocks[10:16, 10:20] = True                                   # on empty sky
    blocks[40:46, 36:46] = True                                   # on a galaxy's core
    galaxy = 40 * np.exp(-((xx - 41) ** 2 + (yy - 43) ** 2) / 30)
    aperture = sky + galaxy
    aperture[12, 14] = 9.0                                        # the inpainted bump
    capped = _cap_in_blocks(aperture, blocks)
    assert capped[12, 14] < 5 and capped[12, 14] == capped[10:16, 10:20].max()
    assert capped[43, 41] > 20 and np.array_equal(capped[~blocks], aperture[~blocks])
    assert _cap_in_blocks(aperture, np.zeros((64, 64), bool)) is aperture


def test_default_model_band_without_data():
    """One band all NaN (a filter that is missing): the others are deblended as with
    that band's data, the band gives 0 in every source and NaN in the residual."""
    blend, comps = sersic_scene((96, 96), [(40.0, 44.0), (56.0, 50.0)], amplitudes=[40, 25],
                                colours=[[1, 1, 1], [1, 1, 1]], seed=2)
    missing = blend.copy()
    missing[1] = np.nan
    deblender = Deblender.load(device="cpu")
    result, reference = deblender(missing), deblender(blend)
    assert result.n_sources == reference.n_sources == 2
    assert (result.sources[:, 1] == 0).all() and np.isnan(result.residual.data[1]).all()
    truth = comps.sum(axis=(2, 3))                              # (source, band)
    flux = result.sources.sum(axis=(2, 3))
    order = [int(np.argmin(np.hypot(result.catalog["x_centroid"] - x,
                                    result.catalog["y_centroid"] - y)))
             for x, y in ((40.0, 44.0), (56.0, 50.0))]
    np.testing.assert_allclose(flux[order][:, [0, 2]], truth[:, [0, 2]], rtol=0.1)


def test_default_model_zero_filled_region_is_no_data():
    """A drizzle edge: a third of the frame set to exactly 0 is masked like NaN (the
    same sources as with NaN there, zero in every source, NaN in the residual, marked
    in the mask); taken as sky it turned the noise into dozens of sources."""
    blend, _ = sersic_scene((96, 96), [(60.0, 40.0), (70.0, 62.0)], amplitudes=[40, 25],
                            colours=[[1, 1, 1], [1, 1, 1]], seed=4)
    zero, nan = blend.copy(), blend.copy()
    zero[:, :, :32] = 0.0
    nan[:, :, :32] = np.nan
    deblender = Deblender.load(device="cpu")
    result, reference = deblender(zero), deblender(nan)
    assert result.n_sources == reference.n_sources == 2
    np.testing.assert_allclose(result.catalog["flux"], reference.catalog["flux"], rtol=1e-4)
    assert (result.sources[:, :, :, :32] == 0).all()
    assert np.isnan(result.residual.data[:, :, :32]).all()
    assert result.blend.mask[:, :, :32].all() and not result.blend.mask[:, :, 32:].any()
    assert any("no data" in line for line in result.history)


def test_default_model_noise_map_of_a_frame_of_two_depths():
    """Half the frame three times as noisy (a mosaic's shallow edge): with the input's
    uncertainty each pixel's S/N uses its own noise and that half's noise gives no
    source; with one noise level for the frame it gave several."""
    from astropy.nddata import StdDevUncertainty

    from astrodeblend import GalaxyImage

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:128, :256]
    sigma = np.where(xx < 128, 1.0, 3.0)
    centres = [(40.0, 40.0), (90.0, 90.0), (170.0, 50.0), (220.0, 95.0)]
    truth = sum(Sersic2D(20 * (3 if x > 128 else 1), 3, 1, x, y)(xx, yy) for x, y in centres)
    data = (truth + 5 + rng.normal(0, 1, (1, 128, 256)) * sigma).astype(np.float32)
    deblender = Deblender.load(device="cpu")
    uncertainty = StdDevUncertainty(np.broadcast_to(sigma, (1, 128, 256)).astype(np.float32))
    result = deblender(GalaxyImage(data, uncertainty=uncertainty))
    plain = deblender(GalaxyImage(data))
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    assert all(np.hypot(*(found - c).T).min() < 3 for c in centres)
    assert result.n_sources == len(centres) < plain.n_sources
    assert any("per pixel from the input's uncertainty" in line for line in result.history)


def test_all_masked_is_an_error(untrained):
    with pytest.raises(InvalidInputError, match="finite"):
        untrained(np.full((3, 20, 20), np.nan, dtype=np.float32))
    image = GalaxyImage(np.ones((3, 20, 20), dtype=np.float32), mask=np.ones((20, 20), bool))
    with pytest.raises(InvalidInputError, match="masked"):
        untrained(image)


def test_deblend_many_matches_one_by_one():
    """Images deblended together give each image's own result (batched networks)."""
    deblender = Deblender.load(device="cpu")
    scenes = [sersic_scene((96, 96), [(30.0 + 8 * k, 40.0), (55.0, 60.0 - 5 * k)],
                           amplitudes=[40, 25], colours=[[1, 1, 1], [1, 1, 1]], seed=k)[0]
              for k in range(3)]
    scenes.append(two_gaussians()[0])
    together = deblender.deblend_many(scenes)
    for scene, result in zip(scenes, together, strict=True):
        alone = deblender(scene)
        assert result.n_sources == alone.n_sources >= 1
        for a, b in zip(result.cutouts, alone.cutouts, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_deblend_many_keeps_each_failure_in_place(untrained):
    good = two_gaussians()[0]
    bad = np.full((3, 20, 20), np.nan, dtype=np.float32)
    results = untrained.deblend_many([good, bad, good], return_exceptions=True)
    assert isinstance(results[1], InvalidInputError)
    assert results[0].n_sources == results[2].n_sources == 2
    with pytest.raises(InvalidInputError, match="finite"):
        untrained.deblend_many([good, bad])
    assert untrained.deblend_many([]) == []


def _gauss_model(shape, x, y, amp, sx, sy, group=1):
    from astrodeblend.footprints import SourceModel

    yy, xx = np.mgrid[:shape[0], :shape[1]]
    plane = Gaussian2D(amp, x, y, sx, sy)(xx, yy).astype(np.float32)
    return SourceModel((x, y), (0, shape[0], 0, shape[1]), plane[None].copy(), group=group)


def test_a_detection_the_brighter_model_explains_is_dropped():
    """confirm: the tip of an elongated galaxy (its light in the galaxy's model)
    goes; a faint companion the galaxy's model leaves in the residual stays."""
    from astrodeblend._sources import _needed

    shape, rng = (64, 64), np.random.default_rng(4)
    galaxy = _gauss_model(shape, 30.0, 32.0, 50.0, 8.0, 2.5)
    tip = _gauss_model(shape, 42.0, 32.0, 8.0, 2.5, 2.0)
    noise = rng.normal(0, 1.0, (1, *shape)).astype(np.float32)
    signal = galaxy.model + noise
    aperture = np.full(shape, 50.0)            # data aperture S/N, high on the galaxy
    kept = _needed([galaxy, tip], signal, [1.0], aperture, 5.0)
    assert [m.center for m in kept] == [galaxy.center]

    companion = _gauss_model(shape, 44.0, 36.0, 12.0, 1.5, 1.5)
    signal = galaxy.model + companion.model + noise
    kept = _needed([galaxy, companion], signal, [1.0], aperture, 5.0)
    assert [m.center for m in kept] == [galaxy.center, companion.center]
    # sources of different groups are never compared
    lone = _gauss_model(shape, 42.0, 32.0, 8.0, 2.5, 2.0, group=2)
    assert len(_needed([galaxy, lone], galaxy.model + noise, [1.0], aperture, 5.0)) == 2
    # display models carry the sky level: taken off for the test; groups
    # left out of ``groups`` are not tested
    signal = galaxy.model + noise
    lifted = [type(m)(m.center, m.box, m.model + 3.0, group=m.group) for m in (galaxy, tip)]
    kept = _needed(lifted, signal, [1.0], aperture, 5.0, sky=[3.0])
    assert [m.center for m in kept] == [galaxy.center]
    assert len(_needed([galaxy, tip], signal, [1.0], aperture, 5.0, groups=set())) == 2


def test_aperture_noise_from_differences_ignores_smooth_outskirts():
    """_significance: on white noise every estimate gives aperture S/N of
    unit spread; beside a bright galaxy's smooth outskirts (outside the
    sources' mask) the clipped spread of the apertures counts that light as
    noise and halves a star's S/N, differences of apertures 3 px apart do
    not."""
    from astrodeblend.pipeline import _significance

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:96, :96]
    for how in ("white", "differences", "clipped", "tail"):
        pure = _significance(rng.normal(0, 1, (96, 96)).astype(np.float32),
                             np.zeros((96, 96), bool), noise=how)
        assert np.std(pure) == pytest.approx(1.0, abs=0.08)
    wing = 6.0 * np.exp(-np.hypot(xx - 10, yy - 48) / 25.0)
    star = 10.0 * np.exp(-((xx - 70) ** 2 + (yy - 48) ** 2) / 2.0)
    snr = (wing + star + rng.normal(0, 1, (96, 96))).astype(np.float32)
    sources = (np.hypot(xx - 10, yy - 48) < 20) | (np.hypot(xx - 70, yy - 48) < 5)
    white = _significance(snr, sources, noise="white")[48, 70]
    assert _significance(snr, sources)[48, 70] == pytest.approx(white, rel=0.1)
    assert _significance(snr, sources, noise="clipped")[48, 70] < 0.6 * white


def test_wider_apertures_give_a_resolved_faint_source_its_significance():
    """_significance(size=k): unit spread on pure noise for every noise
    estimate; a faint resolved source (Gaussian of 5 px, 1 sigma per
    pixel at its peak) stays below min_snr 5 in 3x3 apertures and reaches
    it in 7x7 (3 and 6 sigma expected), mostly.  _wide_significance: every
    group gets 5x5 and 7x7 apertures, a group stamped at three times the
    working size also 9x9, each over its bounding box."""
    from astrodeblend.pipeline import _significance, _wide_significance

    rng = np.random.default_rng(8)
    nothing = np.zeros((128, 128), bool)
    for how in ("white", "differences", "clipped"):
        pure = _significance(rng.normal(0, 1, (128, 128)).astype(np.float32), nothing,
                             noise=how, size=7)
        assert np.std(pure) == pytest.approx(1.0, abs=0.15), how
    yy, xx = np.mgrid[:128, :128]
    source = 1.0 * np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 5.0 ** 2))
    narrow, wide = [], []
    for _ in range(20):
        snr = (source + rng.normal(0, 1, (128, 128))).astype(np.float32)
        sources = np.hypot(xx - 64, yy - 64) < 15
        narrow.append(_significance(snr, sources, size=3)[64, 64])
        wide.append(_significance(snr, sources, size=7)[64, 64])
    assert np.mean(narrow) < 4.0 and np.mean(wide) > 5.0
    assert np.mean(np.array(narrow) >= 5.0) < 0.25 < 0.6 < np.mean(np.array(wide) >= 5.0)
    groups = np.zeros((128, 128), int)
    groups[50:79, 40:90] = 1
    groups[100:110, 100:110] = 2
    snr = (source + rng.normal(0, 1, (128, 128))).astype(np.float32)
    planes = _wide_significance(snr, groups, {1: (240, (64, 64)), 2: (80, (104, 104))}, 80,
                                "differences", nothing)
    plane, y0, x0 = planes[1]
    assert plane.shape == (29, 50) and (y0, x0) == (50, 40)
    widest = [_significance(snr, groups > 0, size=k) for k in (5, 7, 9)]
    assert np.array_equal(plane, np.maximum.reduce(widest)[50:79, 40:90])
    assert np.array_equal(planes[2][0], np.maximum(widest[0], widest[1])[100:110, 100:110])


def test_detections_off_a_resolved_peak_move_onto_it():
    """_snap_to_peaks: a detection on the data's peak stays where it is; two
    on either side of it, 4 px off, become one at the peak; one on the
    smooth body 12 px from any peak goes."""
    from astrodeblend.pipeline import _snap_to_peaks

    yy, xx = np.mgrid[:96, :96]
    image = np.exp(-((xx - 48) ** 2 + (yy - 40) ** 2) / (2 * 8.0 ** 2)).astype(np.float32)
    assert _snap_to_peaks([(48.0, 40.0)], image, 2.0, 3.0) == [(48.0, 40.0)]
    assert _snap_to_peaks([(44.0, 40.0), (52.0, 40.0)], image, 2.0, 3.0) == [(48.0, 40.0)]
    assert _snap_to_peaks([(48.0, 40.0), (60.0, 40.0)], image, 2.0, 3.0) == [(48.0, 40.0)]
    assert _snap_to_peaks([(60.0, 40.0)], image, 2.0, 3.0) == []


def test_display_aperture_noise_follows_the_upper_tail():
    """_significance "tail" (display images): on noise clipped at black, as a
    JPEG's sky, the apertures' upper tail is wider than their clipped spread,
    and pure noise reaches min_snr 5 with the clipped spread; scaled by the
    tail, their 99th percentile is a Gaussian's 2.33 and none reaches 5."""
    from astrodeblend.pipeline import _significance

    rng = np.random.default_rng(4)
    no_sources = np.zeros((160, 160), bool)
    for _ in range(3):
        sky = np.clip(rng.normal(0.0, 1.0, (160, 160)), 0, None).astype(np.float32)
        clipped = _significance(sky, no_sources, noise="clipped")
        tail = _significance(sky, no_sources, noise="tail")
        clipped, tail = clipped - np.median(clipped), tail - np.median(tail)
        assert (clipped > 5).any()
        assert np.quantile(tail, 0.99) == pytest.approx(2.326, abs=0.01)
        assert tail.max() < 5


@pytest.mark.parametrize("size, tested", [(128, False), (424, True)])
def test_display_confirmation_tests_only_groups_seen_far_downsampled(monkeypatch, size, tested):
    """Display images: the confirmation of detections (`_needed`) tests a galaxy
    seen on a stamp downsampled by more than twice (a whole 424 px JPG's galaxy,
    whose arms pass for peaks), not one near the working size (the seed paper's
    128 px scenes, where it dropped companions)."""
    import astrodeblend.pipeline as pipeline

    yy, xx = np.mgrid[:size, :size]
    r_eff = 12 if size == 128 else 30
    light = Sersic2D(1, r_eff, 1.5, size / 2, size / 2, 0.3, 0.5)(xx, yy)
    rng = np.random.default_rng(0)
    grey = np.clip(np.arcsinh(8 * light / light.max()) / np.arcsinh(8) + 0.03
                   + rng.normal(0, 0.01, light.shape), 0, 1)
    image = GalaxyImage(np.repeat(grey[None], 3, axis=0).astype(np.float32),
                        meta={"ADBDISP": True})
    seen, sides, needed, plan = [], [], pipeline._needed, Deblender._plan

    def spy_needed(models, *args, groups=None, **kwargs):
        seen.append(groups)
        return needed(models, *args, groups=groups, **kwargs)

    def spy_plan(self, groups, shape):
        plans = plan(self, groups, shape)
        sides.append(plans[int(groups[size // 2, size // 2])][0] / self.size)
        return plans

    monkeypatch.setattr(pipeline, "_needed", spy_needed)
    monkeypatch.setattr(Deblender, "_plan", spy_plan)
    result = Deblender.load(device="cpu")(image)
    assert result.n_sources >= 1 and len(seen) == 1 and len(sides) == 1
    # the galaxy's stamp is larger than the working size either way
    assert (1 < sides[0] <= 2) if size == 128 else sides[0] > 2, sides
    assert bool(seen[0]) is tested


@pytest.mark.parametrize("size", [64, 128])
def test_display_sky_clipped_at_black_gives_no_noise_sources(size):
    """Two galaxies on a display sky whose lower half is black (8-bit levels, as a
    dark JPG): the clipped spread of the sky's levels was a fraction of their
    noise and their median sat below the sky's mean, and 14-26 sources came back;
    with both measured for a clipped sky (estimate_sky), the two galaxies alone."""
    yy, xx = np.mgrid[:size, :size]
    x0, y0 = size / 2 - 2, size / 2 + 1
    light = (Sersic2D(1, 5, 1.5, x0, y0, 0.3, 0.5)(xx, yy)
             + Sersic2D(0.6, 4, 1, x0 + 12, y0 - 5, 0.2, 1.5)(xx, yy))
    deblender = Deblender.load(device="cpu")
    for seed in range(3):
        rng = np.random.default_rng(seed)
        grey = np.clip(np.round(light / light.max() * 255 + rng.normal(0, 2, light.shape)),
                       0, 255)
        assert (grey[:, :12] == 0).mean() > 0.4
        image = GalaxyImage(np.repeat(grey[None] / 255.0, 3, axis=0).astype(np.float32),
                            meta={"ADBDISP": True})
        result = deblender(image)
        assert result.n_sources == 2
        found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
        for centre in ([x0, y0], [x0 + 12, y0 - 5]):
            assert np.hypot(*(found - centre).T).min() < 1.5


def test_two_centres_on_one_galaxy_are_merged_within_reach():
    """_merge_duplicates: two centres 5.5 px apart whose models are the same
    galaxy (half-light radius about 4 px) are merged with ``reach=2`` (the
    photutils candidates the pipeline adds), not with the default reach of one
    half-light radius; two different galaxies at that distance never are; with
    ``where`` only where the fainter centre lies on it (the pipeline's masked
    pixels)."""
    from astrodeblend._sources import _half_light_radius, _merge_duplicates

    shape = (64, 64)
    one = _gauss_model(shape, 30.0, 32.0, 10.0, 3.5, 3.5)
    other = _gauss_model(shape, 35.5, 32.0, 9.5, 3.5, 3.5)
    other.model = one.model * 0.95  # the generator returns the same galaxy
    assert 3.0 < _half_light_radius(one) < 5.5
    assert len(_merge_duplicates([one, other])) == 2
    assert [m.center for m in _merge_duplicates([one, other], reach=2.0)] == [one.center]
    apart = _gauss_model(shape, 35.5, 32.0, 9.5, 1.5, 1.5)
    assert len(_merge_duplicates([one, apart], reach=2.0)) == 2
    # where=: only a source whose centre is on a true pixel (a masked block) can go
    block = np.zeros(shape, bool)
    block[28:36, 34:40] = True  # under the fainter centre (35.5, 32)
    assert [m.center for m in _merge_duplicates([one, other], reach=2.0, where=block)] == [
        one.center]
    assert len(_merge_duplicates([one, other], reach=2.0, where=~block)) == 2
    assert len(_merge_duplicates([one, other], reach=2.0,
                                 where=np.zeros(shape, bool))) == 2


def test_halves_of_one_galaxy_are_joined_and_a_pair_is_not():
    """_join_halves: two sources whose models leave the middle of an elongated
    galaxy unexplained (the detector's two centres on one galaxy) give way to
    the one source between them, which fits far better; two galaxies, each
    fitted by its own model, keep their two sources against a single broad
    model at their midpoint.  _close_pairs pairs sources of one group within
    two half-light radii only."""
    from astrodeblend._sources import _close_pairs, _join_halves
    from astrodeblend.footprints import grow_footprint

    shape, rng = (64, 64), np.random.default_rng(6)
    groups = np.ones(shape, dtype=np.int32)
    noise = [1.0]

    def footprinted(model):
        grow_footprint(model, groups, noise)
        return model

    galaxy = _gauss_model(shape, 32.0, 32.0, 400.0, 8.0, 2.5)
    data = galaxy.model + rng.normal(0, 1.0, (1, *shape)).astype(np.float32)
    bad = np.zeros(data.shape, dtype=bool)
    halves = [footprinted(_gauss_model(shape, x, 32.0, 400.0, 3.5, 2.5)) for x in (28.5, 35.5)]
    single = footprinted(_gauss_model(shape, 32.0, 32.0, 400.0, 8.0, 2.5))
    assert _close_pairs(halves) == [(0, 1)]
    joined, n = _join_halves(halves, [(0, 1)], [single], data, bad, noise)
    assert n == 1 and [m.center for m in joined] == [single.center]

    two = [_gauss_model(shape, x, 32.0, 400.0, 2.5, 2.5) for x in (28.5, 35.5)]
    data = (two[0].model + two[1].model
            + rng.normal(0, 1.0, (1, *shape)).astype(np.float32))
    two = [footprinted(m) for m in two]
    broad = footprinted(_gauss_model(shape, 32.0, 32.0, 400.0, 6.0, 2.5))
    kept, n = _join_halves(two, [(0, 1)], [broad], data, bad, noise)
    assert n == 0 and [m.center for m in kept] == [m.center for m in two]
    # other groups, or farther than two half-light radii: not tested
    assert _close_pairs([two[0], _gauss_model(shape, 35.5, 32.0, 400.0, 2.5, 2.5,
                                              group=2)]) == []
    assert _close_pairs([two[0], _gauss_model(shape, 50.0, 32.0, 400.0, 2.5, 2.5)]) == []


def test_default_model_disk_with_two_knots_is_one_source():
    """A disk galaxy with two bright knots 9 px apart, one on each side of its
    centre: the detector puts a centre on each knot and the generator
    extracts a half for each; the generator's one source between them fits
    the galaxy far better, so one source is returned (two before)."""
    yy, xx = np.mgrid[:64, :64]
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, np.pi)
    cx, cy = 32 + rng.uniform(-2, 2), 32 + rng.uniform(-2, 2)
    dx, dy = 4.5 * np.cos(angle), 4.5 * np.sin(angle)
    plane = (Sersic2D(1.0, 9, 1, cx, cy, 0.5, angle)(xx, yy)
             + Gaussian2D(3.0, cx - dx, cy - dy, 2.5, 2.5)(xx, yy)
             + Gaussian2D(3.0, cx + dx, cy + dy, 2.5, 2.5)(xx, yy))
    data = (plane + rng.normal(0, plane.max() / 100, plane.shape)).astype(np.float32)[None]
    result = Deblender.load(device="cpu")(data)
    assert result.n_sources == 1
    assert np.hypot(result.catalog["x_centroid"][0] - cx,
                    result.catalog["y_centroid"][0] - cy) < 6
    assert any(line.startswith("joined: 1 pair") for line in result.history)


def test_a_diffuse_companion_stands_out_by_its_whole_light():
    """confirm: a faint extended companion (peak 1.8 sigma per pixel) fills
    the 3x3 aperture's ring with its own light, so the aperture test alone
    would drop it; the matched filter of its model over its footprint keeps
    it.  The same model over the galaxy's own light (which the galaxy's
    model holds) is dropped."""
    from astrodeblend._sources import _model_stands_out, _needed
    from astrodeblend.pipeline import _significance

    shape, rng = (64, 64), np.random.default_rng(8)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    galaxy = _gauss_model(shape, 24.0, 32.0, 40.0, 3.0, 3.0)
    companion = _gauss_model(shape, 42.0, 34.0, 1.8, 5.0, 5.0)
    for m in (galaxy, companion):
        m.footprint = np.hypot(xx - m.center[0], yy - m.center[1]) < 12
    noise = rng.normal(0, 1.0, (1, *shape)).astype(np.float32)
    signal = galaxy.model + companion.model + noise
    aperture = _significance(signal[0], (galaxy.model[0] + companion.model[0]) > 0.3)
    assert aperture[34, 42] > 5.0                      # a detection
    kept = _needed([galaxy, companion], signal, [1.0], aperture, 5.0)
    assert [m.center for m in kept] == [galaxy.center, companion.center]
    # its light, held by the galaxy's model, leaves nothing to stand out
    holder = type(galaxy)(galaxy.center, galaxy.box, galaxy.model + companion.model,
                          group=1, footprint=galaxy.footprint)
    assert not _model_stands_out(companion, [holder], signal, [1.0], aperture, 5.0)
    assert _model_stands_out(companion, [galaxy], signal, [1.0], aperture, 5.0)



def test_a_model_explains_no_star_of_another_group_outside_its_footprint():
    """_unexplained: a galaxy's model that passed a separate star's light
    through (as the generator does over its stamp) explains the star only
    without ``group_map``; with it, the star, in its own group outside the
    galaxy's footprint, is a source of its own.  The star in the galaxy's
    own group stays explained."""
    from astrodeblend._sources import _unexplained

    shape, rng = (64, 64), np.random.default_rng(5)
    galaxy = _gauss_model(shape, 20.0, 32.0, 40.0, 4.0, 3.0)
    star = _gauss_model(shape, 46.0, 32.0, 30.0, 1.2, 1.2, group=2)
    signal = galaxy.model + star.model + rng.normal(0, 1.0, (1, *shape)).astype(np.float32)
    galaxy.model = galaxy.model + star.model  # the star's light passed through
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    galaxy.footprint = np.hypot(xx - 20.0, yy - 32.0) < 14
    groups = np.where(galaxy.footprint, 1, 0)
    groups[np.hypot(xx - 46.0, yy - 32.0) < 5] = 2
    aperture = np.full(shape, 60.0)
    candidate = [(46.0, 32.0, 2)]
    assert _unexplained(candidate, [galaxy], signal, [1.0], aperture, 5.0) == []
    assert _unexplained(candidate, [galaxy], signal, [1.0], aperture, 5.0,
                        group_map=groups) == candidate
    # the same star inside the galaxy's footprint: its model explains it
    galaxy.footprint = np.hypot(xx - 20.0, yy - 32.0) < 30
    assert _unexplained(candidate, [galaxy], signal, [1.0], aperture, 5.0,
                        group_map=groups) == []
    # a group of the galaxy's own smooth wing outside its footprint (a bump of
    # noise on it): the model's monotonic wings still explain it
    wide = _gauss_model(shape, 20.0, 32.0, 40.0, 10.0, 10.0)
    wide.footprint = np.hypot(xx - 20.0, yy - 32.0) < 12
    bump = wide.model[0, 32, 40] * np.exp(-((xx - 40.0) ** 2 + (yy - 32.0) ** 2) / 2.0) * 0.3
    signal = wide.model + bump[None].astype(np.float32)
    groups = np.where(wide.footprint, 1, 0)
    groups[np.hypot(xx - 40.0, yy - 32.0) < 4] = 2
    aperture = np.full(shape, 40.0)
    on_wing = [(40.0, 32.0, 2)]
    assert _unexplained(on_wing, [wide], signal, [1.0], aperture, 5.0, group_map=groups) == []
    wide.model = np.zeros_like(wide.model)  # no model light there: unexplained
    assert _unexplained(on_wing, [wide], signal, [1.0], aperture, 5.0,
                        group_map=groups) == on_wing

def test_votes_of_other_groups_stamps_need_one_of_the_groups_own():
    """_votes: peaks within tol merge; two runs keep a peak; a run given as a tuple
    (another group's stamp) votes, but a peak seen only on other groups' stamps
    is not kept."""
    from astrodeblend.pipeline import _votes

    own = [(10.0, 10.0, 0), (10.5, 10.2, 1)]
    assert _votes(own, tol=2.5) == [(10.25, 10.1)]
    assert _votes(own[:1], tol=2.5) == []
    # one run of its own and one of another group's stamp: kept
    assert _votes([own[0], (10.4, 9.8, (3, 0))], tol=2.5) == [(10.2, 9.9)]
    # other groups' stamps alone, however many: not kept
    assert _votes([(10.0, 10.0, (3, 0)), (10.2, 10.0, (3, 1)), (9.9, 10.1, (4, 0))],
                  tol=2.5) == []
    # the same run twice is one vote; far peaks are separate
    assert _votes([(10.0, 10.0, 0), (10.3, 10.0, 0), (30.0, 30.0, 1)], tol=2.5) == []


def test_detector_peaks_outside_every_group_of_a_display_stamp():
    """_outside_groups: a peak in no group is kept only where all three runs
    agree, its S/N reaches min_snr and no kept centre is near; it takes the
    nearest group's label."""
    from astrodeblend.pipeline import _outside_groups

    groups = np.zeros((80, 80), dtype=np.int32)
    groups[20:30, 20:30] = 1
    groups[50:60, 55:65] = 2
    aperture = np.full((80, 80), 2.0, dtype=np.float32)
    aperture[40:45, 40:45] = 12.0
    aperture[10:13, 70:73] = 12.0
    three = [(42.0, 42.0, 0), (42.5, 41.8, 1), (41.6, 42.3, 2)]
    kept = _outside_groups(three, groups, aperture, [], min_snr=5.0, tol=2.5)
    assert len(kept) == 1
    x, y, label = kept[0]
    assert abs(x - 42.03) < 0.01 and abs(y - 42.03) < 0.01
    assert label == 2  # (42, 42): 13 px to group 2's corner (55, 50), 17 to group 1's
    # two runs only: not kept (a group's peaks need two, these three)
    assert _outside_groups(three[:2], groups, aperture, [], min_snr=5.0, tol=2.5) == []
    # faint: not kept
    faint = [(30.0, 70.0, run) for run in range(3)]
    assert _outside_groups(faint, groups, aperture, [], min_snr=5.0, tol=2.5) == []
    # near a centre already kept: not repeated
    assert _outside_groups(three, groups, aperture, [(43.0, 43.0, 1)], min_snr=5.0,
                           tol=2.5) == []
    # the nearest group, with several peaks at once
    both = three + [(71.0, 11.0, run) for run in range(3)]
    assert sorted(label for _, _, label in _outside_groups(both, groups, aperture, [],
                                                           min_snr=5.0, tol=2.5)) == [2, 2]
    # no group at all: nothing to attach to
    assert _outside_groups(three, np.zeros_like(groups), aperture, [], min_snr=5.0,
                           tol=2.5) == []


def test_second_peak_on_a_galaxy_cut_by_the_edge_is_dropped():
    """_edge_duplicates: on a galaxy whose nucleus lies near the frame's edge,
    a detection on its body that is no peak of the data goes; a companion that
    is a peak of the data, or faint, stays; galaxies away from the edge and
    groups that do not reach it are left alone."""
    from scipy.ndimage import maximum_filter

    from astrodeblend.pipeline import _edge_duplicates

    shape = (96, 96)
    yy, xx = np.mgrid[:shape[0], :shape[1]]

    def planes(*sources):
        snr = sum(Gaussian2D(a, x, y, sx, sy, t)(xx, yy) for a, x, y, sx, sy, t in sources)
        return snr, (snr == maximum_filter(snr, size=5)) & (snr > 3)

    # an elongated galaxy cut by the left edge, its nucleus 4 px in
    aperture, peaks = planes((300.0, 4.0, 40.0, 10.0, 4.0, 0.5))
    body = (11.0, 44.0)                      # on the body, no peak, S/N ~ 190
    assert aperture[44, 11] > 0.15 * aperture[40, 4] and not peaks[42:47, 9:14].any()
    assert _edge_duplicates([(4.0, 40.0), body], aperture, peaks, True) == [(4.0, 40.0)]
    # the same detections in a group that does not reach the edge: kept
    assert len(_edge_duplicates([(4.0, 40.0), body], aperture, peaks, False)) == 2
    # a companion that is a peak of the data stays
    aperture, peaks = planes((300.0, 4.0, 40.0, 10.0, 4.0, 0.5), (80.0, 16.0, 50.0, 1.5, 1.5, 0))
    assert len(_edge_duplicates([(4.0, 40.0), (16.0, 50.0)], aperture, peaks, True)) == 2
    # a faint detection far out on the wing (below the body's S/N) stays
    aperture, peaks = planes((300.0, 4.0, 40.0, 10.0, 4.0, 0.5))
    wing = (24.0, 54.0)
    assert aperture[54, 24] < 0.15 * aperture[40, 4]
    assert len(_edge_duplicates([(4.0, 40.0), wing], aperture, peaks, True)) == 2
    # the same galaxy 30 px in from the edge: not cut, nothing dropped
    aperture, peaks = planes((300.0, 30.0, 40.0, 10.0, 4.0, 0.5))
    assert len(_edge_duplicates([(30.0, 40.0), (37.0, 44.0)], aperture, peaks, True)) == 2


def test_catalog_position_is_the_centroid_of_the_model_core():
    """_model_centre: the light-squared centroid of a source's model, not the
    detector's centre; a display model's sky level and a faint wing do not pull
    it; a model without light keeps the detector's centre."""
    from astrodeblend._sources import _model_centre
    from astrodeblend.footprints import SourceModel

    shape = (64, 64)
    core = _gauss_model(shape, 30.3, 20.6, 10.0, 3.0, 2.0)
    wing = _gauss_model(shape, 40.0, 20.6, 0.5, 6.0, 6.0)  # faint, to one side
    model = SourceModel((33.0, 23.0), core.box, core.model + wing.model, group=1)
    x, y = _model_centre(model)
    assert abs(x - 30.3) < 0.5 and abs(y - 20.6) < 0.1
    lifted = SourceModel(model.center, model.box, model.model + 3.0, group=1)
    assert _model_centre(lifted, sky=[3.0]) == pytest.approx((x, y), abs=1e-3)
    dark = SourceModel((33.0, 23.0), core.box, np.zeros_like(core.model), group=1)
    assert _model_centre(dark) == (33.0, 23.0)


def test_load_takes_the_settings_a_model_was_exported_with(tmp_path):
    """A checkpoint's ``deblender`` entry sets the detector threshold and the
    confirmation; arguments given to load win."""
    from astrodeblend._checkpoint import load_checkpoint, save_checkpoint
    from astrodeblend.weights import default_model_path

    payload = load_checkpoint(default_model_path())
    payload["deblender"] = {"detect_threshold": 0.55, "confirm": True}
    save_checkpoint(tmp_path / "m.pt", payload)
    deblender = Deblender.load(tmp_path / "m.pt", device="cpu")
    assert deblender.detect_threshold == 0.55 and deblender.confirm is True
    deblender = Deblender.load(tmp_path / "m.pt", device="cpu", detect_threshold=0.2,
                               confirm=False)
    assert deblender.detect_threshold == 0.2 and deblender.confirm is False
    blend, _ = sersic_scene((96, 96), [(40.0, 50.0)], amplitudes=[40], colours=[[1, 1, 1]])
    history = " ".join(Deblender.load(tmp_path / "m.pt", device="cpu")(blend).history)
    assert "threshold=0.55" in history and "model explains" in history


def test_separable_models_share_one_shape_and_keep_band_totals():
    """_separate: every band the summed shape times the band's share; the
    totals per band unchanged; a model with no light left alone."""
    from astrodeblend._sources import _separate
    from astrodeblend.footprints import SourceModel

    rng = np.random.default_rng(0)
    planes = rng.uniform(0, 1, (3, 6, 5)).astype(np.float32)
    model = SourceModel((2.0, 3.0), (0, 6, 0, 5), planes.copy())
    _separate(model)
    shape = planes.sum(axis=0)
    np.testing.assert_allclose(model.model.sum(axis=(1, 2)), planes.sum(axis=(1, 2)), rtol=1e-5)
    for band in model.model:
        np.testing.assert_allclose(band / band.sum(), shape / shape.sum(), rtol=1e-5)
    empty = SourceModel((2.0, 3.0), (0, 6, 0, 5), np.zeros((3, 6, 5), np.float32))
    _separate(empty)
    assert not empty.model.any()
    # a band summing below zero (noise) gets no light, not a negative copy of the shape
    planes[2] = -0.1
    model = SourceModel((2.0, 3.0), (0, 6, 0, 5), planes.copy())
    _separate(model)
    assert not model.model[2].any() and (model.model[:2] >= 0).all()


def test_separable_is_the_default_and_recorded():
    blend, _ = sersic_scene((80, 80), [(36.0, 40.0), (46.0, 40.0)], amplitudes=[60, 60],
                            colours=[[1.5, 1.0, 0.5], [0.5, 1.0, 1.5]], seed=3)
    history = " ".join(Deblender.load(device="cpu")(blend).history)
    assert "one shape per source" in history
    history = " ".join(Deblender.load(device="cpu", separable=False)(blend).history)
    assert "one shape per source" not in history


def test_deblending_a_cutout_does_not_import_photutils():
    """The deblend path of a small image labels and splits its groups itself
    (photutils' segmentations, without importing photutils and its 1.3 s)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from astrodeblend.pipeline import Deblender\n"
        "rng = np.random.default_rng(0)\n"
        "yy, xx = np.mgrid[:96, :96]\n"
        "blob = lambda x, y: 50 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 20)\n"
        "data = (blob(40, 50) + blob(52, 47) + rng.normal(0, 1, (3, 96, 96))).astype('f4')\n"
        "result = Deblender.load(device='cpu')(data)\n"
        "assert result.n_sources >= 1\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'photutils'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "[]"


class _Skewed(torch.nn.Module):
    """The untrained generator plus a random convolution: a network with no symmetry.

    Keeps the stamps of each call (``seen``).
    """

    def __init__(self, generator, n_bands):
        super().__init__()
        torch.manual_seed(1)
        self.generator = generator
        self.conv = torch.nn.Conv2d(n_bands, n_bands, 3, padding=1)
        self.seen = []

    def forward(self, x, heat):
        self.seen.append(x.detach().clone())
        return self.generator(x, heat) + 0.05 * self.conv(x)


class _FlipMean(torch.nn.Module):
    """``net`` averaged by hand with its left-right flipped copy."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, heat):
        return (self.net(x, heat) + self.net(x.flip(-1), heat.flip(-1)).flip(-1)) / 2


def test_augment_averages_the_generator_on_flipped_stamps():
    cfg = ModelConfig(generator_channels=8, detector_channels=4, discriminator_channels=4)
    skewed = _Skewed(build_models(cfg)["generator"], cfg.n_bands)
    cube, _ = two_gaussians(noise=0.0)
    image = GalaxyImage(np.clip(cube, 0, 1), meta={"ADBDISP": True})  # values as they come
    cpu = torch.device("cpu")
    by_option = Deblender(skewed, None, cfg, device=cpu, augment=2)(image)
    by_hand = Deblender(_FlipMean(skewed), None, cfg, device=cpu, augment=1)(image)
    plain = Deblender(skewed, None, cfg, device=cpu, augment=1)(image)
    assert by_option.n_sources == by_hand.n_sources == plain.n_sources == 2
    for a, b, c in zip(by_option.sources, by_hand.sources, plain.sources, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert np.abs(a - c).max() > 1e-3  # the copies changed the sources
    # linear images: the same copies (averaged in linear flux)
    skewed.seen.clear()
    Deblender(skewed, None, cfg, device=cpu, augment=4)(GalaxyImage(two_gaussians()[0]))
    stamps = skewed.seen[0]
    assert len(skewed.seen) == 1 and len(stamps) == 4 * 2  # two sources, four copies each
    first = stamps[:2]
    for k, axes in enumerate([(-1,), (-2,), (-2, -1)], start=1):
        torch.testing.assert_close(stamps[2 * k:2 * k + 2], first.flip(axes))


def test_augment_option_is_checked_and_reaches_the_cli(tmp_path):
    from astrodeblend.cli import main
    from astrodeblend.io import read_deblended

    with pytest.raises(InvalidInputError, match="augment must be 1, 2, 4 or 8"):
        Deblender.load(device="cpu", augment=3)
    assert Deblender.load(device="cpu").augment == 2
    cube, _ = two_gaussians()
    path = tmp_path / "pair.fits"
    fits.PrimaryHDU(cube).writeto(path)
    for n in ("1", "4"):
        assert main(["deblend", str(path), "--output-dir", str(tmp_path / n), "--augment", n,
                     "--no-progress"]) == 0
        history = read_deblended(tmp_path / n / "pair_deblended.fits").history
        copies = "1 symmetric copy" if n == "1" else f"{n} symmetric copies"
        assert any(f"generator on {copies} of each" in line for line in history)
    with pytest.raises(SystemExit) as exc:
        main(["deblend", str(path), "--output-dir", str(tmp_path / "x"), "--augment", "3"])
    assert exc.value.code == 2


def test_precision_resolves_by_device_and_cpu(monkeypatch):
    from astrodeblend.utils import resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cuda) == "float16"
    assert resolve_precision("bfloat16", cuda) == "bfloat16"
    assert resolve_precision("float32", cpu) == "float32"
    for avx512, amx, expected in [(False, False, "float32"), (True, False, "bfloat16"),
                                  (False, True, "bfloat16")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512: v,
                            raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert resolve_precision("auto", cpu) == expected
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert resolve_precision("auto", cpu) == "float32"  # a torch without the checks
    with pytest.raises(InvalidInputError, match="'float16' runs only on CUDA"):
        resolve_precision("float16", cpu)
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        resolve_precision("half", cpu)


def test_bfloat16_networks_give_the_float32_sources_within_the_noise(tmp_path):
    """precision='bfloat16' (autocast) runs the networks in bfloat16: the same sources at
    the same positions, pixels within a small fraction of the noise; the CLI option
    reaches the history, and float16 on a CPU is a one-line error."""
    from astrodeblend.cli import main
    from astrodeblend.io import read_deblended

    noise = 0.01
    cube, _ = two_gaussians(noise=noise)
    image = GalaxyImage(cube)
    full = Deblender.load(device="cpu", precision="float32")
    half = Deblender.load(device="cpu", precision="bfloat16")
    assert (full.precision, half.precision) == ("float32", "bfloat16")
    a, b = full(image), half(image)
    assert a.n_sources == b.n_sources == 2
    for column in ("x_centroid", "y_centroid"):
        np.testing.assert_allclose(a.catalog[column], b.catalog[column], atol=0.05)
    for ca, cb in zip(a.cutouts, b.cutouts, strict=True):
        assert ca.shape == cb.shape
        assert np.abs(ca - cb).max() < 0.2 * noise
        assert np.abs(ca.sum() - cb.sum()) < 0.01 * ca.sum()
    assert any("networks in bfloat16" in line for line in b.history)

    path = tmp_path / "pair.fits"
    fits.PrimaryHDU(cube).writeto(path)
    assert main(["deblend", str(path), "--output-dir", str(tmp_path / "f32"),
                 "--precision", "float32", "--no-progress"]) == 0
    history = read_deblended(tmp_path / "f32" / "pair_deblended.fits").history
    assert any("networks in float32" in line for line in history)
    assert main(["deblend", str(path), "--output-dir", str(tmp_path / "f16"), "--device", "cpu",
                 "--precision", "float16", "--no-progress"]) == 2
    assert not (tmp_path / "f16").exists()
    assert main(["deblend", str(path), "--output-dir", str(tmp_path / "seg"),
                 "--method", "segmentation", "--precision", "float32", "--no-progress"]) == 2


def test_halos_option_gives_the_galaxys_outer_light_back(tmp_path):
    """halos (the default; --no-halos): the faint exponential halo a footprint leaves
    out goes to the galaxy; the run history says so."""
    from astrodeblend.cli import main
    from astrodeblend.io import read_deblended

    yy, xx = np.mgrid[:96, :96]
    galaxy = 30 * np.exp(-np.hypot(xx - 47.3, yy - 48.6) / 7)
    rng = np.random.default_rng(5)
    cube = (np.stack([galaxy] * 3) + rng.normal(0, 1, (3, 96, 96))).astype(np.float32)
    truth = 3 * galaxy.sum()
    assert Deblender.load(device="cpu").halos is True
    without = Deblender.load(device="cpu", halos=False)(cube)
    with_halos = Deblender.load(device="cpu")(cube)
    assert without.n_sources == with_halos.n_sources == 1
    lost, kept = (abs(float(r.cutouts[0].sum()) / truth - 1) for r in (without, with_halos))
    assert lost > 0.1 and kept < 0.6 * lost     # 11.5 % of the flux lost, 5.8 % with halos
    assert not any(line.startswith("halos:") for line in without.history)
    assert any(line.startswith("halos:") for line in with_halos.history)
    path = tmp_path / "halo.fits"
    fits.PrimaryHDU(cube).writeto(path)
    for flag, swept in (([], True), (["--no-halos"], False)):
        out = tmp_path / ("out" + "".join(flag))
        assert main(["deblend", str(path), "--output-dir", str(out), "--no-progress",
                     *flag]) == 0
        written = read_deblended(out / "halo_deblended.fits")
        assert any(line.startswith("halos:") for line in written.history) is swept
    with pytest.raises(InvalidInputError, match="halos must be True or False"):
        from astrodeblend.batch import deblend_files

        deblend_files(path, tmp_path / "bad", halos="yes")
