"""Package data: the default model (``default.pt``) and its model-card data (``default.json``).

(The folder is not called ``data`` because `astrodeblend.data` is the
training-set module.)
"""

from importlib import resources
from pathlib import Path

__all__ = ["default_model_path", "model_path"]


def default_model_path():
    """Return the path of the default model shipped inside the package.

    Returns
    -------
    `pathlib.Path`

    Examples
    --------
    >>> default_model_path().name
    'default.pt'
    """
    return Path(str(resources.files(__name__) / "default.pt"))


def model_path(source):
    """Return the path a model is named by: ``'default'`` is the shipped model.

    Parameters
    ----------
    source : str or path
        ``'default'`` or the path of a checkpoint.

    Returns
    -------
    `pathlib.Path`

    Examples
    --------
    >>> model_path("default") == default_model_path(), model_path("runs/a.pt").name
    (True, 'a.pt')
    """
    return default_model_path() if str(source) == "default" else Path(source)
