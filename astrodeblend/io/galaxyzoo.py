"""Folders of Galaxy Zoo images (the Kaggle ``images_training_rev1`` layout)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .readers import FITS_SUFFIXES, IMAGE_SUFFIXES, read_image

__all__ = ["GalaxyZooDataset", "read_galaxy_zoo", "list_galaxy_images"]


class GalaxyZooDataset:
    """A folder of ``<GalaxyID>.jpg`` images, read lazily one at a time.

    Use `read_galaxy_zoo` to make one.

    Parameters
    ----------
    directory : `~pathlib.Path`
        The image folder.
    ids : `numpy.ndarray`
        ``int64`` galaxy ids, sorted.
    paths : list of `~pathlib.Path`
        One file per id, in the same order.
    solutions : `~astropy.table.Table`, optional
        Rows of ``training_solutions_rev1.csv`` (column ``GalaxyID``).

    Attributes
    ----------
    ids : `numpy.ndarray`
        Sorted ``int64`` galaxy ids.
    paths : list of `~pathlib.Path`
        Image files, one per id.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for gid in (100008, 100023):
    ...     Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{gid}.jpg")
    >>> zoo = read_galaxy_zoo(folder)
    >>> len(zoo), zoo.ids.tolist(), zoo[0].shape
    (2, [100008, 100023], (3, 8, 8))
    """

    def __init__(self, directory, ids, paths, *, solutions=None):
        self.directory = Path(directory)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.paths = list(paths)
        self._solutions = solutions
        self._table = None

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        """Read image ``index`` (0-based position in `ids`) as a `~astrodeblend.GalaxyImage`."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an integer or a slice, not {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        return read_image(self.paths[int(index) % n])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def index_of(self, galaxy_id):
        """Return the position of ``galaxy_id`` in `ids`.

        Parameters
        ----------
        galaxy_id : int
            A Galaxy Zoo ``GalaxyID``.

        Returns
        -------
        int

        Raises
        ------
        KeyError
            If the folder has no image of that galaxy.
        """
        pos = int(np.searchsorted(self.ids, galaxy_id))
        if pos >= len(self.ids) or self.ids[pos] != galaxy_id:
            raise KeyError(f"no image of galaxy {galaxy_id} in {self.directory}")
        return pos

    @property
    def table(self):
        """`~astropy.table.Table` with ``id`` and ``path`` (and the solutions' columns).

        With solutions, every column of ``training_solutions_rev1.csv``
        except ``GalaxyID`` is added; galaxies missing from the file get
        masked values.
        """
        if self._table is None:
            from astropy.table import MaskedColumn, Table

            table = Table()
            table["id"] = self.ids
            table["path"] = [str(p) for p in self.paths]
            if self._solutions is not None:
                sol = self._solutions
                keys = np.asarray(sol["GalaxyID"], dtype=np.int64)
                order = np.argsort(keys, kind="stable")
                keys = keys[order]
                pos = np.searchsorted(keys, self.ids)
                pos = np.clip(pos, 0, max(len(keys) - 1, 0))
                found = (keys[pos] == self.ids) if len(keys) else np.zeros(len(self), bool)
                for name in sol.colnames:
                    if name == "GalaxyID":
                        continue
                    column = np.asarray(sol[name])[order]
                    values = (column[pos] if len(column)
                              else np.zeros(len(self), dtype=column.dtype))
                    table[name] = MaskedColumn(values, mask=~found)
            self._table = table
        return self._table

    def __repr__(self):
        return f"<GalaxyZooDataset {len(self)} images in {str(self.directory)!r}>"


def read_galaxy_zoo(directory, *, solutions=None):
    r"""Open a folder of Galaxy Zoo images named ``<GalaxyID>.jpg``.

    This is the layout of the Kaggle "Galaxy Zoo - The Galaxy Challenge"
    folders (``images_training_rev1``).  The folder is scanned by
    `list_galaxy_images`: files whose name is not a number are ignored.
    Images are read only when they are indexed.

    Parameters
    ----------
    directory : str or `~pathlib.Path`
        The image folder.
    solutions : str or `~pathlib.Path`, optional
        ``training_solutions_rev1.csv``: its columns are joined to
        `GalaxyZooDataset.table` on ``GalaxyID``.

    Returns
    -------
    GalaxyZooDataset

    Raises
    ------
    DatasetError
        If the folder is missing or holds no ``<GalaxyID>.jpg`` image (or two
        files of one galaxy), or the solutions file is missing, unreadable or
        has no ``GalaxyID`` column.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "100008.jpg")
    >>> _ = (folder / "training_solutions_rev1.csv").write_text(
    ...     "GalaxyID,Class1.1\n100008,0.38\n")
    >>> zoo = read_galaxy_zoo(folder, solutions=folder / "training_solutions_rev1.csv")
    >>> zoo.table["Class1.1"][0]
    np.float64(0.38)
    """
    directory = Path(directory)
    ids, paths = list_galaxy_images(directory)
    table = None
    if solutions is not None:
        table = _read_solutions(solutions)
    return GalaxyZooDataset(directory, ids, paths, solutions=table)


def list_galaxy_images(directory):
    """Return the galaxy ids and image files of a folder, sorted by id.

    The one folder scanner of astrodeblend (`read_galaxy_zoo`,
    `~astrodeblend.data.build_dataset` and so ``evaluate`` and
    ``make-dataset`` use it).  A galaxy image is a JPG, PNG or FITS file
    named by its galaxy id, ``<GalaxyID>.<suffix>`` (the Galaxy Zoo rule);
    other files, and hidden ones, are ignored.

    Parameters
    ----------
    directory : str or `~pathlib.Path`
        The image folder.

    Returns
    -------
    ids : `numpy.ndarray`
        Sorted ``int64`` galaxy ids.
    paths : list of `~pathlib.Path`
        One file per id, in the same order.

    Raises
    ------
    DatasetError
        If the folder is missing or unreadable, holds no galaxy image, or
        holds two files of one galaxy (``1.jpg`` and ``1.fits``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("100023.jpg", "100008.fits", "notes.txt", "thumb_1.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> ids, paths = list_galaxy_images(folder)
    >>> ids.tolist(), [p.name for p in paths]
    ([100008, 100023], ['100008.fits', '100023.jpg'])
    """
    directory = Path(directory)
    if not directory.exists():
        raise DatasetError(f"image folder {directory} does not exist")
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a folder of images")
    suffixes = (*IMAGE_SUFFIXES, *FITS_SUFFIXES)
    found = {}
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            name = entry.name.lower()
            suffix = next((s for s in suffixes if name.endswith(s)), None)
            stem = entry.name[: -len(suffix)] if suffix else ""
            if not (stem.isascii() and stem.isdigit() and int(stem) < 2 ** 63
                    and entry.is_file()):
                continue
            gid = int(stem)
            if gid in found:
                raise DatasetError(f"{directory}: {found[gid].name} and {entry.name} are images "
                                   f"of the same galaxy {gid}")
            found[gid] = Path(entry.path)
    except OSError as exc:
        raise DatasetError(f"cannot list {directory}: {exc.strerror or exc}") from None
    if not found:
        raise DatasetError(f"no <GalaxyID>.jpg images in {directory} (no JPG, PNG or FITS file "
                           f"named by its galaxy id)")
    ids = np.array(sorted(found), dtype=np.int64)
    return ids, [found[int(i)] for i in ids]


def _read_solutions(path):
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"solutions file {path} does not exist")
    try:
        table = Table.read(path, format="ascii.csv")
    except Exception as exc:  # noqa: BLE001 - astropy's ascii readers raise many kinds
        raise DatasetError(f"cannot read solutions file {path}: {exc}") from None
    if "GalaxyID" not in table.colnames:
        raise DatasetError(f"solutions file {path} has no GalaxyID column "
                           f"(columns: {', '.join(table.colnames[:5])}...)")
    return table
