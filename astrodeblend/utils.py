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
        ``'auto'`` picks CUDA when available, else the CPU.

    Returns
    -------
    `torch.device`

    Raises
    ------
    DeviceError
        If CUDA is requested but not available (or that GPU does not exist).
    InvalidInputError
        If ``device`` is not a device name.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    from .errors import DeviceError, InvalidInputError

    name = str(device) if isinstance(device, torch.device) else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} was requested but CUDA is not available "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} does not exist: "
                              f"{torch.cuda.device_count()} CUDA device(s) available")
    elif dev.type != "cpu":
        raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
    return dev
