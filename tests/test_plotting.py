"""Tests of the quick-look figure `plot_deblend_result` (truth matching, panels, memory)."""

import numpy as np
import pytest

from astrodeblend import DeblendResult, GalaxyImage
from astrodeblend.errors import InvalidInputError
from astrodeblend.plotting import MASKED_COLOR, MAX_PANEL_PIXELS, plot_deblend_result
from astrodeblend.plotting._deblend import _match_truths


def _galaxy(shape, x, y, amplitude, sigma=3.0):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    plane = amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return np.stack([plane, 0.8 * plane, 0.6 * plane]).astype(np.float32)


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def _scene(shape=(48, 64), centers=((16.0, 20.0), (44.0, 26.0)), noise=0.01, seed=0):
    """Two galaxies, their truths, and a DeblendResult made of cutouts around each."""
    rng = np.random.default_rng(seed)
    truth = np.stack([_galaxy(shape, x, y, a)
                      for (x, y), a in zip(centers, (1.0, 0.6), strict=True)])
    data = truth.sum(axis=0) + rng.normal(0, noise, (3, *shape)).astype(np.float32)
    blend = GalaxyImage(data)
    segmap = np.zeros(shape, np.int32)
    cutouts, origins = [], []
    for k, (x, y) in enumerate(centers):
        x0, y0 = int(x) - 8, int(y) - 8
        segmap[y0:y0 + 17, x0:x0 + 17] = k + 1
        cutouts.append(truth[k][:, y0:y0 + 17, x0:x0 + 17])
        origins.append((x0, y0))
    xs, ys = zip(*centers, strict=True)
    catalog = DeblendResult.make_catalog(blend, cutouts, xs, ys, origins=origins)
    result = DeblendResult(blend, cutouts, catalog, segmap, origins=origins)
    return result, truth, np.array(centers)


def test_truths_are_matched_to_sources_by_centre():
    result, truth, centers = _scene()
    # truths in the other order than the catalog
    assert _match_truths(result, truth[::-1], None) == {0: 1, 1: 0}
    assert _match_truths(result, truth[::-1], centers[::-1]) == {0: 1, 1: 0}
    fig = plot_deblend_result(result, truth=truth[::-1], truth_centers=centers[::-1])
    titles = _titles(fig)
    assert titles[3:] == ["source 1", "source 2", "truth for source 1", "truth for source 2"]
    # the panel "truth for source 1" shows the first catalog source's galaxy
    panel = next(ax for ax in fig.axes if ax.get_title() == "truth for source 1")
    x0, x1, y0, y1 = panel.images[0].get_extent()
    assert x0 < centers[0][0] < x1 and y0 < centers[0][1] < y1


def test_truths_are_matched_by_overlap_when_centres_are_far():
    result, truth, centers = _scene()
    shifted = centers + 7.0  # beyond match_distance: the overlap decides
    assert _match_truths(result, truth, shifted, max_distance=5.0) == {0: 0, 1: 1}


def test_unmatched_truth_and_source_are_named():
    result, truth, _ = _scene()
    extra = np.zeros_like(truth[:1])
    extra[0, :, 40:44, 2:6] = 1.0  # a galaxy far from every source
    fig = plot_deblend_result(result, truth=np.concatenate([truth[1:], extra]))
    titles = _titles(fig)
    assert "truth for source 2" in titles and "truth 2: not detected" in titles
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no truth matched\nto source 1" in texts


def test_bad_truth_shapes_are_refused():
    result, truth, centers = _scene()
    with pytest.raises(InvalidInputError, match="truth must have shape"):
        plot_deblend_result(result, truth=truth[:, :2])
    with pytest.raises(InvalidInputError, match="truth_centers must have shape"):
        plot_deblend_result(result, truth=truth, truth_centers=centers[:1])


def test_residual_panel_has_its_own_symmetric_scale_and_shows_masked_pixels():
    result, _, _ = _scene()
    mask = np.zeros(result.blend.shape, bool)
    mask[:, 40:, :10] = True
    masked = DeblendResult(result.blend.with_data(result.blend.data, mask=mask),
                           result.cutouts, result.catalog, result.segmap, origins=result.origins)
    fig = plot_deblend_result(masked)
    ax = next(ax for ax in fig.axes if ax.get_title().startswith("residual"))
    image = ax.images[0]
    assert image.get_clim() == (-3, 3)
    shown = image.get_array()
    assert np.ma.getmaskarray(shown)[45, 5] or np.isnan(shown[45, 5])
    assert image.cmap.get_bad().tolist() == list(__import__("matplotlib").colors.to_rgba(
        MASKED_COLOR))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["masked"]
    # noise-only residual off the sources: most pixels within +-3 sigma, not all zero
    values = np.ma.filled(shown, np.nan)
    finite = values[np.isfinite(values)]
    assert np.mean(np.abs(finite) < 3) > 0.95 and np.std(finite) > 0.3


def test_segmentation_panel_shows_footprints_and_catalog_boxes():
    result, _, _ = _scene()
    fig = plot_deblend_result(result)
    ax = next(ax for ax in fig.axes if ax.get_title().startswith("footprints"))
    assert ax.get_title() == "footprints (2) and boxes"
    assert len(ax.patches) == 2
    labels = ax.images[0].get_array()
    assert set(np.unique(labels)) == {0, 1, 2}


def test_large_frames_are_drawn_from_cutouts_only(monkeypatch):
    shape = (1, 2 * MAX_PANEL_PIXELS + 10, 2 * MAX_PANEL_PIXELS)
    blend = GalaxyImage(np.zeros(shape, np.float32))
    cutouts = [np.ones((1, 5, 6), np.float32)]
    origins = [(100, 2000)]
    catalog = DeblendResult.make_catalog(blend, cutouts, [102.0], [2002.0], origins=origins)
    result = DeblendResult(blend, cutouts, catalog, np.zeros(shape[1:], np.int32),
                           origins=origins)

    def refuse(self):
        raise AssertionError("plot_deblend_result built every full frame")

    monkeypatch.setattr(DeblendResult, "sources", property(refuse))
    fig = plot_deblend_result(result)
    for ax in fig.axes:
        for image in ax.images:
            assert max(image.get_array().shape[:2]) <= MAX_PANEL_PIXELS
    panel = next(ax for ax in fig.axes if ax.get_title() == "source 1")
    assert panel.get_xlim() == (99.5, 105.5) and panel.get_ylim() == (1999.5, 2005.5)


def test_many_sources_show_the_brightest():
    result, _, _ = _scene()
    fig = plot_deblend_result(result, max_sources=1)
    assert _titles(fig)[3:] == ["source 1 (+1 fainter)"]
