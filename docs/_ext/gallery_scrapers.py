"""A sphinx-gallery image scraper for figures made without pyplot.

`astrodeblend.plotting` builds its figures with `matplotlib.figure.Figure`
directly (no pyplot state, no GUI backend), so sphinx-gallery's matplotlib
scraper, which looks at pyplot's figure list, does not see them.
`astrodeblend_figures` saves every such figure that an example keeps in a
global variable, once, after the block that made it; list it before ``"matplotlib"``
in ``image_scrapers``.
"""

__all__ = ["astrodeblend_figures"]


def _unmanaged_figures(namespace):
    """Yield the figures of ``namespace`` that pyplot does not manage and that are new.

    Figures that pyplot manages are marked as seen, so that they are not
    picked up again after the matplotlib scraper has closed them.
    """
    from matplotlib.figure import Figure

    for value in list(namespace.values()):
        candidates = value if isinstance(value, (list, tuple)) else [value]
        for item in candidates:
            if not isinstance(item, Figure) or getattr(item, "_astrodeblend_seen", False):
                continue
            item._astrodeblend_seen = True
            if getattr(item.canvas, "manager", None) is None:
                yield item


def astrodeblend_figures(block, block_vars, gallery_conf):
    """Save the pyplot-less figures of the last block and return their RST.

    Parameters
    ----------
    block : tuple
        The code block (sphinx-gallery internals).
    block_vars : dict
        Per-example state: ``example_globals`` and ``image_path_iterator``.
    gallery_conf : dict
        The gallery configuration.

    Returns
    -------
    str
        RST that shows the saved images (empty when there is none).
    """
    from sphinx_gallery.scrapers import figure_rst

    paths = []
    # runs before the matplotlib scraper, so figures that pyplot manages (and
    # will close) still have a manager here and are left to that scraper
    for fig in _unmanaged_figures(block_vars.get("example_globals", {})):
        path = next(block_vars["image_path_iterator"])
        fig.savefig(path, dpi=100)
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
