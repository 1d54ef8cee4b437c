"""`plot_deblend_result`: the quick look at one deblended image."""

from __future__ import annotations

import math

import numpy as np

from ._figure import _display_plane, _new_figure, save_figure

#: Largest number of pixels per side drawn for a frame panel; larger frames
#: are averaged over blocks first, so a figure of a huge mosaic stays small.
MAX_PANEL_PIXELS = 1024

#: Colour of masked (NaN) residual pixels.
MASKED_COLOR = "gold"


def plot_deblend_result(result, path=None, *, truth=None, truth_centers=None, max_sources=10,
                        match_distance=5.0, overwrite=False):
    """Quick-look figure of a deblended image: blend, footprints, residual and sources.

    Top row: the blend with each source's centre and catalog id; the
    segmentation map (each footprint in its own colour, the catalog bounding
    boxes outlined in the same colour); the residual (blend minus all
    sources, band mean, less its median off the footprints: the sky) in units of the image noise on
    a symmetric +-3 sigma scale, masked pixels in `MASKED_COLOR`.  Below, one panel per
    shown source ("source 1" is catalog id 1) over the square around its
    cutout; with ``truth``, the true galaxy matched to that source is drawn
    under it ("truth for source 1").

    Linear images are shown with a ``1/2.2`` power stretch, display images
    (JPG) as they are; the blend and every source and truth panel share one
    brightness scale, so flux errors show.  Only cutouts are read
    (`DeblendResult.source_slices`), never the N full frames of
    `DeblendResult.sources`, and frames larger than `MAX_PANEL_PIXELS` are
    block-averaged before drawing, so large images cost about one frame of
    memory.

    Parameters
    ----------
    result : `~astrodeblend.DeblendResult`
        What a deblender returned.
    path : str or `~pathlib.Path`, optional
        Also save the figure there (atomically).
    truth : array-like, optional
        ``(K, C, H, W)`` true components in the blend frame (any order).
    truth_centers : array-like, optional
        ``(K, 2)`` true ``(x, y)`` centres of ``truth``.  Truths are matched
        to the catalog centres one-to-one (`astrodeblend.metrics.match_sources`)
        using these centres, or without them the flux-weighted centroids
        of the truth images; sources still unmatched are paired by the
        overlap of their images (cosine similarity of at least 0.5).
    max_sources : int, optional
        Show at most this many sources (the brightest, in catalog order).
    match_distance : float, optional
        Largest distance in pixels between a truth's centre and the
        catalog centre of its source.
    overwrite : bool, optional
        Replace an existing ``path``.

    Returns
    -------
    `matplotlib.figure.Figure`

    Raises
    ------
    InvalidInputError
        If ``truth`` is not ``(K, C, H, W)`` in the blend's shape, or
        ``truth_centers`` does not have one ``(x, y)`` per truth.

    Examples
    --------
    >>> from astrodeblend import DeblendResult, GalaxyImage
    >>> blend = GalaxyImage(np.ones((3, 8, 8)))
    >>> sources = blend.data[None] * 0.5
    >>> cat = DeblendResult.make_catalog(blend, sources, [3.0], [4.0])
    >>> result = DeblendResult(blend, sources, cat, np.ones((8, 8)))
    >>> fig = plot_deblend_result(result, truth=sources)
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()][3:]
    ['source 1', 'truth for source 1']
    """
    from matplotlib.patches import Patch, Rectangle

    blend = result.blend
    linear = not bool(blend.meta.get("ADBDISP", False))
    _, height, width = blend.shape
    factor = max(1, math.ceil(max(height, width) / MAX_PANEL_PIXELS))
    shown_blend = _block_mean(blend.filled(0.0), factor)
    segmap = result.segmap
    ids = [int(v) for v in result.catalog["id"]]
    peak = _display_peak(shown_blend, segmap[::factor, ::factor][:shown_blend.shape[1],
                                                                 :shown_blend.shape[2]],
                         linear=linear)
    if truth is not None:
        truth = _check_truth(truth, blend.shape, truth_centers)
    matched = {} if truth is None else _match_truths(result, truth, truth_centers,
                                                     max_distance=match_distance)
    order = np.argsort(result.fluxes)[::-1][:max_sources]
    entries = [(int(i), matched.get(int(i))) for i in sorted(order)]
    if truth is not None:
        entries += [(None, j) for j in range(len(truth)) if j not in matched.values()]

    n_cols = max(3, min(len(entries), 5))
    rows_per_entry = 1 if truth is None else 2
    n_lower = rows_per_entry * math.ceil(len(entries) / n_cols)
    fig = _new_figure((2.4 * n_cols, 2.5 * (1 + n_lower)))
    # two sub-figures, so that the colour bar of the residual does not
    # narrow a column of source panels
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, n_lower]) if n_lower else (fig, None)
    axes = top.subplots(1, 3, squeeze=False)
    lower = (bottom.subplots(n_lower, n_cols, squeeze=False) if n_lower
             else np.zeros((0, n_cols), dtype=object))
    frame_extent = (-0.5, shown_blend.shape[2] * factor - 0.5,
                    -0.5, shown_blend.shape[1] * factor - 0.5)

    # blend with centres and ids
    ax = axes[0, 0]
    shown = _display_plane(shown_blend, peak, linear=linear)
    ax.imshow(shown, origin="lower", cmap=None if shown.ndim == 3 else "gray", vmin=0, vmax=1,
              extent=frame_extent, interpolation="nearest")
    ax.set_title("blend", fontsize=9)
    x, y = (np.asarray(result.catalog[c], dtype=float) for c in ("x_centroid", "y_centroid"))
    crowded = result.n_sources > 30
    ax.plot(x, y, "." if crowded else "+", color="tab:red", markersize=2 if crowded else 8)
    for i in order if crowded else range(result.n_sources):  # ids of the shown ones
        ax.annotate(str(ids[i]), (x[i], y[i]), xytext=(5, 5), textcoords="offset points",
                    color="white", fontsize=9, fontweight="bold")
    _frame_limits(ax, width, height)

    # segmentation: footprints and catalog boxes
    ax = axes[0, 1]
    colors = _label_colors()
    seg = segmap[::factor, ::factor]
    labels = np.where(seg > 0, (seg - 1) % (len(colors) - 1) + 1, 0)
    from matplotlib.colors import ListedColormap

    ax.imshow(labels, origin="lower", cmap=ListedColormap(colors), vmin=-0.5,
              vmax=len(colors) - 0.5, interpolation="nearest",
              extent=(-0.5, seg.shape[1] * factor - 0.5, -0.5, seg.shape[0] * factor - 0.5))
    if result.n_sources <= 100:
        for i, source_id in enumerate(ids):
            row = result.catalog[i]
            color = colors[(source_id - 1) % (len(colors) - 1) + 1]
            ax.add_patch(Rectangle((row["bbox_xmin"] - 0.5, row["bbox_ymin"] - 0.5),
                                   row["bbox_xmax"] - row["bbox_xmin"] + 1,
                                   row["bbox_ymax"] - row["bbox_ymin"] + 1,
                                   fill=False, edgecolor=color, linewidth=1, linestyle="--"))
    n_foot = len(np.unique(segmap[segmap > 0]))
    ax.set_title(f"footprints ({n_foot}) and boxes", fontsize=9)
    _frame_limits(ax, width, height)

    # residual on its own symmetric scale
    ax = axes[0, 2]
    residual = _block_mean(result.residual.data, factor).mean(axis=0)
    sky, sigma = _sky_and_noise_of_mean(result, residual, seg[:residual.shape[0],
                                                              :residual.shape[1]])
    residual -= sky
    cmap = _diverging_with_bad()
    image = ax.imshow(residual / sigma, origin="lower", cmap=cmap, vmin=-3, vmax=3,
                      extent=frame_extent, interpolation="nearest")
    top.colorbar(image, ax=ax, shrink=0.8, label="residual / noise σ")
    ax.set_title(f"residual − sky (σ = {sigma:.3g})", fontsize=9)
    if np.isnan(residual).any():
        ax.legend(handles=[Patch(color=MASKED_COLOR, label="masked")], loc="lower right",
                  fontsize=7, framealpha=0.8)
    _frame_limits(ax, width, height)

    # one column per source, its matched truth underneath
    for k, (i, j) in enumerate(entries):
        row0 = rows_per_entry * (k // n_cols)
        col = k % n_cols
        if i is not None:
            area = _square_area(result.source_slices(i), height, width)
            panel = np.zeros((blend.n_bands, area[0].stop - area[0].start,
                              area[1].stop - area[1].start), dtype=np.float32)
            sy, sx = result.source_slices(i)
            panel[:, sy.start - area[0].start:sy.stop - area[0].start,
                  sx.start - area[1].start:sx.stop - area[1].start] = result.cutouts[i]
            title = f"source {ids[i]}"
            if k == len(order) - 1 and result.n_sources > max_sources:
                title += f" (+{result.n_sources - max_sources} fainter)"
            _area_panel(lower[row0, col], panel, area, peak, linear, title)
            lower[row0, col].plot(x[i], y[i], "+", color="tab:red", markersize=6)
            if truth is not None:
                if j is None:
                    lower[row0 + 1, col].text(0.5, 0.5, f"no truth matched\nto source {ids[i]}",
                                             ha="center", va="center", fontsize=8,
                                             transform=lower[row0 + 1, col].transAxes)
                else:
                    _area_panel(lower[row0 + 1, col], truth[j][:, area[0], area[1]], area, peak,
                                linear, f"truth for source {ids[i]}")
        else:
            area = (slice(0, height), slice(0, width))
            _area_panel(lower[row0 + 1, col], truth[j], area, peak, linear,
                        f"truth {j + 1}: not detected")
    for ax in [*axes.ravel(), *lower.ravel()]:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images and not ax.texts:
            ax.set_axis_off()
    if path is not None:
        save_figure(fig, path, overwrite=overwrite)
    return fig


def _block_mean(array, factor):
    """Average the last two axes of ``array`` over ``factor`` x ``factor`` blocks (float32).

    Edge rows and columns that do not fill a block are dropped.  A factor of
    1 returns the array as float32 (no copy when it already is).
    """
    array = np.asarray(array, dtype=np.float32)
    if factor <= 1:
        return array
    h, w = (n // factor * factor for n in array.shape[-2:])
    if h == 0 or w == 0:
        return array[..., ::factor, ::factor]
    blocks = array[..., :h, :w].reshape(*array.shape[:-2], h // factor, factor,
                                        w // factor, factor)
    return blocks.mean(axis=(-3, -1), dtype=np.float32)


def _display_peak(blend, segmap, *, linear):
    """Brightness scale of the panels: the 99.5th percentile of the blend's band mean.

    Taken over the footprint pixels when there are any (so that a large,
    mostly empty frame does not set the scale at the sky), else over all.
    """
    if not linear:
        return 1.0
    plane = blend.mean(axis=0)
    inside = plane[segmap > 0] if segmap.shape == plane.shape and (segmap > 0).any() else plane
    inside = inside[np.isfinite(inside)]
    peak = float(np.percentile(inside, 99.5)) if inside.size else 0.0
    return peak if peak > 0 else 1.0


def _sky_and_noise_of_mean(result, residual, segmap):
    """Sky level of the band-mean residual and noise sigma of the band-mean image.

    The sky is the median residual off the footprints (``segmap == 0``,
    at least 50 pixels), else the blend's sky; the noise is the blend's
    (`astrodeblend.detect.background_and_noise` with sources masked), or
    where that fails a third of the 99th percentile of ``|residual|``.
    """
    from ..detect import background_and_noise

    n_bands = result.blend.n_bands
    try:
        background, noise = background_and_noise(result.blend, mask_sources=True)
        sky = float(np.mean(background))
        sigma = float(np.sqrt(np.sum(np.square(noise, dtype=np.float64))) / n_bands)
    except (ValueError, FloatingPointError):
        sky, sigma = 0.0, math.nan
    off = residual[(segmap == 0) & np.isfinite(residual)] if segmap.shape == residual.shape \
        else np.zeros(0)
    if off.size >= 50:
        sky = float(np.median(off))
    if not np.isfinite(sky):
        sky = 0.0
    if not (np.isfinite(sigma) and sigma > 0):
        finite = np.abs(residual[np.isfinite(residual)] - sky)
        sigma = float(np.percentile(finite, 99)) / 3 if finite.size else 0.0
    return sky, (sigma if np.isfinite(sigma) and sigma > 0 else 1.0)


def _diverging_with_bad():
    from matplotlib import colormaps

    return colormaps["RdBu_r"].with_extremes(bad=MASKED_COLOR)


def _label_colors():
    """Black for the background, then the 20 colours of ``tab20`` for the labels.

    The dark shades come first, then the light ones, so that consecutive
    labels never get two shades of one hue.
    """
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    return [(0.0, 0.0, 0.0, 1.0), *[(*tab20[k], 1.0) for k in (*range(0, 20, 2),
                                                                *range(1, 20, 2))]]


def _frame_limits(ax, width, height):
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(-0.5, height - 0.5)


def _square_area(slices, height, width):
    """Return ``(slice_y, slice_x)``: the square around a cutout box, clipped to the frame."""
    sy, sx = slices
    side = max(sy.stop - sy.start, sx.stop - sx.start)

    def grow(lo, hi, n):
        start = max(0, lo - (side - (hi - lo)) // 2)
        stop = min(n, start + side)
        return slice(max(0, stop - side), stop)

    return grow(sy.start, sy.stop, height), grow(sx.start, sx.stop, width)


def _area_panel(ax, image, area, peak, linear, title):
    """Draw ``(C, h, w)`` pixels of the frame area ``(slice_y, slice_x)`` into ``ax``."""
    sy, sx = area
    factor = max(1, math.ceil(max(sy.stop - sy.start, sx.stop - sx.start)
                              / (MAX_PANEL_PIXELS // 2)))
    shown = _display_plane(_block_mean(image, factor), peak, linear=linear)
    extent = (sx.start - 0.5, sx.start + shown.shape[1] * factor - 0.5,
              sy.start - 0.5, sy.start + shown.shape[0] * factor - 0.5)
    ax.imshow(shown, origin="lower", cmap=None if shown.ndim == 3 else "gray", vmin=0, vmax=1,
              extent=extent, interpolation="nearest")
    ax.set_xlim(sx.start - 0.5, sx.stop - 0.5)
    ax.set_ylim(sy.start - 0.5, sy.stop - 0.5)
    ax.set_title(title, fontsize=9)


def _check_truth(truth, shape, centers):
    """Return ``truth`` as float32 ``(K, C, H, W)``; check ``centers`` against it."""
    from ..errors import InvalidInputError

    truth = np.asarray(truth, dtype=np.float32)
    if truth.ndim == 3 and shape[0] == 1:
        truth = truth[:, np.newaxis]
    if truth.ndim != 4 or truth.shape[1:] != tuple(shape):
        expected = ", ".join(map(str, shape))
        raise InvalidInputError(f"truth must have shape (K, {expected}) like the blend, "
                                f"not {truth.shape}")
    if centers is not None and np.shape(centers) != (len(truth), 2):
        raise InvalidInputError(f"truth_centers must have shape ({len(truth)}, 2) as (x, y), "
                                f"one per truth, not {np.shape(centers)}")
    return truth


def _flux_centroids(truth):
    """Flux-weighted ``(x, y)`` of each ``(C, H, W)`` truth (positive light); NaN if empty."""
    plane = np.clip(np.nan_to_num(truth.sum(axis=1)), 0, None)
    total = plane.sum(axis=(1, 2))
    ys, xs = np.indices(plane.shape[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (plane * xs).sum(axis=(1, 2)) / total
        cy = (plane * ys).sum(axis=(1, 2)) / total
    return np.column_stack([cx, cy])


def _match_truths(result, truth, centers, *, max_distance=5.0):
    """Return ``{source index: truth index}``, one-to-one (see `plot_deblend_result`)."""
    from scipy.optimize import linear_sum_assignment

    from ..metrics import match_sources

    centers = _flux_centroids(truth) if centers is None else np.asarray(centers, dtype=float)
    found = np.column_stack([np.asarray(result.catalog[c], dtype=float)
                             for c in ("x_centroid", "y_centroid")]).reshape(-1, 2)
    good_t = np.flatnonzero(np.isfinite(centers).all(axis=1))
    good_f = np.flatnonzero(np.isfinite(found).all(axis=1))
    matched = {}
    if good_t.size and good_f.size:
        pairs = match_sources(centers[good_t], found[good_f], max_distance=max_distance).pairs
        matched = {int(good_f[f]): int(good_t[t]) for t, f in pairs}
    left_f = [i for i in range(result.n_sources) if i not in matched]
    left_t = [j for j in range(len(truth)) if j not in matched.values()]
    if left_f and left_t:
        similarity = np.zeros((len(left_t), len(left_f)))
        norms_t = np.sqrt(np.sum(np.square(truth[left_t], dtype=np.float64), axis=(1, 2, 3)))
        for b, i in enumerate(left_f):
            cut = result.cutouts[i].astype(np.float64)
            norm_c = np.sqrt(np.sum(cut * cut))
            sy, sx = result.source_slices(i)
            for a, j in enumerate(left_t):
                if norm_c > 0 and norms_t[a] > 0:
                    similarity[a, b] = np.sum(truth[j][:, sy, sx] * cut) / (norm_c * norms_t[a])
        rows, cols = linear_sum_assignment(-similarity)
        for a, b in zip(rows, cols, strict=True):
            if similarity[a, b] >= 0.5:
                matched[left_f[b]] = left_t[a]
    return matched
