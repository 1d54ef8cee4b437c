"""Drawing galaxies from the unconditional generator of a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from .._checkpoint import load_checkpoint, load_models
from ..errors import CheckpointError, InvalidInputError
from ..utils import resolve_device
from ..weights import default_model_path

__all__ = ["sample"]


def sample(n, *, checkpoint=None, seed=0, device="auto"):
    """Draw galaxy images from the unconditional generator of a checkpoint.

    Parameters
    ----------
    n : int
        Number of images.
    checkpoint : str or path, optional
        Checkpoint with a sample generator (default: the shipped model).
    seed : int, optional
        Seed of the latent noise.
    device : str, optional
        ``'auto'``, ``'cpu'`` or ``'cuda'``.

    Returns
    -------
    `numpy.ndarray`
        ``(n, C, S, S)`` float32 images in model space ([0, 1]).

    Raises
    ------
    CheckpointError
        If the checkpoint is missing or has no sample generator.

    Examples
    --------
    >>> sample(4, checkpoint="no-such.pt")
    Traceback (most recent call last):
    ...
    astrodeblend.errors.CheckpointError: checkpoint no-such.pt does not exist
    """
    if int(n) < 1:
        raise InvalidInputError(f"n must be a positive integer, not {n!r}")
    path = Path(checkpoint) if checkpoint is not None else default_model_path()
    dev = resolve_device(device)
    payload = load_checkpoint(path)
    if "sample_generator" not in payload.get("models", {}):
        raise CheckpointError(f"checkpoint {path} has no unconditional sample generator "
                              "(train one with TrainConfig(train_sampler=True))")
    models, mcfg = load_models(payload, device=dev, names=["sample_generator"])
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(int(n), mcfg.latent_dim, generator=g).to(dev)
    with torch.no_grad():
        return models["sample_generator"](z).float().cpu().numpy()
