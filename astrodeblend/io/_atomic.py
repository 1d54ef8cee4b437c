"""Atomic file writes and file hashes.

Every file that astrodeblend writes goes through `atomic_write`: the data
are written to a hidden temporary file in the destination folder, flushed to
the disk (`os.fsync`) and renamed into place with `os.replace`, so that a
reader never sees half a file and a crash (of the process or of the machine)
leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path

from ..errors import AstrodeblendError, OutputExistsError, WriteError

__all__ = ["atomic_write", "sha256_file"]


def _temp_name(path):
    """Return a fresh hidden temporary path next to ``path``."""
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")


def _describe_oserror(exc):
    """Return a short reason for an `OSError` (no traceback, one line)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOENT:
        return "the folder does not exist"
    if exc.errno == errno.ENOTDIR:
        return "a parent of the path is not a folder"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_write(path, *, overwrite=False):
    """Write a file atomically: yield a temporary path, then rename it into place.

    The caller writes the complete file to the yielded temporary path (a
    hidden file ``.{name}.tmp-XXXXXXXX`` in the same folder as ``path``).
    When the ``with`` block ends normally the temporary file is flushed to
    the disk (`os.fsync`) and renamed to ``path`` with `os.replace`, and the
    folder is flushed too where the system allows it (not on Windows), so
    that after a power loss ``path`` holds the old file or the new one,
    never an empty or partial one.  When the block raises, the temporary
    file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        Final path of the file.
    overwrite : bool, optional
        Replace ``path`` if it exists (refused by default).

    Yields
    ------
    `~pathlib.Path`
        The temporary path to write to.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False (checked before and
        again after writing).
    WriteError
        If the folder is missing, read-only or full, ``path`` is a folder, or
        the data cannot be flushed to the disk.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(folder / "notes.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (folder / "notes.txt").read_text()
    'hello'
    >>> sorted(p.name for p in folder.iterdir())
    ['notes.txt']
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists (use overwrite=True / --overwrite to replace it)")
    if not folder.is_dir():
        raise WriteError(f"cannot write {path}: folder {folder} does not exist")
    tmp = _temp_name(path)
    try:
        # Probe the folder now so that permission problems show up before any
        # work; the probe is removed again so writers that refuse to replace
        # a file (astropy's writeto, h5py mode 'x') can create it themselves.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WriteError(f"cannot write in folder {folder}: {_describe_oserror(exc)}") from None
    try:
        yield tmp
        if not tmp.exists():
            raise WriteError(f"nothing was written for {path}")
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} appeared while it was being written "
                                    "(use overwrite=True / --overwrite to replace it)")
        try:
            _fsync_file(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise WriteError(f"cannot write {path} in folder {folder}: "
                             f"{_describe_oserror(exc)}") from None
        _fsync_folder(folder)
    except OSError as exc:
        _remove_quietly(tmp)
        if isinstance(exc, AstrodeblendError):  # ours (a ReadError of the writer too): as is
            raise
        raise WriteError(f"cannot write {path} in folder {folder}: "
                         f"{_describe_oserror(exc)}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _fsync_file(path):
    """Flush a written file's data to the disk, before it is renamed into place."""
    # Windows flushes only handles open for writing
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # a file system without fsync
            raise
    finally:
        os.close(fd)


def _fsync_folder(folder):
    """Flush a folder's entries (the rename) to the disk, where the system allows it."""
    if os.name == "nt":  # a folder cannot be opened, nor flushed, on Windows
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # not every file system flushes folders
            os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path):
    with contextlib.suppress(OSError):
        os.unlink(path)


def sha256_file(path, *, chunk_size=1 << 20):
    """Return the sha256 (hex) of a file's bytes, read in chunks.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        File to hash.
    chunk_size : int, optional
        Bytes read at a time.

    Returns
    -------
    str
        64 hexadecimal characters.

    Raises
    ------
    ReadError
        If the file cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty.bin"
    >>> _ = p.write_bytes(b"")
    >>> sha256_file(p)[:16]
    'e3b0c44298fc1c14'
    """
    from ..errors import ReadError

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()
