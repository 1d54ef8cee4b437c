"""Package data: the default model (``default.pt``) and its model-card data (``default.json``).

(The folder is not called ``data`` because `astrodeblend.data` is the
training-set module.)
"""

from importlib import resources
from pathlib import Path

__all__ = ["default_model_path"]


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
