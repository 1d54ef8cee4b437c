import numpy as np
import pytest
from astropy.modeling.models import Sersic2D
from astropy.nddata import NDData

from astrodeblend.baselines import FluxShareDeblender, SegmentationDeblender
from astrodeblend.errors import InvalidInputError
from astrodeblend.image import GalaxyImage
from astrodeblend.metrics import match_sources
from astrodeblend.result import DeblendResult

CENTERS = np.array([[28.0, 40.0], [52.0, 37.0]])
METHODS = [SegmentationDeblender, FluxShareDeblender]


def two_galaxies(n_bands=3, shape=(80, 80), noise=0.003, seed=0):
    """A blend of two Sersic galaxies and its noiseless components."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    a = Sersic2D(1.0, 6, 1.5, *CENTERS[0], 0.3, 0.5)(xx, yy)
    b = Sersic2D(0.6, 5, 1.0, *CENTERS[1], 0.5, 2.0)(xx, yy)
    colours = np.linspace(0.8, 1.2, n_bands)[:, None, None]
    components = np.stack([colours * a, colours[::-1] * b]).astype(np.float32)
    rng = np.random.default_rng(seed)
    blend = components.sum(axis=0) + rng.normal(0, noise, components.shape[1:])
    return blend.astype(np.float32), components


def centres(result):
    return np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])


@pytest.mark.parametrize("cls", METHODS)
def test_finds_both_galaxies(cls):
    blend, _ = two_galaxies()
    deblender = cls()
    result = deblender(blend)
    assert isinstance(result, DeblendResult)
    assert result.n_sources == 2
    matches = match_sources(CENTERS, centres(result), max_distance=2.0)
    assert len(matches.pairs) == 2
    assert result.model_name == deblender.name == cls.name
    assert result.model_hash == deblender.model_hash == ""
    assert result.history and all("n_sigma=3.0" in line for line in result.history[:1])
    assert result.segmap.shape == blend.shape[1:]
    assert set(np.unique(result.segmap)) <= {0, 1, 2}


def test_segmentation_sources_are_blend_inside_segments():
    blend, _ = two_galaxies()
    result = SegmentationDeblender()(blend)
    for i in range(result.n_sources):
        inside = result.segmap == i + 1
        np.testing.assert_array_equal(result.sources[i][:, inside], blend[:, inside])
        np.testing.assert_array_equal(result.sources[i][:, ~inside], 0)
    outside = result.segmap == 0
    np.testing.assert_allclose(result.residual.data[:, outside], blend[:, outside])
    np.testing.assert_array_equal(result.residual.data[:, ~outside], 0)


def test_segmentation_sources_are_cutouts_of_their_segments(monkeypatch):
    """In a large frame each source is made over its segment's box, never as a full frame:
    a 1000 x 1000 frame of two galaxies costs kilobytes per source, not 12 MB, and the
    cutouts are those the full-frame sources trim to."""
    from astrodeblend import result as result_module

    small, _ = two_galaxies(n_bands=3)
    blend = np.zeros((3, 1000, 1000), np.float32)
    blend += np.random.default_rng(1).normal(0, 0.003, blend.shape).astype(np.float32)
    blend[:, 500:580, 300:380] = small
    trimmed = []
    monkeypatch.setattr(result_module, "_trim_frames",
                        lambda *args: trimmed.append(args) or pytest.fail("full frames"))
    result = SegmentationDeblender()(blend)
    assert result.n_sources == 2 and not trimmed
    for i in range(result.n_sources):
        cut, (x0, y0) = result.cutouts[i], result.origins[i]
        assert cut.shape[1] * cut.shape[2] < 80 * 80
        inside = result.segmap[y0:y0 + cut.shape[1], x0:x0 + cut.shape[2]] == i + 1
        window = blend[:, y0:y0 + cut.shape[1], x0:x0 + cut.shape[2]]
        np.testing.assert_array_equal(cut[:, inside], window[:, inside])
        np.testing.assert_array_equal(cut[:, ~inside], 0)
        # the box of the segment's pixels: no empty row or column at its edges
        rows, cols = np.nonzero(inside)
        assert rows.min() == 0 and cols.min() == 0
        assert rows.max() == cut.shape[1] - 1 and cols.max() == cut.shape[2] - 1


@pytest.mark.parametrize("templates", ["band", "detection"])
def test_fluxshare_conserves_flux(templates):
    blend, components = two_galaxies()
    result = FluxShareDeblender(templates=templates)(blend)
    np.testing.assert_allclose(result.sources.sum(axis=0), blend, rtol=0, atol=1e-6)
    assert np.abs(result.residual.data).max() < 1e-6
    # each source gets most of its own galaxy's flux (templates do better than halves)
    matches = match_sources(CENTERS, centres(result), max_distance=2.0)
    for true_index, found_index in matches.pairs:
        truth = components[true_index].sum()
        assert abs(result.sources[found_index].sum() - truth) / truth < 0.1


def test_fluxshare_beats_segmentation_on_flux():
    blend, components = two_galaxies(noise=0.0005)
    errors = {}
    for cls in METHODS:
        result = cls()(blend)
        pairs = match_sources(CENTERS, centres(result), max_distance=2.0).pairs
        errors[cls.name] = np.mean([abs(result.sources[f].sum() / components[t].sum() - 1)
                                    for t, f in pairs])
    assert errors["fluxshare"] < errors["segmentation"]


@pytest.mark.parametrize("cls", METHODS)
@pytest.mark.parametrize("n_bands", [1, 5])
def test_any_band_count(cls, n_bands):
    blend, _ = two_galaxies(n_bands=n_bands)
    image = blend[0] if n_bands == 1 else blend
    result = cls()(image)
    assert result.sources.shape == (2, n_bands, 80, 80)
    assert result.catalog["flux"].shape == (2, n_bands)


@pytest.mark.parametrize("cls", METHODS)
def test_no_detection(cls):
    noise = np.random.default_rng(3).normal(0, 1, (3, 40, 40)).astype(np.float32)
    result = cls()(noise)
    assert result.n_sources == 0
    assert result.sources.shape == (0, 3, 40, 40)
    np.testing.assert_array_equal(result.residual.data, noise)
    assert not result.segmap.any()


@pytest.mark.parametrize("cls", METHODS)
def test_masked_pixels_and_inputs(cls):
    blend, _ = two_galaxies()
    mask = np.zeros(blend.shape[1:], dtype=bool)
    mask[5:12, 5:15] = True  # a bad corner
    mask[41:43, 20:23] = True  # and a few bad pixels on galaxy A
    image = GalaxyImage(blend, mask=mask)
    result = cls()(image)
    assert result.n_sources == 2
    assert np.isfinite(result.sources).all()
    np.testing.assert_array_equal(result.sources[:, :, mask], 0)
    if cls is FluxShareDeblender:
        good = ~mask
        np.testing.assert_allclose(result.sources.sum(axis=0)[:, good], blend[:, good],
                                   atol=1e-6)
    # NDData input with a NaN pixel is accepted as well
    blend_nan = blend.copy()
    blend_nan[0, 5, 5] = np.nan
    assert cls()(NDData(blend_nan)).n_sources == 2


def test_options_are_checked_and_recorded():
    deblender = FluxShareDeblender(n_sigma=2.5, n_pixels=6, templates="detection")
    assert deblender.parameters == {"n_sigma": 2.5, "n_pixels": 6, "n_levels": 32,
                                    "contrast": 0.001, "templates": "detection"}
    assert "templates='detection'" in repr(deblender)
    assert any("detection" in line for line in deblender.history)
    with pytest.raises(InvalidInputError, match="templates"):
        FluxShareDeblender(templates="pixel")
    with pytest.raises(InvalidInputError, match="n_sigma"):
        SegmentationDeblender(n_sigma=0)
    with pytest.raises(InvalidInputError, match="contrast"):
        SegmentationDeblender(contrast=2)


def test_get_deblender_factory_returns_baselines():
    from astrodeblend.pipeline import get_deblender

    assert isinstance(get_deblender("segmentation"), SegmentationDeblender)
    assert isinstance(get_deblender("fluxshare"), FluxShareDeblender)


@pytest.mark.parametrize("cls", [SegmentationDeblender, FluxShareDeblender])
def test_baselines_with_a_band_without_data(cls):
    """A band all NaN (a missing filter): the others deblended, that band 0 / NaN."""
    blend = two_galaxies()[0]
    blend = np.concatenate([blend, np.full_like(blend[:1], np.nan)])
    result = cls()(blend)
    assert result.n_sources >= 1
    assert all(np.isfinite(c).all() and (c[-1] == 0).all() for c in result.cutouts)
    assert np.isnan(result.residual.data[-1]).all()
