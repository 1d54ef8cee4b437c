"""Package data: the default model, its full checkpoint and its model-card data.

``default.pt`` is the stripped model that deblending loads,
``default_full.pt`` (when shipped) the full training checkpoint with the
discriminator, and ``default.json`` the model card's data.

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
    """Return the path a model is named by.

    ``'default'`` is the shipped model; ``'default_full'`` its full training
    checkpoint (discriminator, optimiser states), from which adversarial
    fine-tuning starts.

    Parameters
    ----------
    source : str or path
        ``'default'``, ``'default_full'`` or the path of a checkpoint.

    Returns
    -------
    `pathlib.Path`

    Examples
    --------
    >>> model_path("default") == default_model_path(), model_path("runs/a.pt").name
    (True, 'a.pt')
    >>> model_path("default_full").name
    'default_full.pt'
    """
    if str(source) == "default":
        return default_model_path()
    if str(source) == "default_full":
        return default_model_path().with_name("default_full.pt")
    return Path(source)
