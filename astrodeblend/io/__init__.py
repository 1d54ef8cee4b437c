"""Reading images and writing deblended results.

One reader entry point (`read_image`) for JPG, PNG and FITS files, a reader
for one-file-per-band data (`read_bands`) and for Galaxy Zoo folders
(`read_galaxy_zoo`; `list_galaxy_images` is the one folder scanner), the
FITS writer and reader of ``spec/fits-output.md`` (`write_deblended`,
`read_deblended`), and `atomic_write`, through which every file that
astrodeblend writes goes.
"""

from ._atomic import atomic_write, sha256_file
from ._deblended_reader import read_deblended
from .fits_output import FORMAT_VERSION, default_output_path, write_deblended
from .galaxyzoo import GalaxyZooDataset, list_galaxy_images, read_galaxy_zoo
from .readers import (
    BAD_MASK_PLANES,
    FITS_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_ABS_VALUE,
    MAX_PIXELS,
    describe_image,
    read_bands,
    read_image,
)

__all__ = [
    "read_image",
    "read_bands",
    "read_galaxy_zoo",
    "GalaxyZooDataset",
    "list_galaxy_images",
    "describe_image",
    "write_deblended",
    "read_deblended",
    "default_output_path",
    "atomic_write",
    "sha256_file",
    "MAX_PIXELS",
    "MAX_ABS_VALUE",
    "BAD_MASK_PLANES",
    "FITS_SUFFIXES",
    "IMAGE_SUFFIXES",
    "FORMAT_VERSION",
]
