"""Figures of evaluations: a gallery of scenes and histograms of a metric."""

from __future__ import annotations

import numpy as np

from ._figure import _display_plane, _new_figure, save_figure


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
