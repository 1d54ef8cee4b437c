"""Every figure of astrodeblend (matplotlib, no pyplot state).

Figures are built as `matplotlib.figure.Figure` objects with the Agg canvas,
so plotting works without a display and never touches pyplot's global
state.  Functions that take ``path`` also save the figure there through
`astrodeblend.io.atomic_write` and return the figure either way.

Images are shown with ``origin='lower'`` (row 0 at the bottom, FITS
orientation); three-band images as RGB (bands in order r, g, b), others as
the band mean in grey.
"""

from ._deblend import MASKED_COLOR, MAX_PANEL_PIXELS, plot_deblend_result
from ._evaluation import plot_evaluation_gallery, plot_metric_histogram
from ._figure import save_figure
from ._training import plot_image_grid, plot_sample_grid, plot_training_history

__all__ = ["save_figure", "plot_training_history", "plot_sample_grid", "plot_image_grid",
           "plot_evaluation_gallery", "plot_metric_histogram", "plot_deblend_result",
           "MAX_PANEL_PIXELS", "MASKED_COLOR"]
