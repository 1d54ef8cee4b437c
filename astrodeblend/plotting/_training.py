"""Figures of training runs: loss curves and grids of images."""

from __future__ import annotations

import math

import numpy as np

from ._figure import _display, _new_figure, save_figure


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
    from ..errors import InvalidInputError

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
    from ..errors import InvalidInputError

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
