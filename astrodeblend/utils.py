"""Small shared helpers: optional dependencies and progress bars."""

from importlib.util import find_spec

__all__ = ["HAS_TQDM", "HAS_DASK", "progress", "resolve_device"]

HAS_TQDM = find_spec("tqdm") is not None
HAS_DASK = find_spec("dask") is not None and find_spec("distributed") is not None


def progress(iterable, *, enable=True, desc=None, total=None, unit="it"):
    """Wrap ``iterable`` in a tqdm progress bar when tqdm is installed and ``enable``.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    enable : bool, optional
        Show the bar (False returns ``iterable`` unchanged).
    desc : str, optional
        Label of the bar.
    total : int, optional
        Number of items, when ``iterable`` has no length.
    unit : str, optional
        Name of one item.

    Returns
    -------
    iterable

    Examples
    --------
    >>> list(progress(range(3), enable=False))
    [0, 1, 2]
    """
    if not enable or not HAS_TQDM:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True)


def resolve_device(device="auto"):
    """Return the `torch.device` for ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.

    Parameters
    ----------
    device : str or `torch.device`, optional
        ``'auto'`` picks CUDA when present, else the CPU.

    Returns
    -------
    `torch.device`

    Raises
    ------
    DeviceError
        If CUDA is requested and no GPU is available, or the name is unknown.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    from .errors import DeviceError

    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but no CUDA GPU is available "
                              "(use --device cpu or auto)")
        return torch.device(name)
    raise DeviceError(f"unknown device {device!r}: use auto, cpu or cuda")
