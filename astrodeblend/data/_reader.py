"""`SceneFile`, the one reader of training-set files, and `open_split`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InvalidInputError
from ._layout import _KEYS, FORMAT, SPLITS


# -------------------------------------------------------------------- reading
class SceneFile:
    """One split of a training-set file, read scene by scene: a map-style dataset.

    The one reader of training-set files.  It follows the map-style
    `torch.utils.data.Dataset` protocol (``len`` and ``[i]``; torch is not
    imported here), so it can be handed to a `torch.utils.data.DataLoader`
    with workers: the HDF5 file is opened read-only on first access in each
    process, never shared across a fork.  `load` reads scenes into memory
    instead.  Use `open_split` to make one.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The HDF5 file written by `build_dataset`.
    split : {'train', 'validation', 'test'}
        The split to read.

    Attributes
    ----------
    path : `~pathlib.Path`
    split : str
    protocol : str
        Blending protocol of the file.
    seed : int
        Seed of the file.
    params : dict
        Settings of the file (see the module documentation).
    shape : tuple
        ``(C, H, W)`` of the blends.
    max_sources : int
        ``K``, the padded number of galaxies per scene.
    nbytes : int
        Size of the split's arrays in the file.
    """

    def __init__(self, path, split):
        import h5py

        self.path = Path(path)
        if split not in SPLITS:
            raise InvalidInputError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self.split = split
        if not self.path.is_file():
            raise DatasetError(f"training-set file {self.path} does not exist")
        try:
            h5 = h5py.File(self.path, "r")
        except OSError:
            raise DatasetError(f"training-set file {self.path} is not an HDF5 file (make one "
                               "with 'astrodeblend make-dataset')") from None
        try:
            with h5:
                self._describe(h5)
        except DatasetError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(f"cannot read training-set file {self.path}: {exc}") from None
        self._memory = None
        self._h5 = self._pid = self._open = None

    def _describe(self, h5):
        """Check the layout of the split and set the attributes."""
        from ..blend import PROTOCOLS

        where = f"training-set file {self.path}"
        protocol = h5.attrs.get("protocol")
        if isinstance(protocol, bytes):
            protocol = protocol.decode()
        if protocol not in PROTOCOLS:
            raise DatasetError(f"{where} has no valid 'protocol' attribute (found {protocol!r}; "
                               f"expected one of {', '.join(PROTOCOLS)})")
        if self.split not in h5:
            raise DatasetError(f"{where} has no {self.split!r} group")
        group = h5[self.split]
        missing = [key for key in _KEYS if key not in group]
        if missing:
            raise DatasetError(f"{where}: group {self.split!r} lacks {', '.join(missing)}")
        b, t, c = group["blend"].shape, group["truth"].shape, group["centers"].shape
        n = b[0]
        if (len(b) != 4 or len(t) != 5 or t[0] != n or t[2:] != b[1:] or c != (n, t[1], 2)
                or group["n_sources"].shape != (n,)):
            raise DatasetError(f"{where}: group {self.split!r} has inconsistent shapes blend "
                               f"{b}, truth {t}, centers {c}")
        if h5.attrs.get("format") != FORMAT:
            raise DatasetError(f"{self.path} is not an astrodeblend dataset (format attribute "
                               f"missing)")
        self.protocol = str(protocol)
        self.seed = int(h5.attrs.get("seed", -1))
        self.params = json.loads(h5.attrs.get("params", "{}"))
        # a file still being built: only its first n_complete scenes are whole
        self._n = min(int(n), int(group.attrs.get("n_complete", n)))
        self.shape = tuple(int(v) for v in b[1:])
        self.max_sources = int(t[1])
        self._keys = [key for key in (*_KEYS, "partials") if key in group]
        self.nbytes = int(sum(group[key].size * group[key].dtype.itemsize for key in self._keys))

    def _datasets(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._open = {key: self._h5[self.split][key] for key in self._keys}
        return self._open

    def load(self, stop=None):
        """Read the first ``stop`` scenes (all by default) into memory.

        Scenes read later come from memory; the others (``stop`` and after)
        still come from the file.

        Parameters
        ----------
        stop : int, optional
            Number of scenes to read.

        Returns
        -------
        SceneFile
            This object.
        """
        stop = self._n if stop is None else max(0, min(int(stop), self._n))
        try:
            self._memory = {key: _as_stored(key, data[:stop])
                            for key, data in self._datasets().items()}
        except OSError as exc:
            raise DatasetError(f"cannot read scenes from {self.path}: {exc}") from None
        finally:
            self.close()
        return self

    @property
    def in_memory(self):
        """True when every scene is read from memory (see `load`)."""
        return self._memory is not None and len(self._memory["blend"]) >= self._n

    def __len__(self):
        return self._n

    def __getitem__(self, index):
        """Return scene ``index`` as a dict of arrays.

        Keys: ``blend`` float32 ``(C, H, W)``, ``truth`` float32
        ``(K, C, H, W)`` (zero padded), ``centers`` float32 ``(K, 2)`` (NaN
        padded), ``n_sources`` int, ``ids`` int64 ``(K,)`` (-1 padded), and
        ``partials`` float32 ``(K, C, H, W)`` for the ``paper`` protocol.
        """
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an integer, not {type(index).__name__}")
        if not -self._n <= index < self._n:
            raise IndexError(f"scene {index} out of range for {self._n} scenes of split "
                             f"{self.split!r} in {self.path}")
        index = int(index) % self._n
        memory = self._memory
        if memory is not None and index < len(memory["blend"]):
            item = {key: data[index] for key, data in memory.items()}
        else:
            try:
                item = {key: _as_stored(key, data[index])
                        for key, data in self._datasets().items()}
            except OSError as exc:
                raise DatasetError(f"cannot read scene {index} from {self.path}: {exc}") from None
        item["n_sources"] = int(item["n_sources"])
        return item

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def close(self):
        """Close the HDF5 file (it is reopened on the next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._pid = None
        self._open = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_h5=None, _pid=None, _open=None)
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self):
        return (f"<SceneFile {str(self.path)!r} split={self.split!r} n={len(self)} "
                f"protocol={self.protocol!r} shape={self.shape}>")


def _as_stored(key, value):
    """Images and centres as float32 (files may store float16); the rest as stored."""
    if key in ("blend", "truth", "partials", "centers"):
        return np.asarray(value, dtype=np.float32)
    return np.asarray(value)


def open_split(path, split):
    """Open one split of a training-set file for reading.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        HDF5 file written by `build_dataset`.
    split : {'train', 'validation', 'test'}
        The split.

    Returns
    -------
    SceneFile
        ``len``, ``[i]`` (a dict of float32 arrays), ``.protocol``,
        ``.load()``, ``.close()``; also a context manager, and a map-style
        dataset for `torch.utils.data.DataLoader`.

    Raises
    ------
    DatasetError
        If the file is missing, not HDF5, not a dataset, or lacks the split
        or its arrays.

    Examples
    --------
    See `build_dataset`.
    """
    return SceneFile(path, split)
