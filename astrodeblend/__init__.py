"""astrodeblend: separate blended galaxies in survey images with a conditional GAN.

The public names below are importable from the package itself
(``from astrodeblend import read_image, Deblender``).  They are loaded on
first use, so ``import astrodeblend`` stays fast and does not import torch.
"""

from importlib import import_module

from ._version import __version__
from .errors import (
    AstrodeblendError,
    CheckpointError,
    DatasetError,
    DeviceError,
    InvalidInputError,
    OutputExistsError,
    ReadError,
    WriteError,
)
from .image import GalaxyImage, as_galaxy_image
from .result import DeblendResult

# public name -> module that defines it (loaded lazily)
_LAZY = {
    "read_image": "io",
    "read_bands": "io",
    "read_galaxy_zoo": "io",
    "GalaxyZooDataset": "io",
    "write_deblended": "io",
    "read_deblended": "io",
    "Scene": "blend",
    "make_scene": "blend",
    "blend_paper": "blend",
    "blend_reiman": "blend",
    "blend_physical": "blend",
    "blend_survey": "blend",
    "find_centers": "detect",
    "partial_images": "segment",
    "build_dataset": "data",
    "TrainConfig": "train",
    "Deblender": "pipeline",
    "deblend": "pipeline",
    "SegmentationDeblender": "baselines",
    "FluxShareDeblender": "baselines",
    "deblend_files": "batch",
}

# subpackages and modules reachable as attributes (``astrodeblend.train.train``);
# ``astrodeblend.deblend`` is the function, defined in ``astrodeblend.pipeline``
_SUBMODULES = {"io", "blend", "detect", "footprints", "segment", "data", "models", "train",
               "pipeline", "baselines", "metrics", "evaluate", "batch", "plotting", "utils",
               "cli"}

__all__ = [
    "__version__",
    "AstrodeblendError",
    "CheckpointError",
    "DatasetError",
    "DeviceError",
    "InvalidInputError",
    "OutputExistsError",
    "ReadError",
    "WriteError",
    "GalaxyImage",
    "as_galaxy_image",
    "DeblendResult",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'astrodeblend' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
