"""Every figure of astrodeblend (matplotlib, no pyplot state).

Figures are built as `matplotlib.figure.Figure` objects with the Agg canvas,
so plotting works without a display and never touches pyplot's global
state.  Functions that take ``path`` also save the figure there through
`astrodeblend.io.atomic_write` and return the figure either way.

Images are shown with ``origin='lower'`` (row 0 at the bottom, FITS
orientation); three-band images as RGB (bands in order r, g, b), others as
the band mean in grey.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["save_figure", "plot_training_history", "plot_sample_grid", "plot_image_grid",
           "plot_evaluation_gallery", "plot_metric_histogram", "plot_deblend_result"]


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, *, overwrite=False, dpi=100):
    """Save ``fig`` atomically (PNG, PDF, SVG, ... from the suffix).

    Parameters
    ----------
    fig : `matplotlib.figure.Figure`
        The figure.
    path : str or `~pathlib.Path`
        Output file.
    overwrite : bool, optional
        Replace an existing file.
    dpi : int, optional
        Resolution of raster outputs.

    Returns
    -------
    `~pathlib.Path`

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> fig = plot_image_grid(np.zeros((2, 3, 8, 8)))
    >>> out = save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "grid.png")
    >>> out.suffix
    '.png'
    """
    from pathlib import Path

    from .io import atomic_write

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_write(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def _display(image):
    """``(C, H, W)`` model-space image -> something for ``imshow`` in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return np.clip(image, 0, 1), "gray"
    if image.shape[0] == 3:
        return np.clip(np.moveaxis(image, 0, -1), 0, 1), None
    return np.clip(image.mean(axis=0), 0, 1), "gray"


def plot_training_history(history, path=None, *, overwrite=False):
    """Plot training losses and validation scores against the epoch.

    Left panel: the training losses (generator content, adversarial and
    flux terms, discriminator, detector) on a log scale.  Right panel: the
    validation PSNR of the generator (and of the untouched blend for
    reference) and the detector recall.

    Parameters
    ----------
    history : list of dict
        One dict per epoch with keys such as ``epoch``, ``loss_g_l1``,
        ``loss_g_adv``, ``loss_d``, ``loss_det``, ``val_psnr``,
        ``val_psnr_blend``, ``det_recall`` (missing keys are skipped).
    path : str or `~pathlib.Path`, optional
        Save the figure here (PNG).
    overwrite : bool, optional
        Replace an existing ``path``.

    Returns
    -------
    `matplotlib.figure.Figure`

    Examples
    --------
    >>> hist = [{"epoch": 1, "loss_g_l1": 0.5, "val_psnr": 20.0},
    ...         {"epoch": 2, "loss_g_l1": 0.3, "val_psnr": 22.5}]
    >>> fig = plot_training_history(hist)
    >>> len(fig.axes)
    2
    """
    fig = _new_figure((10, 4))
    ax_loss, ax_val = fig.subplots(1, 2)
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    labels = {"loss_g_l1": "G content (scaled L1)", "loss_g_adv": "G adversarial",
              "loss_g_flux": "G flux", "loss_d": "discriminator", "loss_det": "detector",
              "loss_sg": "sampler G", "loss_sd": "sampler D"}
    for key, label in labels.items():
        # a term that is switched off (0, e.g. adversarial during warm-up) is
        # left out of the log plot rather than drawn down to zero
        values = [v if v > 0 else np.nan for v in (_as_float(row.get(key)) for row in history)]
        if any(np.isfinite(values)):
            ax_loss.plot(epochs, values, marker="o", ms=3, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(fontsize="small")
    for key, label, style in (("val_psnr", "generator", "-o"),
                              ("val_psnr_blend", "blend (no deblending)", "--")):
        values = [_as_float(row.get(key)) for row in history]
        if any(np.isfinite(values)):
            ax_val.plot(epochs, values, style, ms=3, label=label)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation PSNR [dB]")
    recall = [_as_float(row.get("det_recall")) for row in history]
    if any(np.isfinite(recall)):
        ax_rec = ax_val.twinx()
        ax_rec.plot(epochs, recall, ":s", color="tab:green", ms=3, label="detector recall")
        ax_rec.set_ylabel("detector recall")
        ax_rec.set_ylim(0, 1.05)
        ax_rec.legend(loc="lower right", fontsize="small")
    if ax_val.get_legend_handles_labels()[0]:
        ax_val.legend(loc="upper left", fontsize="small")
    if path is not None:
        save_figure(fig, path, overwrite=overwrite)
    return fig


def _as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_sample_grid(blends, outputs, truths, path=None, *, title=None, overwrite=False):
    """Show deblending examples: one row per galaxy, columns blend | output | truth.

    Parameters
    ----------
    blends, outputs, truths : array-like
        ``(N, C, H, W)`` model-space images (the blend repeated for each of
        its galaxies).
    path : str or `~pathlib.Path`, optional
        Save the figure here.
    title : str, optional
        Figure title (e.g. the epoch).
    overwrite : bool, optional
        Replace an existing ``path``.

    Returns
    -------
    `matplotlib.figure.Figure`

    Raises
    ------
    InvalidInputError
        If the three arrays do not have the same ``(N, C, H, W)`` shape.

    Examples
    --------
    >>> x = np.zeros((2, 3, 16, 16))
    >>> len(plot_sample_grid(x, x, x).axes)
    6
    """
    from .errors import InvalidInputError

    blends, outputs, truths = (np.asarray(a, dtype=np.float32) for a in (blends, outputs, truths))
    if blends.ndim != 4 or not blends.shape == outputs.shape == truths.shape:
        raise InvalidInputError("blends, outputs and truths must all be (N, C, H, W) arrays of "
                                f"one shape, not {blends.shape}, {outputs.shape}, {truths.shape}")
    n = blends.shape[0]
    fig = _new_figure((6, 2 * n + 0.4))
    axes = np.atleast_2d(fig.subplots(n, 3, squeeze=False))
    for i in range(n):
        for j, (images, name) in enumerate(((blends, "blend"), (outputs, "output"),
                                            (truths, "truth"))):
            data, cmap = _display(images[i])
            axes[i, j].imshow(data, origin="lower", cmap=cmap, vmin=0, vmax=1,
                              interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(name)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path, overwrite=overwrite)
    return fig


def plot_image_grid(images, path=None, *, n_cols=None, title=None, overwrite=False):
    """Show ``(N, C, H, W)`` model-space images in a grid (e.g. GAN samples).

    Parameters
    ----------
    images : array-like
        ``(N, C, H, W)`` images with values in [0, 1].
    path : str or `~pathlib.Path`, optional
        Save the figure here.
    n_cols : int, optional
        Columns of the grid (about ``sqrt(N)`` by default).
    title : str, optional
        Figure title.
    overwrite : bool, optional
        Replace an existing ``path``.

    Returns
    -------
    `matplotlib.figure.Figure`

    Examples
    --------
    >>> fig = plot_image_grid(np.zeros((5, 1, 8, 8)), n_cols=3)
    >>> len(fig.axes)
    6
    """
    from .errors import InvalidInputError

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise InvalidInputError(f"images must be (N, C, H, W), not shape {images.shape}")
    n = images.shape[0]
    n_cols = n_cols or max(1, math.ceil(math.sqrt(n)))
    n_rows = max(1, math.ceil(n / n_cols))
    fig = _new_figure((1.6 * n_cols, 1.6 * n_rows + (0.3 if title else 0)))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            data, cmap = _display(images[i])
            ax.imshow(data, origin="lower", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path, overwrite=overwrite)
    return fig


# ----------------------------------------------------------- evaluation figures
def _display_plane(image, peak, *, linear):
    """Return an image for ``imshow``: RGB ``(H, W, 3)`` for 3 bands, else the band mean."""
    array = np.asarray(image, dtype=float)
    if array.ndim == 2:
        array = array[np.newaxis]
    scaled = np.clip(array / peak, 0, 1) if peak > 0 else np.zeros_like(array)
    if linear:
        scaled = scaled ** (1 / 2.2)
    if scaled.shape[0] == 3:
        return np.moveaxis(scaled, 0, -1)
    return scaled.mean(axis=0)


def plot_evaluation_gallery(blends, truths, predictions, residuals, path=None, *, linear=False,
                            galaxies=("A", "B"), overwrite=False):
    """Return a gallery of evaluation scenes: blend, truths and each method's answer.

    One row per scene.  Columns: the blend, the true galaxies, then for each
    method its source matched to each true galaxy (blank where the galaxy
    was not found) and its residual (blend minus all its sources, shown
    with a diverging colour map at +-25 % of the blend's peak, or at +-50 %
    after a signed ``1/2.2`` power stretch for linear images).  Every
    panel of a row shares the blend's brightness scale, so flux errors show.
    Three-band images are shown in colour, others as the band mean, with
    ``origin='lower'`` (row 0 at the bottom).

    Parameters
    ----------
    blends : sequence of array-like
        ``(C, H, W)`` blend of each scene.
    truths : sequence of array-like
        ``(N, C, H, W)`` true galaxies of each scene.
    predictions : dict of str to sequence of array-like
        Method name to ``(N, C, H, W)`` matched sources per scene (zeros for
        galaxies not found).
    residuals : dict of str to sequence of array-like
        Method name to the ``(C, H, W)`` residual of each scene.
    path : str or `~pathlib.Path`, optional
        Also save the figure there (`save_figure`).
    linear : bool, optional
        Values are linear flux: show them with a ``1/2.2`` power stretch.
    galaxies : sequence of str, optional
        Labels of the galaxies shown (the first ``len(galaxies)``).
    overwrite : bool, optional
        Replace an existing ``path``.

    Returns
    -------
    `matplotlib.figure.Figure`

    Examples
    --------
    >>> import numpy as np
    >>> blend = np.ones((3, 8, 8)); truth = np.stack([0.6 * blend, 0.4 * blend])
    >>> fig = plot_evaluation_gallery([blend], [truth], {"m": [truth]}, {"m": [0 * blend]})
    >>> len(fig.axes)
    6
    """
    methods = list(predictions)
    n_gal = len(galaxies)
    titles = ["blend", *[f"truth {g}" for g in galaxies]]
    for method in methods:
        titles += [f"{method} {g}" for g in galaxies] + [f"{method} residual"]
    n_rows, n_cols = max(len(blends), 1), len(titles)
    fig = _new_figure((1.6 * n_cols, 1.7 * n_rows + 0.3))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for row, blend in enumerate(blends):
        blend = np.asarray(blend, dtype=float)
        peak = float(np.max(blend)) if blend.size else 0.0
        panels = [blend, *[_pick(truths[row], j, blend) for j in range(n_gal)]]
        for method in methods:
            panels += [_pick(predictions[method][row], j, blend) for j in range(n_gal)]
            panels.append(("residual", np.asarray(residuals[method][row], dtype=float)))
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=8)
            if panel is None:
                continue
            if isinstance(panel, tuple):
                residual = panel[1].mean(axis=0) / (peak if peak > 0 else 1.0)
                if linear:
                    residual = np.sign(residual) * np.abs(residual) ** (1 / 2.2)
                limit = 0.5 if linear else 0.25
                ax.imshow(residual, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit,
                          interpolation="nearest")
            else:
                ax.imshow(_display_plane(panel, peak, linear=linear), origin="lower",
                          cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if path is not None:
        save_figure(fig, path, overwrite=overwrite)
    return fig


def _pick(stack, j, like):
    """Return galaxy ``j`` of a ``(N, C, H, W)`` stack, or None when absent."""
    stack = np.asarray(stack, dtype=float)
    if j >= len(stack):
        return None
    return stack[j].reshape(np.shape(like))


def plot_metric_histogram(table, column, path=None, *, by="method", bins=30, xlabel=None,
                          clip=None, overwrite=False):
    """Return histograms of one metric, one outline per method.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Per-galaxy rows, as ``evaluate(...).meta['scenes']``.
    column : str
        Column to histogram (``'psnr'``, ``'flux_error'``, ...).
    path : str or `~pathlib.Path`, optional
        Also save the figure there (`save_figure`).
    by : str, optional
        Column whose values get one histogram each.
    bins : int, optional
        Number of bins, shared by all groups.
    xlabel : str, optional
        Label of the x axis (``column`` by default).
    clip : (float or None, float or None), optional
        Limits applied to the values before binning (for example an
        infinite PSNR is drawn at the cap).
    overwrite : bool, optional
        Replace an existing ``path``.

    Returns
    -------
    `matplotlib.figure.Figure`

    Examples
    --------
    >>> from astropy.table import Table
    >>> t = Table({"method": ["a", "a", "b"], "psnr": [20.0, 25.0, float("inf")]})
    >>> fig = plot_metric_histogram(t, "psnr", clip=(None, 100.0))
    >>> len(fig.axes[0].patches)
    2
    """
    fig = _new_figure((5.5, 3.6))
    ax = fig.add_subplot()
    values = np.asarray(table[column], dtype=float)
    if clip is not None:
        values = np.clip(values, *(np.inf * s if c is None else c
                                   for c, s in zip(clip, (-1, 1), strict=True)))
    groups = list(dict.fromkeys(str(v) for v in table[by])) if len(table) else []
    labels = np.asarray([str(v) for v in table[by]])
    finite = values[np.isfinite(values)]
    edges = np.histogram_bin_edges(finite, bins=bins) if finite.size else bins
    for group in groups:
        chosen = values[(labels == group) & np.isfinite(values)]
        if chosen.size:
            ax.hist(chosen, bins=edges, histtype="step", linewidth=1.5,
                    label=f"{group} (median {np.median(chosen):.3g})")
    ax.set_xlabel(xlabel or column)
    ax.set_ylabel("galaxies")
    if groups:
        ax.legend(fontsize=8)
    if path is not None:
        save_figure(fig, path, overwrite=overwrite)
    return fig


def plot_deblend_result(result, path=None, *, truth=None, max_sources=10, overwrite=False):
    """Quick-look figure of a deblended image: blend, each source, residual.

    Linear images are shown with the power-law stretch the models use, all
    panels on the blend's scale; display images (JPG) as they are.  The
    detected centres are marked on the blend.

    Parameters
    ----------
    result : `~astrodeblend.result.DeblendResult`
        What a deblender returned.
    path : str or `~pathlib.Path`, optional
        Also save the figure there (atomically).
    truth : array-like, optional
        ``(N, C, H, W)`` true components, drawn as a second row.
    max_sources : int, optional
        Show at most this many sources (the brightest, in catalog order).
    overwrite : bool, optional
        Replace an existing ``path``.

    Returns
    -------
    `matplotlib.figure.Figure`

    Examples
    --------
    >>> from astrodeblend import DeblendResult, GalaxyImage
    >>> blend = GalaxyImage(np.ones((3, 8, 8)))
    >>> sources = blend.data[None] * 0.5
    >>> cat = DeblendResult.make_catalog(blend, sources, [3.0], [4.0])
    >>> fig = plot_deblend_result(DeblendResult(blend, sources, cat, np.zeros((8, 8))))
    >>> len(fig.axes)
    3
    """
    linear = not bool(result.blend.meta.get("ADBDISP", False))
    blend = result.blend.filled(0.0)
    peak = float(np.percentile(blend.mean(axis=0), 99.5)) if linear else 1.0
    panels = [("blend", blend)]
    order = np.argsort(result.fluxes)[::-1][:max_sources]
    panels += [(f"source {i + 1}", result.sources[i]) for i in sorted(order)]
    if result.n_sources > max_sources:
        panels[-1] = (f"{panels[-1][0]} (+{result.n_sources - max_sources} fainter)",
                      panels[-1][1])
    panels.append(("residual", result.residual.data))
    rows = 1 if truth is None else 2
    fig = _new_figure((2.4 * len(panels), 2.6 * rows))
    axes = fig.subplots(rows, len(panels), squeeze=False)
    for ax, (title, image) in zip(axes[0], panels, strict=True):
        shown = _display_plane(image, peak, linear=linear)
        ax.imshow(shown, origin="lower", cmap=None if shown.ndim == 3 else "gray",
                  vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
    axes[0, 0].plot(result.catalog["x_centroid"], result.catalog["y_centroid"], "+",
                    color="tab:red", markersize=8)
    if truth is not None:
        truth = np.asarray(truth, dtype=np.float32)
        for j, ax in enumerate(axes[1]):
            if 0 < j <= len(truth):
                ax.imshow(_display_plane(truth[j - 1], peak, linear=linear), origin="lower",
                          cmap=None if truth.shape[1] == 3 else "gray")
                ax.set_title(f"truth {j}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    if path is not None:
        save_figure(fig, path, overwrite=overwrite)
    return fig
