"""Figures without pyplot state, saved atomically, and the display scaling of images."""

from __future__ import annotations

import numpy as np


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
    >>> from astrodeblend.plotting import plot_image_grid
    >>> fig = plot_image_grid(np.zeros((2, 3, 8, 8)))
    >>> out = save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "grid.png")
    >>> out.suffix
    '.png'
    """
    from pathlib import Path

    from ..io import atomic_write

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


# ----------------------------------------------------------- evaluation figures
def _display_plane(image, peak, *, linear):
    """Return an image for ``imshow``: RGB ``(H, W, 3)`` for 3 bands, else the band mean."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[np.newaxis]
    scaled = np.clip(array / peak, 0, 1) if peak > 0 else np.zeros_like(array)
    if linear:
        scaled = scaled ** (1 / 2.2)
    if scaled.shape[0] == 3:
        return np.moveaxis(scaled, 0, -1)
    return scaled.mean(axis=0)
