"""Tests of sky estimation and detection (astrodeblend.detect)."""

import warnings

import numpy as np
import pytest
from astropy.modeling.models import Sersic2D
from astropy.wcs import WCS

from astrodeblend import GalaxyImage, InvalidInputError
from astrodeblend.detect import (
    CATALOG_COLUMNS,
    _background_2d,
    _clipped_stats,
    _difference_noise,
    _label_sources,
    _multithreshold,
    _zoom_mesh,
    background_and_noise,
    detection_image,
    estimate_sky,
    find_centers,
    find_groups,
    find_no_data,
    split_group,
)


def two_galaxies(n_bands=3, size=96, noise=0.01, seed=0, centres=((30.3, 40.7), (66.8, 52.2))):
    yy, xx = np.mgrid[:size, :size]
    plane = np.zeros((size, size))
    for x, y in centres:
        plane += Sersic2D(amplitude=1.0, r_eff=4.0, n=1.0, x_0=x, y_0=y, ellip=0.2,
                          theta=0.5)(xx, yy)
    rng = np.random.default_rng(seed)
    data = np.linspace(0.7, 1.3, n_bands)[:, None, None] * plane[None]
    return (data + rng.normal(0, noise, data.shape) + 0.1).astype(np.float32)


@pytest.mark.parametrize("width", [1, 3])
def test_a_masked_column_does_not_cut_a_group(width):
    """A masked column through a galaxy (its pixels filled from their neighbours,
    as the pipeline does) leaves one group; left out (bridge=0) it cuts it in two.
    A masked block marked ``filled`` (the pipeline inpaints it) joins the group
    whole; not marked, its interior beyond ``bridge`` stays out of every group."""
    yy, xx = np.mgrid[:64, :64]
    snr = 40 * np.exp(-((xx - 32) ** 2 / 60 + (yy - 30) ** 2 / 30))
    snr += np.random.default_rng(2).normal(0, 1, snr.shape)
    bad = np.zeros(snr.shape, bool)
    bad[:, 31:31 + width] = True
    segmap, _ = find_groups(snr, bad, n_sigma=3.0, n_pixels=10)
    assert segmap.max() == 1 and segmap[30, 32] == 1
    cut, _ = find_groups(snr, bad, n_sigma=3.0, n_pixels=10, bridge=0)
    assert cut.max() == 2 and (cut[bad] == 0).all()
    block = np.zeros(snr.shape, bool)
    block[24:38, 10:54] = True
    snr_filled = np.where(block, 40 * np.exp(-((xx - 32) ** 2 / 60)), snr)
    segmap, _ = find_groups(snr_filled, block, n_sigma=3.0, n_pixels=10, filled=block)
    assert segmap.max() == 1 and segmap[30, 32] == 1
    segmap, _ = find_groups(snr_filled, block, n_sigma=3.0, n_pixels=10)
    assert (segmap[26:36, 12:52] == 0).all() and segmap[23, 32] > 0 and segmap[24, 32] > 0


def test_background_and_noise_per_band_ignores_masked_pixels():
    rng = np.random.default_rng(1)
    data = rng.normal([[[1.0]], [[2.0]]], [[[0.5]], [[0.1]]], size=(2, 120, 120))
    mask = np.zeros(data.shape, bool)
    data[:, :20] = 1e6
    mask[:, :20] = True
    background, noise = background_and_noise(GalaxyImage(data, mask=mask))
    np.testing.assert_allclose(background, [1.0, 2.0], atol=0.02)
    np.testing.assert_allclose(noise, [0.5, 0.1], rtol=0.05)
    # large images are sub-sampled to about max_pixels: same answer
    big = rng.normal(3.0, 1.0, size=(1, 600, 600))
    np.testing.assert_allclose(background_and_noise(big)[1],
                               background_and_noise(big, max_pixels=None)[1], rtol=0.02)


@pytest.mark.parametrize("sigma, maxiters", [(3.0, 5), (3.0, 10), (2.0, 3)])
def test_clipped_stats_match_astropy(sigma, maxiters):
    from astropy.stats import sigma_clipped_stats

    rng = np.random.default_rng(4)
    data = rng.normal([[[1.0]], [[-3.0]], [[0.0]]], 0.5, size=(3, 61, 47)).astype(np.float32)
    data[0, :20, :30] += rng.exponential(4.0, size=(20, 30))  # a source to clip
    data[1, :5] = np.nan  # ignored
    data[2] = 2.5  # no spread: every pixel kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, median, std = sigma_clipped_stats(data, axis=(1, 2), sigma=sigma, maxiters=maxiters)
    ours = _clipped_stats(data, sigma=sigma, maxiters=maxiters)
    np.testing.assert_allclose(ours[0], median, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours[1], std, rtol=1e-5, atol=1e-6)
    assert ours[0][0] < 1.2  # the source is clipped, not averaged in
    empty = _clipped_stats(np.full((1, 4, 4), np.nan))
    assert np.isnan(empty[0][0]) and np.isnan(empty[1][0])


def test_clipped_stats_of_many_planes_are_each_planes_own():
    """Planes are sorted a block at a time (NaN and infinities left out, a plane of
    nothing finite NaN): every plane's statistics are those it has alone."""
    rng = np.random.default_rng(8)
    planes = rng.normal(0, 1, (150, 4096)).astype(np.float32)  # more than one block
    planes[::7, ::5] = np.nan
    planes[3, :100] = np.inf
    planes[4, 50:60] = -np.inf
    planes[9] = np.nan
    planes[11, 7] = 40.0  # an outlier to clip
    median, std, kept = _clipped_stats(planes, sigma=3.0, maxiters=10, counts=True)
    for i in (0, 3, 4, 9, 11, 77, 149):
        alone = _clipped_stats(planes[i:i + 1], sigma=3.0, maxiters=10, counts=True)
        np.testing.assert_array_equal([median[i], std[i], kept[i]],
                                      [alone[0][0], alone[1][0], alone[2][0]])
    assert np.isnan(median[9]) and kept[9] == 0
    assert kept[11] < np.isfinite(planes[11]).sum()  # the outlier clipped
    assert np.isfinite(median[[0, 3, 4, 11]]).all()


def test_labelling_and_multithreshold_split_match_photutils():
    """_label_sources and _multithreshold give photutils' detect_sources and
    deblend_sources segmentations, pixel for pixel (plateaus and masks too)."""
    from photutils.segmentation import SegmentationImage, deblend_sources, detect_sources
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    n_split = 0
    for trial in range(40):
        h, w = rng.integers(20, 70, 2)
        yy, xx = np.mgrid[:h, :w]
        image = rng.normal(0, 1, (h, w))
        for _ in range(rng.integers(1, 5)):
            image += rng.uniform(3, 60) * np.exp(
                -((xx - rng.uniform(0, w)) ** 2 + (yy - rng.uniform(0, h)) ** 2)
                / (2 * rng.uniform(1, 5) ** 2))
        image = gaussian_filter(image, 1.0).astype(np.float32)
        if trial % 4 == 0:
            image = np.round(image)  # plateaus
        mask = rng.random((h, w)) < 0.02 if trial % 3 == 0 else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            segm = detect_sources(image, 0.8, 8, mask=mask)
        labels, n = _label_sources(image, 0.8, 8, mask)
        if segm is None:
            assert n == 0
            continue
        segm.relabel_consecutive()
        np.testing.assert_array_equal(labels, segm.data)
        for label in range(1, n + 1):
            inside = labels == label
            if inside.sum() < 16:
                continue
            data = np.where(inside, image, 0).astype(np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = deblend_sources(data, SegmentationImage(inside.astype(np.int32)), 8,
                                      n_levels=32, contrast=0.005, progress_bar=False).data
            ours = _multithreshold(data, inside, 8, 32, 0.005)
            ours = inside.astype(np.int32) if ours is None else ours
            ref_labels = np.unique(ref[ref > 0])
            assert len(ref_labels) == ours.max()
            for k, ref_label in enumerate(ref_labels, start=1):
                np.testing.assert_array_equal(ours == k, ref == ref_label)
            n_split += len(ref_labels) > 1
    assert n_split >= 10  # the splitting is exercised, not only whole sources


def test_split_group_in_a_given_box_is_the_same():
    """split_group with each group's box from find_objects (one pass over the frame, as the
    pipeline gives it) returns the peaks it finds from the segmentation map alone."""
    from scipy.ndimage import find_objects, gaussian_filter

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:120, :160]
    image = rng.normal(0, 1, yy.shape)
    for _ in range(14):
        image += rng.uniform(5, 60) * np.exp(-((xx - rng.uniform(0, 160)) ** 2
                                              + (yy - rng.uniform(0, 120)) ** 2)
                                             / (2 * rng.uniform(1, 4) ** 2))
    smoothed = gaussian_filter(image, 1.0).astype(np.float32)
    segmap, n = _label_sources(smoothed, 3.0, 8, None)
    assert n >= 5
    peaks = []
    for label, box in enumerate(find_objects(segmap), start=1):
        ours = split_group(smoothed, segmap, label, n_pixels=5, box=box)
        assert ours == split_group(smoothed, segmap, label, n_pixels=5)
        peaks += ours
    assert len(peaks) > n  # some groups are split


def test_detection_image_is_noise_weighted_sum():
    data = two_galaxies(n_bands=2)
    background, noise = background_and_noise(data)
    expected = ((data - background[:, None, None]) / noise[:, None, None]).sum(axis=0)
    np.testing.assert_allclose(detection_image(data), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n_bands", [1, 3, 5])
def test_two_separated_galaxies_found_with_accurate_centroids(n_bands):
    centres = ((30.3, 40.7), (66.8, 52.2))
    found = find_centers(two_galaxies(n_bands=n_bands, centres=centres))
    cat = found.catalog
    assert cat.colnames == list(CATALOG_COLUMNS)
    assert len(cat) == 2 and list(cat["id"]) == [1, 2]
    order = np.argsort(cat["x_centroid"])
    xy = np.c_[cat["x_centroid"], cat["y_centroid"]][order]
    np.testing.assert_allclose(xy, centres, atol=1.0)
    assert cat["flux"].shape == (2, n_bands) and np.all(cat["flux"] > 0)
    assert found.segmap.dtype == np.int32 and set(np.unique(found.segmap)) == {0, 1, 2}
    for row in cat:
        inside = found.segmap == row["id"]
        assert inside.sum() == row["area"]
        ys, xs = np.nonzero(inside)
        assert (xs.min(), xs.max(), ys.min(), ys.max()) == (
            row["bbox_xmin"], row["bbox_xmax"], row["bbox_ymin"], row["bbox_ymax"])
    assert np.all(np.isnan(cat["ra"]))


def test_touching_galaxies_are_deblended():
    found = find_centers(two_galaxies(centres=((40.0, 48.0), (54.0, 48.0)), noise=0.005))
    assert len(found.catalog) == 2


def test_ra_dec_from_the_wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [48.5, 48.5]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    image = GalaxyImage(two_galaxies(), wcs=wcs)
    cat = find_centers(image).catalog
    ra, dec = wcs.all_pix2world(cat["x_centroid"], cat["y_centroid"], 0)
    np.testing.assert_allclose(cat["ra"], ra)
    np.testing.assert_allclose(cat["dec"], dec)


def test_nothing_found_gives_empty_catalog_without_warning():
    rng = np.random.default_rng(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = find_centers(rng.normal(0, 1, (2, 40, 40)))
    assert len(found.catalog) == 0 and found.catalog.colnames == list(CATALOG_COLUMNS)
    assert found.catalog["flux"].shape == (0, 2)
    assert found.segmap.shape == (40, 40) and not found.segmap.any()


def test_mask_hides_a_source():
    data = two_galaxies()
    mask = np.zeros(data.shape[1:], bool)
    mask[:, 50:] = True
    found = find_centers(data, mask=mask)
    assert len(found.catalog) == 1 and found.catalog["x_centroid"][0] < 50
    with pytest.raises(InvalidInputError, match="mask has shape"):
        find_centers(data, mask=mask[:10])


def test_bad_options():
    with pytest.raises(InvalidInputError, match="n_pixels"):
        find_centers(two_galaxies(), n_pixels=0)
    with pytest.raises(InvalidInputError, match="n_sigma"):
        find_centers(two_galaxies(), n_sigma=-1)


# ------------------------------------------------------------ real galaxies
@pytest.fixture(scope="module")
def physical_pair_rate():
    """Fraction of 200 physical Galaxy Zoo pairs (separation > 8 px) with both found."""
    from pathlib import Path

    from scipy.optimize import linear_sum_assignment

    from astrodeblend.blend import blend_physical
    from astrodeblend.io import read_image

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxyzoo" / "images"
    if not folder.is_dir():
        pytest.skip("Galaxy Zoo images are not available")
    files = sorted(folder.glob("*.jpg"))
    rng = np.random.default_rng(123)
    found = total = seed = 0
    while total < 200:
        a, b = rng.choice(len(files), 2, replace=False)
        scene = blend_physical([read_image(files[a]), read_image(files[b])], seed=seed)
        seed += 1
        truth = scene.centers
        if np.hypot(*(truth[0] - truth[1])) <= 8:
            continue
        total += 1
        cat = find_centers(scene.blend).catalog
        if len(cat) < 2:
            continue
        xy = np.c_[cat["x_centroid"], cat["y_centroid"]]
        distance = np.hypot(*(truth[:, None, :] - xy[None]).transpose(2, 0, 1))
        rows, cols = linear_sum_assignment(distance)
        found += int((distance[rows, cols] <= 4).sum() == 2)
    return found / total


@pytest.mark.slow
@pytest.mark.shared_data
def test_physical_pairs_detection_floor(physical_pair_rate):
    # measured 0.61 with the default settings (see the report); guard against regressions
    assert physical_pair_rate >= 0.55


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xfail(reason="photutils multi-threshold deblending finds both galaxies of only "
                          "~61% of physical pairs at > 8 px; the 90% target needs a learned "
                          "centre detector", strict=True)
def test_physical_pairs_detection_target(physical_pair_rate):
    assert physical_pair_rate >= 0.90


def test_find_centers_deblends_only_where_asked():
    """``deblend_at``: the source under the point is split, the others stay whole."""
    yy, xx = np.mgrid[:96, :96]
    data = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 12.0)
               for x, y in [(20, 30), (29, 30), (66, 60), (75, 60)])
    data = data + np.random.default_rng(3).normal(0, 0.005, data.shape)
    everywhere = find_centers(data, n_pixels=5)
    left_only = find_centers(data, n_pixels=5, deblend_at=[(24.0, 30.0)])
    assert len(everywhere.catalog) == 4
    assert len(left_only.catalog) == 3  # the right pair is one segment
    xs = sorted(round(float(x)) for x in left_only.catalog["x_centroid"])
    assert xs[:2] == [20, 29] and 69 <= xs[2] <= 72
    # a point outside every source deblends the nearest one
    assert len(find_centers(data, n_pixels=5, deblend_at=[(90.0, 60.0)]).catalog) == 3


def test_difference_noise_ignores_smooth_light():
    """Second differences 3 pixels apart measure the noise under a smooth halo and gradient."""
    yy, xx = np.mgrid[:120, :120]
    halo = Sersic2D(amplitude=3.0, r_eff=50, n=1, x_0=60, y_0=55, ellip=0.2)(xx, yy)
    rng = np.random.default_rng(5)
    data = (halo + 0.05 * xx + rng.normal(0, 2.0, halo.shape))[None].astype(np.float32)
    bad = np.zeros((120, 120), bool)
    assert _difference_noise(data, bad)[0] == pytest.approx(2.0, rel=0.05)
    bad[:, :60] = True  # masked pixels are left out
    assert _difference_noise(data, bad)[0] == pytest.approx(2.0, rel=0.05)
    assert _difference_noise(data[:, :6, :6], bad[:6, :6])[0] == 0.0  # too small to tell


def test_sky_of_a_frame_filled_by_one_galaxy():
    """No sky to clip: the level is the faintest outskirts', the noise the pixels'."""
    yy, xx = np.mgrid[:100, :100]
    galaxy = Sersic2D(amplitude=20, r_eff=40, n=2, x_0=50, y_0=48, ellip=0.3, theta=0.4)(xx, yy)
    rng = np.random.default_rng(3)
    data = (galaxy + 5.0 + rng.normal(0, 1.0, galaxy.shape))[None].astype(np.float32)
    sky = estimate_sky(data)
    assert sky.filled and "filled" in sky.method
    # the whole frame's clipped median is 12 above the sky; the faintest 5 %
    # of the frame hold 4-5 of galaxy light, and the level is theirs
    faintest = galaxy <= np.quantile(galaxy, 0.05)
    assert sky.level.mean() - 5.0 == pytest.approx(np.median(galaxy[faintest]), abs=0.3)
    assert sky.noise[0] == pytest.approx(1.0, rel=0.15)
    assert sky.source_mask.mean() == pytest.approx(0.95, abs=0.01)
    # display values (JPG, PNG) are stretched, quantised and clipped at
    # black: their pixel differences do not measure the noise, never tested
    shown = GalaxyImage(np.clip(data / data.max(), 0, 1) ** (1 / 2.2), meta={"ADBDISP": True})
    assert not estimate_sky(shown).filled


@pytest.mark.parametrize("seed", [0, 1])
def test_sky_frames_with_sky_are_not_filled(seed):
    rng = np.random.default_rng(seed)
    for data in (two_galaxies(seed=seed), rng.normal(0, 1, (3, 96, 96)).astype(np.float32)):
        sky = estimate_sky(data)
        assert not sky.filled and "filled" not in sky.method


def test_small_frames_get_a_sky_plane_display_images_a_level():
    """A residual gradient under a galaxy is removed (a constant sky left it in the
    source and the detection image); pure noise stays unbiased; JPG-like display
    images keep one level per band."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:96, :120]
    tilt = 5.0 + 0.8 * (xx - 59.5) / 120 - 0.6 * (yy - 47.5) / 96     # +-0.4 sigma at the edges
    galaxy = Sersic2D(30, 6, 1, 40, 50, 0.3, 0.4)(xx, yy)
    data = (tilt + galaxy + rng.normal(0, 1, (2, 96, 120))).astype(np.float32)
    sky = estimate_sky(data)
    assert "plane" in sky.method
    assert np.abs(sky.level - tilt).max() < 0.1          # within a tenth of the noise
    flat = estimate_sky(GalaxyImage(data, meta={"ADBDISP": True}))
    assert "median" in flat.method and np.ptp(flat.level[0]) == 0
    assert np.abs(flat.level - tilt).max() > 0.3         # the constant misses the gradient
    levels = [float(estimate_sky(rng.normal(0, 1, (1, 96, 96))).level.mean())
              for _ in range(60)]
    assert abs(np.mean(levels)) < 0.01


@pytest.mark.parametrize("mean", [-0.3, 0.6, 2.0])
def test_display_noise_of_a_sky_clipped_at_black(mean):
    """A JPG's dark band puts the lower half of its sky at black (level 0): the
    clipped spread of such a band counted the black pixels and fell to a
    fraction of the noise, its median sat below the sky's mean; its noise now
    comes from the levels above black, its level is the sky's mean."""
    rng = np.random.default_rng(5)
    sigma = 1.5                                              # in 8-bit levels
    shown = rng.normal(0, sigma, (3, 128, 128))
    shown[0] += 6.0                                          # a band well above black
    shown[1] += mean                                         # bands clipped at black
    shown[2] += mean + 0.5
    levels = np.clip(np.round(shown), 0, 255) / 255.0
    yy, xx = np.mgrid[:128, :128]
    levels += np.clip(Sersic2D(0.6, 6, 1, 64, 64, 0.3, 0.4)(xx, yy), 0, 0.6)[None]
    levels = np.round(np.clip(levels, 0, 1) * 255) / 255.0
    clipped = (levels[1:, :40] == 0).mean(axis=(1, 2))
    sky = estimate_sky(GalaxyImage(levels.astype(np.float32), meta={"ADBDISP": True}))
    noise = sky.noise * 255
    # the unclipped band: the sigma-clipped spread, of the noise and the rounding
    assert noise[0] == pytest.approx(np.hypot(sigma, 1 / np.sqrt(12)), rel=0.06)
    if clipped.min() >= 0.2:    # 0.2 at least of the sky black: measured above black
        np.testing.assert_allclose(noise[1:], sigma, rtol=0.12)
        # and the level is the clipped sky's mean (what smoothing sees), not its median
        far = levels[1:, :, :24].mean(axis=(1, 2)) * 255
        np.testing.assert_allclose(sky.level[1:, 0, 0] * 255, far, atol=0.2)
    else:
        assert noise[1] == pytest.approx(np.hypot(sigma, 1 / np.sqrt(12)), rel=0.1)
    # linear images are not clipped at black: their bands keep the clipped spread
    linear = estimate_sky(levels.astype(np.float32)).noise * 255
    assert linear[0] == pytest.approx(noise[0], rel=0.05)   # a plane, not a level
    if clipped.min() >= 0.2:
        assert np.all(linear[1:] < 0.8 * sigma)


def test_zoom_mesh_is_bilinear_between_box_centres():
    """Each mesh value sits at the centre of its box; between centres the frame is the
    straight line through them, beyond the outer centres flat, the last box cut."""
    mesh = np.array([[0.0, 1.0, 3.0]] * 2, dtype=np.float32)    # 2 x 3 boxes of 4 px
    frame = _zoom_mesh(mesh, 4, (7, 11))                        # the last boxes partial
    assert frame.shape == (7, 11) and frame.dtype == np.float32
    u = (np.arange(11) + 0.5) / 4 - 0.5                           # column in mesh units
    expected = np.interp(u, [0, 1, 2], [0.0, 1.0, 3.0])
    np.testing.assert_allclose(frame, np.broadcast_to(expected, (7, 11)), atol=1e-6)
    flat = _zoom_mesh(np.full((2, 2), 2.5, np.float32), 4, (8, 5))
    assert flat.shape == (8, 5) and np.all(flat == 2.5)


@pytest.mark.parametrize("shape", [(256, 256), (256, 320), (300, 217), (192, 700)])
def test_box_mesh_is_photutils_background_mesh(shape):
    """The 2-D sky's mesh, all bands at once, is photutils' Background2D mesh of each band
    (partial boxes along the last row and column, boxes more than half masked filled
    from their neighbours, the 3x3 median filter)."""
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground

    from astrodeblend.detect import _box_mesh

    rng = np.random.default_rng(5)
    data = rng.normal(0, 1, (3, *shape)) + np.linspace(0, 2, shape[1])
    data[:, 50:60, 70:90] += 30
    data = data.astype(np.float32)
    mask = rng.random(shape) < 0.05
    mask[:130, :140] = True                                       # boxes left out
    ours = _box_mesh(data, mask, 64)
    for band, plane in enumerate(data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = Background2D(plane, 64, mask=mask, filter_size=3,
                                  sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                                  bkg_estimator=MedianBackground(), exclude_percentile=50)
            np.testing.assert_allclose(ours[band], theirs.background_mesh, atol=1e-5)


@pytest.mark.parametrize("size", [200, 256])
def test_sky_of_a_frame_with_every_other_row_masked(size):
    """Every other row NaN (an interlaced read-out): the sky's subsample of every
    second row and column saw masked pixels only (level 0, noise 1), and every box of
    the 2-D mesh was half masked (photutils raised ValueError)."""
    rng = np.random.default_rng(3)
    data = rng.normal(5.0, 1.0, (3, size, size)).astype(np.float32)
    data[:, ::2] = np.nan
    sky = estimate_sky(data)
    assert np.abs(sky.level[:, 1::2] - 5.0).max() < 0.05
    np.testing.assert_allclose(sky.noise, 1.0, atol=0.05)


def test_two_d_sky_follows_a_gradient():
    """Large frames: a plane, then the box mesh of what it leaves, resized here.
    A sky gradient is followed to the frame's edges, where the boxes alone bend it."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:256, :320]
    sky = 3.0 + 2.0 * xx / 320 - 1.0 * yy / 256                 # +-1 sigma over the frame
    data = (sky + rng.normal(0, 1, (2, 256, 320))).astype(np.float32)
    estimate = estimate_sky(data)
    assert "plane" in estimate.method and "Background2D" in estimate.method
    edges = np.ones((256, 320), bool)
    edges[32:-32, 32:-32] = False
    error = np.abs(estimate.level - sky)
    assert error.mean() < 0.02 and error[:, edges].mean() < 0.02   # measured 0.006, 0.008
    # the boxes alone: 0.14 on average, 0.25 along the edges
    boxes = np.abs(_background_2d(data, np.zeros((256, 320), bool), 64) - sky)
    assert boxes[:, edges].mean() > 0.1


def test_no_data_regions_are_runs_of_one_exact_value():
    """Constant fills (a drizzle edge, a zero row of a reprojected frame) are found in
    the band that has them; noise, count data and a noiseless simulation's sky are not
    taken for missing data."""
    rng = np.random.default_rng(5)
    data = rng.normal(3.0, 1.0, (2, 60, 80)).astype(np.float32)
    data[0, :, 60:] = 0.0                       # band 0: a drizzle edge
    data[1, 0] = 0.0                            # band 1: one zero row (80 pixels)
    data[1, 30:33, 10:13] = 7.0                 # 9 pixels: too few to count
    found = find_no_data(data)
    assert found[0, :, 60:].all() and not found[0, :, :60].any()
    assert found[1, 0].all() and found[1].sum() == 80
    assert not find_no_data(rng.normal(0, 1, (1, 60, 80))).any()
    counts = rng.poisson(0.5, (1, 60, 80)).astype(np.float32)   # mostly 0, in clumps
    assert not find_no_data(counts).any()
    yy, xx = np.mgrid[:60, :80]
    noiseless = Sersic2D(10, 5, 1, 40, 30)(xx, yy).astype(np.float32)
    noiseless[noiseless < 1e-3] = 0.0           # an exact zero sky around the galaxy
    assert not find_no_data(noiseless).any()


def test_no_data_regions_of_quantised_data_keep_their_own_value(tmp_path):
    """Quantised data (BSCALE integers, a compressed float image's levels) repeat a
    value between neighbours by chance; such a pixel touching a fill joined it, which
    then held two values and was not found.  The fill's own value is kept."""
    from astropy.io import fits

    from astrodeblend.io import read_image

    rng = np.random.default_rng(6)
    data = np.round(rng.normal(3.0, 1.0, (1, 120, 160)) * 4) / 4   # levels a quarter sigma apart
    data[0, :, 100:] = 0.0                                          # a drizzle edge
    data[0, 110:, :] = 0.0                                          # and a zero strip
    data = data.astype(np.float32)
    touching = data[0, :110, 99] == data[0, :110, 98]               # chance repeats at the edge
    assert touching.any()
    found = find_no_data(data)
    fill = np.zeros((120, 160), bool)
    fill[:, 100:] = fill[110:] = True
    assert found[0, fill].all()
    assert found[0, ~fill].sum() < 10    # chance repeats of 0 beside it may join, nothing else
    # the same through a FITS file of 16-bit integers with BSCALE / BZERO
    hdu = fits.PrimaryHDU(np.round((data[0] + 10) * 4).astype(np.int16))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.25, -10.0
    hdu.writeto(tmp_path / "scaled.fits")
    image = read_image(tmp_path / "scaled.fits")
    np.testing.assert_array_equal(find_no_data(image.data)[0, fill], True)
    # levels 1.5 sigma apart: the sky itself repeats in runs of 64+ pixels; not a fill
    coarse = np.round(rng.normal(3.3, 1.0, (1, 300, 300)) / 1.5) * 1.5
    assert not find_no_data(coarse.astype(np.float32)).any()


def test_safe_noise_of_a_noiseless_band_is_its_quantisation():
    from astrodeblend.detect import _safe_noise

    planes = np.zeros((2, 20, 20), np.float32)
    planes[0, 5:8, 5:8] = [[1 / 255], [2 / 255], [3 / 255]]   # an 8-bit band, sky exactly 0
    noise = _safe_noise([0.0, 0.5], planes)
    assert noise[0] == pytest.approx(1 / 255 / np.sqrt(12), rel=1e-5)
    assert noise[1] == 0.5
    # a band of one value: the other bands' smallest level; none at all: 1
    assert _safe_noise([0.0, 0.5], np.zeros((2, 4, 4)))[0] == 0.5
    assert _safe_noise([np.nan], np.ones((1, 4, 4))).tolist() == [1.0]
    assert _safe_noise([0.0, 0.25]).tolist() == [0.25, 0.25]
