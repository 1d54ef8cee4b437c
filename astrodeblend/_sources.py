"""The pipeline's decisions on its sources, made from the generator's models.

`~astrodeblend.pipeline.Deblender` detects sources and extracts a model of
each (`~astrodeblend.footprints.SourceModel`); the rules here decide, from
those models and the data, which sources are kept and where they are:

- **confirmation**: a detection sharing its group with a brighter source is
  kept only where its light stands out of the data less the other models
  (`_needed`, `_unexplained`, `_model_stands_out`); photutils' candidates are
  added only where the models leave their light unexplained;
- **duplicates**: of two photutils candidates added on one galaxy, or two
  detections in a masked block, the one whose model repeats the brighter's
  is dropped (`_merge_duplicates`);
- **halves**: two sources on either side of one galaxy's middle are
  replaced by the generator's one source between them where it fits the
  data far better (`_close_pairs`, `_join_halves`);
- **positions**: each source sits at its model's nearest peak
  (`_model_centre`).

Pure numpy (no torch): each rule takes the models, the sky-subtracted data
and its noise as arguments and can be tested on hand-made models.
"""

import dataclasses

import numpy as np

from .footprints import SourceModel, fit_amplitudes, monotonic


def _separate(model):
    """Give a model one shape in every band (its bands summed) times its colour, in place.

    The generator's planes of a faint band pick up a few per cent of a
    neighbour bright in that band; the summed shape is dominated by the
    source's own bright bands, so its colour, refitted per band
    (`~astrodeblend.footprints.fit_amplitudes`), stays with it (scarlet's
    separable morphology x SED).
    """
    shape = model.model.sum(axis=0)
    total = float(shape.sum())
    if not total > 0:
        return
    # a band whose model sums below zero (noise of a faint band) has no light
    colour = np.clip(model.model.sum(axis=(1, 2)), 0, None) / total
    model.model = (shape[None] * colour[:, None, None]).astype(np.float32)


def _less_sky(models, sky):
    """Return the models with the level ``sky`` (display models carry it) taken off.

    ``sky`` None: the models themselves (linear models have no sky).
    """
    if sky is None:
        return models
    level = np.asarray(sky, dtype=np.float32).reshape(-1, 1, 1)
    return [SourceModel(m.center, m.box, m.model - level, group=m.group, footprint=m.footprint)
            for m in models]


def _needed(models, signal, noise, aperture, min_snr, *, sky=None, groups=None, group_map=None,
            wings=None):
    """Drop the sources of a group whose light the brighter ones' models explain.

    Faintest first, a source sharing its group with a brighter one is kept
    only where, the other kept sources' models subtracted, its light stands
    out of the residual by ``min_snr`` (``_unexplained`` without its
    half-of-the-light condition, which is for photutils' candidates).
    ``sky``: the level display models include, taken off them for the test
    (``signal`` is sky-subtracted).  ``groups``: test only the sources of
    these groups (None: all).  ``group_map``, ``wings``: as for `_unexplained`.
    """
    tested = _less_sky(models, sky)
    flux = [float(np.clip(m.model, 0, None).sum()) for m in tested]
    kept = list(range(len(models)))
    for i in sorted(kept, key=lambda i: flux[i]):
        m = models[i]
        if groups is not None and m.group not in groups:
            continue
        if not any(k != i and models[k].group == m.group and flux[k] > flux[i] for k in kept):
            continue
        others = [tested[k] for k in kept if k != i]
        if not (_unexplained([(m.center[0], m.center[1], m.group)], others, signal, noise,
                             aperture, min_snr, strict=False, group_map=group_map,
                             wings=wings)
                or _model_stands_out(tested[i], others, signal, noise, aperture, min_snr,
                                     group_map=group_map, wings=wings)):
            kept.remove(i)
    return [models[i] for i in sorted(kept)]


def _model_stands_out(model, others, signal, noise, aperture, min_snr, *, group_map=None,
                      wings=None):
    """Whether ``model``'s light stands out of the data less ``others``' models.

    A matched filter: the residual (data less the other models, bands
    weighted by their noise, `_residual`) is weighted by the model inside
    its footprint, and its sum, in units of its noise, must reach
    ``min_snr``, and hold at least half of the same weighted sum of the
    data.  The noise is white scaled by the data's measured aperture noise
    at the model's centre (``aperture``, as `_significance`: correlated
    noise counts).  Unlike the 3x3 aperture of `_unexplained`, which the
    light of an extended faint galaxy around its peak fills, the filter
    follows the source's whole light: a diffuse companion next to a
    brighter galaxy stands out; a knot or an arm whose light the galaxy's
    model holds leaves nothing for it.
    """
    weights = (1.0 / np.asarray(noise, dtype=np.float32))[:, None, None]
    shape = np.clip(model.model, 0, None)
    shape = (shape * weights).sum(axis=0)
    if model.footprint is not None:
        shape = shape * model.footprint
    norm = float(np.sqrt((shape.astype(np.float64) ** 2).sum()))
    if not norm > 0:
        return False
    light, residual = _residual(model.box, others, signal, weights, group_map=group_map,
                                wings=wings)
    # white noise: each pixel of the band-summed S/N has variance C; scaled as
    # the data's 3x3 aperture noise at the centre (light / aperture) is to white
    h, w = signal.shape[1:]
    col = min(max(int(round(model.center[0])), 0), w - 1)
    row = min(max(int(round(model.center[1])), 0), h - 1)
    core = (signal[:, max(row - 1, 0):row + 2, max(col - 1, 0):col + 2] * weights).sum()
    white = np.sqrt(len(signal) * 9.0)
    scale = (float(core) / float(aperture[row, col]) / white
             if core > 0 and aperture[row, col] > 0 else 1.0)
    filtered = float((residual * shape).sum())
    total = float((light * shape).sum())
    snr = filtered / (norm * np.sqrt(len(signal)) * max(scale, 1e-6))
    return snr >= min_snr and filtered >= 0.5 * total


def _monotonic_model(source):
    """Return a copy of ``source``'s ``(C, h, w)`` model made monotonic from its centre."""
    copy = SourceModel(source.center, source.box, source.model.copy(), group=source.group)
    monotonic(copy)
    return copy.model


def _residual(box, models, signal, weights, *, group_map=None, wings=None):
    """Band-summed S/N of the data and of the data less ``models`` over ``box``.

    ``box``: ``(y0, y1, x0, x1)`` in the frame; ``weights``: ``1 / noise`` per
    band, shaped ``(C, 1, 1)``.  Returns ``(light, residual)``, two
    ``(y1 - y0, x1 - x0)`` arrays.  ``group_map``, ``wings``: as for
    `_unexplained` (on another group, outside its footprint, a model takes
    off only its monotonic part).
    """
    y0, y1, x0, x1 = box
    light = (signal[:, y0:y1, x0:x1] * weights).sum(axis=0)
    residual = light.copy()
    wings = {} if wings is None else wings
    for m in models:
        where = _overlap(m.box, box)
        if where is None:
            continue
        outer, inner = where
        sub = (m.model[(slice(None), *inner)] * weights).sum(axis=0)
        if group_map is not None and m.footprint is not None:
            # on another group, outside its footprint, a model explains
            # only its monotonic part: its own wings, not a neighbour's
            # light the generator passed through
            foreign = ~m.footprint[inner] & (group_map[y0:y1, x0:x1][outer] != 0)
            if foreign.any():
                kept = wings.get(id(m))
                if kept is None or kept[0] is not m:  # (the model held: no id reuse)
                    kept = wings[id(m)] = (m, _monotonic_model(m))
                sub = np.where(foreign, np.minimum(
                    sub, (kept[1][(slice(None), *inner)] * weights).sum(axis=0)), sub)
        residual[outer] -= sub
    return light, residual


def _overlap(box, window):
    """Where ``box`` overlaps ``window`` (both ``(y0, y1, x0, x1)`` in the frame).

    Returns ``(in_window, in_box)``, the overlap's ``(slice_y, slice_x)`` in
    each, or None when they do not overlap.
    """
    y0, y1 = max(box[0], window[0]), min(box[1], window[1])
    x0, x1 = max(box[2], window[2]), min(box[3], window[3])
    if y1 <= y0 or x1 <= x0:
        return None
    return ((slice(y0 - window[0], y1 - window[0]), slice(x0 - window[2], x1 - window[2])),
            (slice(y0 - box[0], y1 - box[0]), slice(x0 - box[2], x1 - box[2])))


def _unexplained(candidates, models, signal, noise, aperture, min_snr, *, strict=True,
                 group_map=None, wings=None):
    """Return the candidate peaks whose light the models leave unexplained.

    Around each candidate the residual (data minus every model, bands
    weighted by their noise) is measured in a 3x3 aperture and, per pixel,
    in a ring 4-7 pixels out.  A candidate is kept when the residual in the
    aperture stands out of the ring's level by ``min_snr`` (the aperture's
    noise scaled from the data's aperture signal-to-noise ``aperture``) and
    holds more than half of the aperture's light, or, farther than 2.5
    half-light radii from every source, when it stands out at all by
    ``min_snr``.  A star or a faint companion next to a galaxy leaves a
    peak in the residual; a knot the generator gives to its galaxy does
    not, nor does the smooth outskirt of a galaxy its model underestimates.
    ``strict=False`` keeps every candidate that stands out by ``min_snr``.
    With ``group_map`` (the frame's detection groups), a model explains the
    light of another group outside its footprint only as far as the model
    made monotonic from its centre (`~astrodeblend.footprints.monotonic`)
    holds it: its wings, not a star its generator stamp passed through.
    ``wings``: a dict that keeps those copies between calls on the same
    models (keyed by the model's ``id``, the model kept beside its copy).
    """
    if not candidates:
        return []
    # half-light radii only for the strict test's "apart" condition
    sizes = [_half_light_radius(m) for m in models] if strict else None
    h, w = signal.shape[1:]
    weights = (1.0 / np.asarray(noise, dtype=np.float32))[:, None, None]
    yy, xx = np.mgrid[-7:8, -7:8]
    rr = np.hypot(xx, yy)
    core, ring = rr <= 1.5, (rr >= 4) & (rr <= 7)
    added = []
    wings = {} if wings is None else wings
    for x, y, label in candidates:
        col, row = int(round(x)), int(round(y))
        y0, x0 = max(row - 7, 0), max(col - 7, 0)
        y1, x1 = min(row + 8, h), min(col + 8, w)
        light, residual = _residual((y0, y1, x0, x1), models, signal, weights,
                                    group_map=group_map, wings=wings)
        window = (slice(y0 - row + 7, y1 - row + 7), slice(x0 - col + 7, x1 - col + 7))
        in_core, in_ring = core[window], ring[window]
        light_core = float(light[in_core].sum())
        if not (light_core > 0 and in_ring.any()):
            continue
        peak = float(residual[in_core].sum() - in_core.sum() * np.median(residual[in_ring]))
        sigma = light_core / max(float(aperture[row, col]), 1e-6)  # aperture noise
        if not peak / sigma >= min_snr:
            continue
        if not strict or residual[in_core].sum() > 0.5 * light_core or all(
                np.hypot(x - m.center[0], y - m.center[1]) > 2.5 * r
                for m, r in zip(models, sizes, strict=True)):
            added.append((x, y, label))
    return added


def _merge_duplicates(models, *, similarity=0.9, sky=None, reach=1.0, where=None):
    """Drop sources whose model is the same galaxy as a brighter neighbour's.

    Where the generator, asked for two centres within ``reach`` times the
    brighter one's half-light radius, returns nearly the same image (cosine
    similarity of the band-summed positive models, less ``sky``, above
    ``similarity``), the two centres are taken for one galaxy: the fainter
    model is dropped.  With ``where`` (``bool (H, W)``), only a source whose
    centre lies on a true pixel can be dropped.
    """
    models_sky = [m.model for m in _less_sky(models, sky)]
    order = sorted(range(len(models)), key=lambda i: -float(models_sky[i].sum()))
    radius = {i: _half_light_radius(models[i]) for i in range(len(models))}
    kept = []
    for i in order:
        m = models[i]
        duplicate = False
        if where is not None and not where[
                min(max(int(round(m.center[1])), 0), where.shape[0] - 1),
                min(max(int(round(m.center[0])), 0), where.shape[1] - 1)]:
            kept.append(i)
            continue
        for j in kept:
            k = models[j]
            if k.group != m.group or np.hypot(m.center[0] - k.center[0],
                                             m.center[1] - k.center[1]) > reach * radius[j]:
                continue
            y0, y1 = max(m.box[0], k.box[0]), min(m.box[1], k.box[1])
            x0, x1 = max(m.box[2], k.box[2]), min(m.box[3], k.box[3])
            if y1 <= y0 or x1 <= x0:
                continue
            a = np.clip(models_sky[i].sum(axis=0), 0, None)
            b = np.clip(models_sky[j].sum(axis=0), 0, None)
            na, nb = np.sqrt((a ** 2).sum()), np.sqrt((b ** 2).sum())
            if not (na > 0 and nb > 0):
                continue
            a = a[y0 - m.box[0]:y1 - m.box[0], x0 - m.box[2]:x1 - m.box[2]]
            b = b[y0 - k.box[0]:y1 - k.box[0], x0 - k.box[2]:x1 - k.box[2]]
            if float((a * b).sum()) / (na * nb) > similarity:
                duplicate = True
                break
        if not duplicate:
            kept.append(i)
    return [models[i] for i in sorted(kept)]


#: `_close_pairs`: sources of one group closer than this many half-light radii (the
#: larger of the two) are tested as halves of one galaxy
_JOIN_REACH = 2.0

#: `_join_halves`: one source between two replaces them where its chi^2 is below this
#: part of theirs
_JOIN_RATIO = 0.1


def _close_pairs(models, *, reach=_JOIN_REACH):
    """Return ``(i, j)`` index pairs of sources of one group within ``reach`` radii."""
    radius = {}
    pairs = []
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            a, b = models[i], models[j]
            if not (a.group and a.group == b.group):
                continue
            for k in (i, j):
                if k not in radius:
                    radius[k] = _half_light_radius(models[k])
            gap = float(np.hypot(a.center[0] - b.center[0], a.center[1] - b.center[1]))
            if gap <= reach * max(radius[i], radius[j]):
                pairs.append((i, j))
    return pairs


def _flux_midpoint(a, b):
    """Return the flux-weighted mean of two sources' centres."""
    fa = max(float(np.clip(a.model, 0, None).sum()), 1e-12)
    fb = max(float(np.clip(b.model, 0, None).sum()), 1e-12)
    return ((fa * a.center[0] + fb * b.center[0]) / (fa + fb),
            (fa * a.center[1] + fb * b.center[1]) / (fa + fb))


def _fit_chi2(parts, target, bad, weights, inside, origin):
    """chi^2 of ``target`` less ``parts``, their amplitudes fitted to it, over ``inside``.

    ``target``: ``(C, h, w)`` data of a box at ``origin`` ``(y0, x0)`` of the
    frame; ``parts``: frame `~astrodeblend.footprints.SourceModel` copies of
    which are fitted (`~astrodeblend.footprints.fit_amplitudes`); ``weights``:
    ``1 / noise**2`` per band.
    """
    y0, x0 = origin
    local = [dataclasses.replace(p, model=p.model.copy(), box=(
        p.box[0] - y0, p.box[1] - y0, p.box[2] - x0, p.box[3] - x0)) for p in parts]
    fit_amplitudes(target, bad, local)
    rest = target.copy()
    for p in local:
        rest[:, p.box[0]:p.box[1], p.box[2]:p.box[3]] -= p.model
    use = inside[None] & ~bad
    return float(np.sum((rest ** 2 * weights)[use]))


def _join_halves(models, pairs, singles, signal, bad, noise, *, ratio=_JOIN_RATIO):
    """Replace pairs of sources by the one source between them where it fits far better.

    The detector sometimes puts two centres on one irregular or elongated
    galaxy, on either side of its middle, and the generator then extracts
    a half for each.  For each close pair of sources of one group, the
    generator's extraction at their flux-weighted midpoint (``singles``)
    and the pair together are each fitted to the data less every other
    source (amplitudes per band, `~astrodeblend.footprints.fit_amplitudes`);
    where the one source's chi^2 over the three footprints is below
    ``ratio`` times the pair's, the pair is one galaxy and the one source
    replaces it.  Two galaxies are not fitted far better by one extraction
    between them; the halves of one galaxy leave its middle unexplained.
    Closest pairs first; a source joins at most once.

    Returns
    -------
    tuple
        ``(models, n_joined)``.
    """
    out = list(models)
    joined = set()
    order = sorted(range(len(pairs)), key=lambda k: np.hypot(
        models[pairs[k][0]].center[0] - models[pairs[k][1]].center[0],
        models[pairs[k][0]].center[1] - models[pairs[k][1]].center[1]))
    weights = 1.0 / np.asarray(noise, np.float64)[:, None, None] ** 2
    for k in order:
        i, j = pairs[k]
        if i in joined or j in joined:
            continue
        a, b, single = models[i], models[j], singles[k]
        window = (min(a.box[0], b.box[0], single.box[0]), max(a.box[1], b.box[1], single.box[1]),
                  min(a.box[2], b.box[2], single.box[2]), max(a.box[3], b.box[3], single.box[3]))
        y0, y1, x0, x1 = window
        target = signal[:, y0:y1, x0:x1].astype(np.float64)
        for q, m in enumerate(out):  # the others as they stand (a pair joined: its source)
            where = None if m is None or q in (i, j) else _overlap(m.box, window)
            if where is not None:
                target[(slice(None), *where[0])] -= m.model[(slice(None), *where[1])]
        inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for m in (a, b, single):
            if m.footprint is not None:
                inside[_overlap(m.box, window)[0]] |= m.footprint
        local_bad = bad[:, y0:y1, x0:x1]
        two = _fit_chi2([a, b], target, local_bad, weights, inside, (y0, x0))
        one = _fit_chi2([single], target, local_bad, weights, inside, (y0, x0))
        if one < ratio * two:
            joined |= {i, j}
            out[i], out[j] = single, None
    return [m for m in out if m is not None], len(joined) // 2


def _model_centre(model, sky=None, *, radius=3.0, steps=5):
    """Return the peak of a source's model nearest its detected centre.

    Mean shift on the model's positive light (bands summed, less ``sky``
    for display models): the centre moves, a few times, to the light-weighted
    mean within a Gaussian window of ``radius`` pixels around it, so it climbs
    to the model's nearest peak and stays off its neighbours' leaked light
    and its own faint wings.  A model without light there keeps the centre.
    """
    y0, _, x0, _ = model.box
    h, w = model.model.shape[1:]
    reach = int(np.ceil(4 * radius))  # the window, cut at 4 sigma
    x, y = model.center
    for _ in range(steps):
        row, col = int(round(y)) - y0, int(round(x)) - x0
        rows = slice(min(max(row - reach, 0), h), min(max(row + reach + 1, 0), h))
        cols = slice(min(max(col - reach, 0), w), min(max(col + reach + 1, 0), w))
        plane = model.model[:, rows, cols].sum(axis=0)
        if sky is not None:
            plane = plane - float(np.sum(sky))
        yy, xx = np.mgrid[rows, cols]
        weight = np.clip(plane, 0, None) * np.exp(
            -0.5 * ((xx + x0 - x) ** 2 + (yy + y0 - y) ** 2) / radius ** 2)
        total = float(weight.sum())
        if not total > 0:
            break
        x = float((weight * xx).sum() / total) + x0
        y = float((weight * yy).sum() / total) + y0
    return x, y


def _half_light_radius(model):
    """Radius (pixels) around the model's centre holding half of its positive light."""
    plane = np.clip(model.model.sum(axis=0), 0, None)
    total = plane.sum()
    if not total > 0:
        return 1.0
    yy, xx = np.mgrid[model.box[0]:model.box[1], model.box[2]:model.box[3]]
    r = np.hypot(xx - model.center[0], yy - model.center[1]).ravel()
    order = np.argsort(r)
    cumulative = np.cumsum(plane.ravel()[order])
    return max(float(r[order][np.searchsorted(cumulative, 0.5 * total)]), 1.0)
