"""Footprints and flux sharing (pure numpy, no torch)."""

import numpy as np
import pytest

from astrodeblend.errors import InvalidInputError
from astrodeblend.footprints import (
    SourceModel,
    fill_masked,
    fit_amplitudes,
    grow_footprint,
    monotonic,
    share_flux,
    sweep_halos,
    taper,
)


def gaussian(shape, x, y, sigma, amp=1.0):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def two_sources(colours=((1.0, 0.5), (0.3, 1.2)), shape=(40, 60)):
    """Two Gaussians of different colours and their models over boxes of the frame."""
    comps = np.stack([np.asarray(c)[:, None, None] * gaussian(shape, x, 20, 3, 10)[None]
                      for c, x in zip(colours, (22, 34), strict=True)]).astype(np.float32)
    models = []
    for comp, x in zip(comps, (22, 34), strict=True):
        box = (0, shape[0], x - 18, x + 18)
        # the models have the right shapes but wrong colours (grey, unit amplitude)
        grey = np.stack([comp.sum(0)] * 2)[:, box[0]:box[1], box[2]:box[3]] / 2
        models.append(SourceModel((float(x), 20.0), box, grey.astype(np.float32), group=1))
    return comps, models


def test_fill_masked_interpolates_from_neighbours():
    plane = gaussian((30, 30), 15, 15, 5, 10)[None].astype(np.float32)
    bad = np.zeros((30, 30), bool)
    bad[13:17, 13:17] = True
    data = np.where(bad, np.nan, plane)
    filled = fill_masked(data, bad)
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[:, ~bad], plane[:, ~bad])
    # the hole is filled close to the smooth profile, not with zeros
    assert filled[0, 15, 15] > 0.7 * plane[0, 15, 15]


def test_fill_masked_block_on_a_core_has_no_dip():
    """A 10x20 block on a galaxy's core: inpainted from both sides, the fill rises
    from the border to a single top at least as bright as the border, where the
    Gaussian average (``inpaint=0``), which takes in the fainter light along the
    block's long sides, stays below its border (a trough, with a peak each side of
    the block); thin masks keep the Gaussian fill."""
    plane = gaussian((60, 60), 30, 30, 6, 40)[None].astype(np.float32)
    bad = np.zeros((60, 60), bool)
    bad[25:35, 20:40] = True
    data = np.where(bad, np.nan, plane)
    column = fill_masked(data, bad)[0, 24:36, 30]           # border to border through the core
    top = int(np.argmax(column))
    assert np.all(np.diff(column[:top + 1]) >= -1e-4) and np.all(np.diff(column[top:]) <= 1e-4)
    assert column[1:-1].max() >= max(column[0], column[-1]) - 1e-4
    trough = fill_masked(data, bad, inpaint=0)[0, 24:36, 30]
    assert trough[1:-1].max() < max(trough[0], trough[-1]) - 1
    thin = np.zeros((60, 60), bool)
    thin[:, 30] = True
    np.testing.assert_array_equal(fill_masked(np.where(thin, np.nan, plane), thin),
                                  fill_masked(np.where(thin, np.nan, plane), thin, inpaint=0))


def test_fill_masked_block_on_the_sky_raises_no_bump():
    """A 10x14 block on pure noise: inpainted from the pixels themselves, the noise
    at its border carries into it as a coherent level (its mean scatters by half a
    sigma over 140 pixels, a bump that passed for a source); with the noise given,
    a block whose border is faint continues the smoothed surroundings."""
    raw, smooth = [], []
    bad = np.zeros((48, 48), bool)
    bad[19:29, 17:31] = True
    for seed in range(30):
        data = np.random.default_rng(seed).normal(0, 1, (1, 48, 48)).astype(np.float32)
        data = np.where(bad, np.nan, data)
        raw.append(fill_masked(data, bad)[0][bad].mean())
        smooth.append(fill_masked(data, bad, noise=[1.0])[0][bad].mean())
    assert np.std(raw) > 0.4 and np.std(smooth) < 0.2
    # a galaxy's core under the block keeps the slopes of its own pixels
    plane = gaussian((48, 48), 24, 24, 6, 40)[None].astype(np.float32)
    core = np.where(bad, np.nan, plane)
    np.testing.assert_array_equal(fill_masked(core, bad, noise=[1.0]), fill_masked(core, bad))


def test_taper_is_smooth_and_one_inside():
    w = taper(40, 8)
    assert w[20, 20] == 1.0 and w[0, 0] < 0.01
    assert np.abs(np.diff(w, axis=0)).max() < 0.25


def test_footprint_holds_group_and_model_light():
    comps, models = two_sources()
    groups = np.zeros((40, 60), int)
    groups[15:25, 18:40] = 1
    fp = grow_footprint(models[0], groups, [0.1, 0.1])
    sy, sx = models[0].slices
    assert fp[groups[sy, sx] == 1].all()
    # the model's wing far beyond the group is in the footprint, the far sky is not
    assert fp[20 - 0, 22 - 4 - 8 + 8 - 4] and not fp[0, 0]


def test_amplitudes_restore_colours_and_conserve_split_them():
    comps, models = two_sources()
    groups = np.ones((40, 60), int)
    data = comps.sum(0)
    bad = np.zeros(data.shape, bool)
    for m in models:
        grow_footprint(m, groups, [0.01, 0.01])
    fit_amplitudes(data, bad, models)
    cutouts, origins, segmap = share_flux(data, bad, models, [0.01, 0.01])
    for comp, cutout in zip(comps, cutouts, strict=True):
        np.testing.assert_allclose(cutout.sum(axis=(1, 2)), comp.sum(axis=(1, 2)), rtol=0.02)
    assert set(np.unique(segmap)) == {0, 1, 2} or set(np.unique(segmap)) == {1, 2}
    assert origins.shape == (2, 2)


def test_model_mode_and_masked_pixels():
    comps, models = two_sources()
    groups = np.ones((40, 60), int)
    rng = np.random.default_rng(0)
    data = (comps.sum(0) + rng.normal(0, 0.05, comps.shape[1:])).astype(np.float32)
    bad = np.zeros(data.shape, bool)
    bad[:, 18:22, 20:24] = True
    for m in models:
        grow_footprint(m, groups, [0.05, 0.05])
    fit_amplitudes(data, bad, models)
    cutouts, origins, _ = share_flux(data, bad, models, [0.05, 0.05], flux="model")
    for comp, cutout, (x0, y0) in zip(comps, cutouts, origins, strict=True):
        full = np.zeros(data.shape, np.float32)
        full[:, y0:y0 + cutout.shape[1], x0:x0 + cutout.shape[2]] = cutout
        assert (full[bad] == 0).all()
        assert np.isfinite(cutout).all()
        # noise stays out of model-mode sources: each is its (noiseless) truth
        inside = (full != 0) & ~bad
        np.testing.assert_allclose(full[inside], comp[inside], atol=0.05 * comp.max())
    with pytest.raises(InvalidInputError, match="flux"):
        share_flux(data, bad, models, [0.05, 0.05], flux="share")


@pytest.mark.parametrize("flux", ["weighted", "conserve", "model"])
def test_share_flux_makes_its_weights_again_when_they_would_take_much_memory(
        monkeypatch, flux):
    """Sources whose models exceed KEEP_WEIGHT_BYTES have their weights made again in the
    second pass instead of kept: the same cutouts, origins and map."""
    import astrodeblend.footprints as footprints

    comps, models = two_sources()
    groups = np.ones((40, 60), int)
    data = (comps.sum(0) + np.random.default_rng(4).normal(0, 0.1, comps.shape[1:])
            ).astype(np.float32)
    bad = np.zeros(data.shape, bool)
    for m in models:
        grow_footprint(m, groups, [0.1, 0.1])
    kept = share_flux(data, bad, models, [0.1, 0.1], flux=flux)
    monkeypatch.setattr(footprints, "KEEP_WEIGHT_BYTES", 0)
    remade = share_flux(data, bad, models, [0.1, 0.1], flux=flux)
    for a, b in zip(kept[0], remade[0], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(kept[1], remade[1])
    np.testing.assert_array_equal(kept[2], remade[2])
    assert sum(float(c.sum()) for c in kept[0]) > 0


def test_weighted_mode_beats_data_and_model_and_keeps_shared_flux():
    # a model whose shape is wrong by up to 30 % in the core (where the data are
    # good) and noise that dominates the wings (where the model is good)
    comps, models = two_sources()
    for model in models:
        yy, xx = np.mgrid[:model.model.shape[1], :model.model.shape[2]]
        bump = 1.0 + 0.3 * np.cos(xx / 3.0) * np.exp(-((xx - 18) ** 2 + (yy - 20) ** 2) / 50)
        model.model = (model.model * bump).astype(np.float32)
    groups = np.ones((40, 60), int)
    rng = np.random.default_rng(3)
    noise = [0.1, 0.1]
    data = (comps.sum(0) + rng.normal(0, 0.1, comps.shape[1:])).astype(np.float32)
    bad = np.zeros(data.shape, bool)
    bad[:, 5:8, 30:33] = True
    for m in models:
        grow_footprint(m, groups, noise)
    fit_amplitudes(data, bad, models)
    made = {flux: share_flux(data, bad, models, noise, flux=flux)
            for flux in ("weighted", "conserve", "model")}

    def error(flux):
        cutouts, origins, _ = made[flux]
        total = 0.0
        for comp, cutout, (x0, y0) in zip(comps, cutouts, origins, strict=True):
            full = np.zeros(data.shape, np.float32)
            full[:, y0:y0 + cutout.shape[1], x0:x0 + cutout.shape[2]] = cutout
            assert (full[bad] == 0).all() and np.isfinite(full).all()
            total += float(((full - comp) ** 2).sum())
        return total

    # squared errors 6.7 against 35 (the data's share) and 41 (the model)
    assert error("weighted") < 0.5 * min(error("conserve"), error("model"))
    # every band of every source keeps the flux of its share of the data
    for mine, shared in zip(made["weighted"][0], made["conserve"][0], strict=True):
        np.testing.assert_allclose(mine.sum(axis=(1, 2)), shared.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(made["weighted"][1], made["conserve"][1])


def test_weighted_mode_takes_the_data_where_the_model_misses_a_region():
    """A large galaxy whose model lacks a third of the light in a ring (as
    the generator flattens a galaxy larger than its stamp): the weighted
    source follows the data in the ring, not the model; where the model is
    right, the local bias term is about zero on noise alone."""
    from astrodeblend.footprints import _local_bias

    shape, rng = (96, 96), np.random.default_rng(12)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    radius = np.hypot(xx - 48, yy - 48)
    truth = (30.0 * np.exp(-radius / 12.0))[None].astype(np.float32)
    ring = (radius > 15) & (radius < 30)
    wrong = truth * np.where(ring, np.float32(0.65), np.float32(1.0))
    noise = [1.0]
    data = truth + rng.normal(0, 1.0, truth.shape).astype(np.float32)
    bad = np.zeros(data.shape, bool)
    footprint = radius < 44
    made = {}
    for name, model in (("right", truth), ("wrong", wrong)):
        source = SourceModel((48.0, 48.0), (0, 96, 0, 96), model.copy(), footprint=footprint)
        cutouts, origins, _ = share_flux(data, bad, [source], noise, flux="weighted")
        (x0, y0), cut = origins[0], cutouts[0]
        full = np.zeros(data.shape, np.float32)
        full[:, y0:y0 + cut.shape[1], x0:x0 + cut.shape[2]] = cut
        made[name] = full
    # in the ring the model is 35 % low; the source holds over 90 % of the
    # truth there (87 % without the local bias term, which weighs the data by
    # the model's 20 % error alone), and is closer to it than the model
    ratio = made["wrong"][0][ring].sum() / truth[0][ring].sum()
    assert 0.9 < ratio < 1.02
    assert (((made["wrong"][0] - truth[0])[ring] ** 2).mean()
            < 0.5 * ((wrong[0] - truth[0])[ring] ** 2).mean())
    # a right model: the source in the ring is the model's, barely noisier
    assert np.std(made["right"][0][ring] - truth[0][ring]) < 0.5
    keep = footprint[None]
    term = _local_bias(data, truth, np.ones_like(truth), keep)
    assert float(np.median(term[keep])) < 0.01
    term = _local_bias(data, wrong, np.ones_like(truth), keep)
    assert float(np.median(term[0][ring & (radius > 18) & (radius < 27)])) > 0.5


def test_monotonic_constrains_only_pixels_nearer_to_another_centre():
    """A leaked bump in a neighbour's territory is removed; the source's own
    second bump stays; centres too far to be nearer to any pixel change nothing."""
    plane = gaussian((21, 21), 10, 10, 2, 5) + gaussian((21, 21), 17, 10, 1, 3)
    plane += gaussian((21, 21), 3, 10, 1, 3)  # the source's own knot, on the far side

    def run(others):
        src = SourceModel((10.0, 10.0), (0, 21, 0, 21), plane[None].astype(np.float32))
        return monotonic(src, others)

    near = run([(18.0, 10.0)])
    assert near[10, 17] < 0.5 * plane[10, 17]  # the bump nearer the neighbour is capped
    assert near[10, 3] == pytest.approx(plane[10, 3], rel=1e-6)  # own knot kept
    far = [(10.0 + 60.0 * np.cos(a), 10.0 + 60.0 * np.sin(a)) for a in np.linspace(0, 6, 40)]
    np.testing.assert_array_equal(run([(18.0, 10.0), *far]), near)
    np.testing.assert_array_equal(run(far), np.clip(plane, 0, None).astype(np.float32))


def _halo_scene(rng, noise=1.0):
    """An exponential galaxy (scale 6 px) whose footprint stops at r = 10, and a faint
    companion 30 px away; their cutouts as share_flux would give them."""
    yy, xx = np.mgrid[:96, :96]
    big = 40 * np.exp(-np.hypot(xx - 40, yy - 48) / 6)
    small = 8 * np.exp(-np.hypot(xx - 70, yy - 48) ** 2 / 4)
    truth = np.stack([big, small])[:, None].astype(np.float32)
    data = truth.sum(0) + rng.normal(0, noise, (1, 96, 96)).astype(np.float32)
    cutouts, origins, segmap = [], [], np.zeros((96, 96), np.int32)
    for i, (x, r) in enumerate(((40, 10), (70, 3)), start=1):
        inside = np.hypot(xx - x, yy - 48) <= r
        segmap[inside] = i
        y0, x0 = 48 - r, x - r
        cutouts.append(np.where(inside, data, 0)[:, y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1])
        origins.append((x0, y0))
    return truth, data, cutouts, np.array(origins), segmap


def test_halos_go_to_the_bright_galaxy_and_keep_the_sum():
    rng = np.random.default_rng(3)
    truth, data, cutouts, origins, segmap = _halo_scene(rng)
    bad = np.zeros(data.shape, bool)
    bad[0, 5:10, 5:10] = True
    grown, new_origins, new_segmap = sweep_halos(data, bad, cutouts, origins, segmap, [1.0],
                                                 [(40, 48), (70, 48)])
    big = truth[0].sum()
    before, after = cutouts[0].sum() / big, grown[0].sum() / big
    assert before < 0.8 and abs(after - 1) < abs(before - 1) / 2     # most of the halo back
    # the companion gets (about) its own wings only: the halo around it is the galaxy's
    assert abs(grown[1].sum() / truth[1].sum() - 1) < 0.1
    # footprints and the segmentation grow together; nothing on masked pixels
    assert (new_segmap == 1).sum() > (segmap == 1).sum()
    full = np.zeros_like(data)
    for cut, (x0, y0) in zip(grown, new_origins, strict=True):
        full[:, y0:y0 + cut.shape[1], x0:x0 + cut.shape[2]] += cut
    swept = (new_segmap > 0) & (segmap == 0)
    assert np.all(full[bad] == 0) and np.all(full[:, swept] >= 0)
    assert ((full[0] != 0) <= (new_segmap > 0)).all()
    # the sources' old pixels are untouched
    for old, new, (x0, y0), (nx0, ny0) in zip(cutouts, grown, origins, new_origins, strict=True):
        part = new[:, y0 - ny0:y0 - ny0 + old.shape[1], x0 - nx0:x0 - nx0 + old.shape[2]]
        np.testing.assert_array_equal(part[old != 0], old[old != 0])


def test_halo_owners_of_many_sources_are_those_of_every_score():
    """Large frames score only the sources that can win in each square of pixels: the
    owners are those of scoring every source at every pixel, ties (equal sources at one
    place, zero fluxes) going to the first source as argmax gives them."""
    from astrodeblend.footprints import _halo_owners

    rng = np.random.default_rng(2)
    centers = rng.uniform(-20, 700, (60, 2))
    centers[30] = centers[20]  # an exact tie everywhere
    flux = rng.lognormal(3, 2, 60)
    flux[30] = flux[20]
    flux[:5] = 0.0
    ys, xs = np.nonzero(rng.random((650, 640)) < 0.25)
    assert ys.size * len(centers) > 2 ** 22  # the squares' path
    dx = xs[:, None] - centers[None, :, 0]
    dy = ys[:, None] - centers[None, :, 1]
    every = np.argmax(flux[None] / (dx * dx + dy * dy + 1.0), axis=1)
    owners = _halo_owners(ys, xs, centers, flux)
    np.testing.assert_array_equal(owners, every)
    assert not np.any(owners == 30) and np.any(owners == 20)
    np.testing.assert_array_equal(_halo_owners(ys[:500], xs[:500], centers, flux), every[:500])


def test_halos_on_pure_noise_take_almost_nothing():
    rng = np.random.default_rng(4)
    taken = []
    for _ in range(20):
        data = rng.normal(0, 1, (2, 64, 64)).astype(np.float32)
        segmap = np.zeros((64, 64), np.int32)
        segmap[30:34, 30:34] = 1
        cut = [data[:, 30:34, 30:34].copy()]
        grown, _, new_segmap = sweep_halos(data, np.zeros(data.shape, bool), cut,
                                           np.array([[30, 30]]), segmap, [1.0, 1.0], [(31.5, 31.5)])
        taken.append((new_segmap > 0).sum() - 16)
    assert np.mean(taken) < 10      # pixels swept from 4000 of pure noise, on average
