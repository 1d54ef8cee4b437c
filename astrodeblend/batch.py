"""Deblend many files: streaming, skip-if-done, a run log, Dask.

`deblend_files` is what ``astrodeblend deblend`` runs.  It is built for
survey-scale batches (thousands to millions of cutouts) and for runs that
get interrupted:

- **Streaming.**  Inputs are expanded to a list of *paths* only.  Each
  worker reads ahead a group of images (at most `GROUP_FILES` files or
  `GROUP_PIXELS` pixel values), deblends them together so that the
  networks see the stamps of all of them in large batches
  (`~astrodeblend.pipeline.Deblender.deblend_many`), then writes their
  results and reports them in input order.  Memory is bounded by the group,
  not by the number of files.  Deblenders that cannot batch (the
  baselines, a plain callable) take one image at a time.  Parallel runs
  keep a window of ``2 * workers`` groups of `WORKER_GROUP` tasks in
  flight, new ones submitted as others finish.  Tasks receive paths and
  small options, never arrays or models, and each worker loads the model
  once (a per-process cache).
- **Skip-if-done.**  Every output is written atomically
  (`astrodeblend.io.atomic_write`), so an output that exists is complete,
  unless something else damaged it.  An existing output whose FITS
  checksums verify and whose layout is ours is skipped (status
  ``skipped``); a damaged one is redone.  A run killed at any moment and
  restarted with the same command carries on where it stopped (the
  images of the group in progress are deblended again).
- **Failures are data.**  An input that cannot be read or deblended is
  reported on one line of standard error and in the run log, and the
  batch goes on.
- **Run log.**  ``deblend_log.csv`` in the output folder gets one row per
  input as results arrive (written line by line, so a killed run keeps its
  log).  A restarted run appends its own rows below the earlier ones: the
  last row of an input is its current state.  A row that cannot be written
  whole (a full disk) is removed again and the run stops with a
  `~astrodeblend.errors.WriteError`: the rows before it stay intact.
- **One run per folder.**  A run holds the lock file ``.astrodeblend.lock``
  (pid, host, start time) in its output folder; a second run into the same
  folder is refused at once.  A lock left by a run that died on this host is
  stale and taken over.
- **Checks first.**  The output folder must be writable (on every Dask
  worker too) before the first input is read; paths are sent to workers as
  absolute paths.

Local parallelism (``workers > 1``) uses a
`concurrent.futures.ProcessPoolExecutor` of ``workers - 1`` processes, and
the calling process works as the last worker.  On Linux the workers are
forked once the calling process has loaded its model, and inherit it
(not from a process with other threads or with CUDA in
use); elsewhere they are spawned and load their own while the calling
process loads its model.  200 cutouts of 80x80x3 on 2 cores, two workers:
6.0 s forked, 8.4 s spawned, 8.6 s for one worker.  Clusters use Dask
(``pip install "astrodeblend[distributed]"``): an existing scheduler
(``scheduler=ADDRESS``) or an existing `distributed.Client`.  In a script,
run parallel batches under ``if __name__ == "__main__":``: spawned
processes import the script again.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import glob
import io
import itertools
import json
import os
import secrets
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AstrodeblendError, CheckpointError, InvalidInputError, WriteError
from .footprints import FLUX_MODES
from .io import FITS_SUFFIXES, IMAGE_SUFFIXES, default_output_path
from .utils import HAS_DASK, header_name, name_from_header, plural
from .utils import progress as _progress_bar

__all__ = ["BatchSummary", "auto_workers", "band_files", "deblend_files", "deblend_from_cli",
           "expand_inputs", "mask_path",
           "parse_background", "INPUT_SUFFIXES", "LOG_COLUMNS", "LOG_NAME", "LOCK_NAME",
           "MODES", "FLUX_METHODS", "GROUP_FILES", "GROUP_PIXELS", "WORKER_GROUP",
           "AUTO_FILES_PER_WORKER", "AUTO_MAX_WORKERS"]

#: File name endings that folder inputs are searched for (case-insensitive):
#: the FITS, JPG and PNG files that `astrodeblend.io.read_image` reads.
INPUT_SUFFIXES = FITS_SUFFIXES + IMAGE_SUFFIXES

#: Name of the run log written in the output folder.
LOG_NAME = "deblend_log.csv"

#: Columns of the run log.
LOG_COLUMNS = ("input", "output", "status", "reason", "n_sources", "seconds")

#: Name of the lock file that a run holds in its output folder.
LOCK_NAME = ".astrodeblend.lock"

#: Value spaces of ``mode=`` (``--mode``).
MODES = ("auto", "display", "linear")

#: How SOURCE pixels are made (``flux=``, ``--flux``): `astrodeblend.footprints.FLUX_MODES`.
FLUX_METHODS = FLUX_MODES

_INSTALL_HINT = 'pip install "astrodeblend[distributed]"'
#: ``workers="auto"``: one more worker process per this many inputs (up to
#: `AUTO_MAX_WORKERS` and the usable cores).  Cutouts of 80x80x3 on 2 cores,
#: forked workers: 200 take 6.0 s with two workers against 8.6 s with one,
#: 64 3.9 against 4.5 s, 32 3.3 against 3.2 s, 20 2.9 s either way.
AUTO_FILES_PER_WORKER = 64
#: The most worker processes ``workers="auto"`` starts (one model copy each).
AUTO_MAX_WORKERS = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
_RESUME_HINT = ("to resume, run the same command again: finished outputs are "
                "verified and skipped")


# ----------------------------------------------------------------- options
def parse_background(text):
    """Parse a ``--background`` value: ``auto``, ``none`` or numbers.

    Parameters
    ----------
    text : str
        ``'auto'`` (estimate the sky), ``'none'`` (the input is already
        sky-subtracted: a sky of 0), or a comma-separated list of numbers:
        one for every band, or one per band.

    Returns
    -------
    'auto', float or list of float

    Raises
    ------
    InvalidInputError
        If ``text`` is none of these.

    Examples
    --------
    >>> parse_background("auto"), parse_background("none"), parse_background("1,2.5,3")
    ('auto', 0.0, [1.0, 2.5, 3.0])
    >>> parse_background("12")
    [12.0]
    """
    word = str(text).strip().lower()
    if word == "auto":
        return "auto"
    if word == "none":
        return 0.0
    try:
        values = [float(part) for part in word.split(",")]
    except ValueError:
        values = []
    if not values or not all(np.isfinite(values)):
        raise InvalidInputError(f"--background must be 'auto', 'none' or numbers separated by "
                                f"commas (one for all bands or one per band), not {text!r}")
    return values


def _deblender_options(mode, background, flux, batch_size=None, augment=None, halos=None,
                       precision=None, device="auto"):
    """Check the options of a ``'gan'`` deblender that are given; return them.

    ``mode``, ``background``, ``flux``, ``batch_size``, ``augment``, ``halos``
    and ``precision`` (checked on ``device``).

    The result is a sorted tuple of ``(name, value)`` pairs with hashable
    values (a per-band background becomes a tuple of floats), so that it
    can be part of the per-process deblender cache key.
    """
    options = []
    if mode is not None and mode != "auto":
        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        options.append(("mode", mode))
    if background is not None and not (isinstance(background, str) and background == "auto"):
        if isinstance(background, str):
            background = parse_background(background)
        try:
            values = np.atleast_1d(np.asarray(background, dtype=np.float64))
        except (TypeError, ValueError):
            values = np.array([np.nan])
        if values.ndim != 1 or not values.size or not np.all(np.isfinite(values)):
            raise InvalidInputError(f"background must be 'auto' or finite numbers (one for "
                                    f"all bands or one per band), not {background!r}")
        options.append(("background", float(values[0]) if values.size == 1
                        else tuple(float(v) for v in values)))
    if flux is not None:
        if flux not in FLUX_METHODS:
            raise InvalidInputError(f"flux must be one of {', '.join(FLUX_METHODS)}, "
                                    f"not {flux!r}")
        options.append(("flux", flux))
    if batch_size is not None:
        from .pipeline import _check_batch_size

        options.append(("batch_size", _check_batch_size(batch_size)))
    if augment is not None:
        from .pipeline import _check_augment

        options.append(("augment", _check_augment(augment)))
    if halos is not None:
        if not isinstance(halos, bool):
            raise InvalidInputError(f"halos must be True or False, not {halos!r}")
        options.append(("halos", halos))
    if precision is not None:
        from .utils import resolve_device, resolve_precision

        resolve_precision(precision, resolve_device(device))  # float16 on a CPU fails here
        options.append(("precision", precision))
    return tuple(sorted(options))


# ------------------------------------------------------------------ inputs
def _has_magic(text):
    return any(char in text for char in "*?[")


def _is_image_name(name):
    lower = name.lower()
    return not name.startswith(".") and lower.endswith(INPUT_SUFFIXES)


def _folder_images(folder):
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [folder / e.name for e in entries if _is_image_name(e.name) and e.is_file()]


def _expand_one(text, base, out, explicit=None):
    """Append the paths named by one input (file, folder or glob) to ``out``.

    Files named as they are (not found through a folder or a pattern) are
    also added to the set ``explicit``.
    """
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if "," in text and not path.exists():  # one file per band: one image
        group = _band_group(text, base)
        out.append(group)
        if explicit is not None:
            explicit.add(_path_key(group))
        return
    if path.is_dir():
        out.extend(_folder_images(path) or [path])
    elif path.exists() or not _has_magic(str(path)):
        out.append(path)
        if explicit is not None:
            explicit.add(_path_key(path))
    else:
        matches = []
        for name in sorted(glob.glob(str(path))):
            match = Path(name)
            matches.extend(_folder_images(match) if match.is_dir() else [match])
        out.extend(matches or [path])


def _band_group(text, base=None):
    """Return the path that stands for ``'g.fits,r.fits,i.fits'``: one image, a file per band.

    The files must lie in one folder (a part without a folder is taken from
    the first part's): the group is that folder joined with the files'
    names, commas between them (`band_files` splits it again).  Files in
    several folders give the group as written, which names no file.
    """
    parts = [Path(part.strip()).expanduser() for part in text.split(",") if part.strip()]
    if base is not None:
        parts = [part if part.is_absolute() else base / part for part in parts]
    folder = parts[0].parent
    parts = [part if part.parent != Path(".") else folder / part.name for part in parts]
    if len(parts) < 2 or any(part.parent != folder for part in parts):
        return Path(text)
    return folder / ",".join(part.name for part in parts)


def band_files(path):
    """Return the files of a one-file-per-band input (`expand_inputs`), or None.

    Examples
    --------
    >>> [p.as_posix() for p in band_files(expand_inputs("sdss/g.fits,r.fits,i.fits")[0])]
    ['sdss/g.fits', 'sdss/r.fits', 'sdss/i.fits']
    >>> band_files(Path("sdss/g.fits")) is None
    True
    """
    path = Path(path)
    if "," not in path.name or path.exists():
        return None
    return [path.parent / name for name in path.name.split(",")]


def expand_inputs(inputs):
    r"""Turn files, folders, glob patterns and ``@list`` files into a list of paths.

    - a file is taken as it is;
    - a folder stands for the FITS, JPG and PNG files directly inside it
      (`INPUT_SUFFIXES`, sorted by name, hidden files left out; sub-folders
      are not searched);
    - a glob pattern (``*``, ``?``, ``[...]``) stands for its matches,
      sorted;
    - ``@list.txt`` stands for the entries of a text file, one per line
      (each a file, folder or pattern; blank lines and lines starting with
      ``#`` are skipped; relative entries are relative to the list file's
      folder).
    - ``g.fits,r.fits,i.fits`` (files of one folder, commas between them)
      stands for one image, one file per band (`astrodeblend.io.read_bands`):
      one path whose name holds the commas (`band_files` splits it).

    Duplicates (the same file named twice) are removed, keeping the first.
    Inputs that name nothing (a missing file, a pattern without matches, a
    folder without images, an unreadable list) are *kept* as they were
    given, so that a batch can report each of them as failed; use
    ``path.exists()`` to tell them apart.

    Parameters
    ----------
    inputs : str, path or list of them
        What the user named.

    Returns
    -------
    list of `~pathlib.Path`

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.fits", "a.fits", "notes.txt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> _ = (folder / "list.txt").write_text("# two files\nb.fits\nmissing.fits\n")
    >>> [p.name for p in expand_inputs([folder, f"@{folder / 'list.txt'}"])]
    ['a.fits', 'b.fits', 'missing.fits']
    """
    return _expand_inputs(inputs)[0]


def _path_key(path):
    return os.path.normcase(os.path.abspath(path))


def _expand_inputs(inputs):
    """`expand_inputs`, and the keys (`_path_key`) of the files named as they are."""
    explicit = set()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    expanded = []
    for item in inputs:
        text = os.fspath(item)
        if text.startswith("@"):
            list_path = Path(text[1:]).expanduser()
            try:
                lines = list_path.read_text().splitlines()
            except (OSError, UnicodeDecodeError):
                expanded.append(Path(text))
                continue
            for line in lines:
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    _expand_one(entry, list_path.parent, expanded, explicit)
        else:
            _expand_one(text, None, expanded, explicit)
    unique, seen = [], set()
    for path in expanded:
        key = _path_key(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique, explicit


def _missing_reason(path):
    """Why an entry of `expand_inputs` names no readable file."""
    text = str(path)
    files = band_files(path)
    if files is not None:
        for part in files:
            if not part.is_file():
                return f"band file {part} not found"
        return None
    if "," in text and not path.exists():
        return "the files of one image, one per band, must be in one folder"
    if text.startswith("@") and not path.exists():
        return f"cannot read list file {text[1:]}"
    if path.is_dir():
        return "folder holds no FITS, JPG or PNG file"
    if _has_magic(text) and not path.exists():
        return "no file matches this pattern"
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a regular file"
    return None


# ------------------------------------------------------------------ outputs
def _output_path(input_path, output_dir):
    return Path(default_output_path(input_path, output_dir))


def _png_path(output_path):
    name = output_path.name
    stem = name[: -len(".fits")] if name.lower().endswith(".fits") else name
    return output_path.with_name(f"{stem}.png")


def _output_state(path, *, input_name=None, model=None):
    """Return ``(state, n_sources, detail)`` of an existing output file.

    ``state`` is ``'missing'``, ``'valid'`` (our layout, every HDU's CHECKSUM
    and DATASUM verify), ``'broken'`` (truncated, corrupt, bad checksums),
    or ``'foreign'`` (a FITS file that astrodeblend did not write, or one made
    from another input or with another model: not ours to replace).
    """
    from astropy.io import fits

    if not path.exists():
        return "missing", 0, ""
    try:
        with warnings.catch_warnings():
            # truncation and checksum problems are what we look for: they
            # decide the state and are not worth a warning of their own
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                header = hdul[0].header
                if header.get("ORIGIN") != "astrodeblend" or "ADBFMT" not in header:
                    return "foreign", 0, "is not an astrodeblend output"
                n_sources = int(header.get("NSOURCE", -1))
                names = [hdu.name for hdu in hdul]
                required = [n for n in names if n not in ("BLENDMSK", "BLENDUNC")]
                if (len(required) != n_sources + 5 or names[1] != "BLEND"
                        or names[-1] != "CATALOG"):
                    return "broken", 0, "incomplete"
                blend_origin = hdul[1].header.get("ORIGFILE")
                for hdu in hdul:
                    if "CHECKSUM" not in hdu.header or "DATASUM" not in hdu.header:
                        return "broken", 0, "no checksum"
                    if hdu.verify_datasum() != 1 or hdu.verify_checksum() != 1:  # 1: verified
                        return "broken", 0, f"checksum of HDU {hdu.name} does not verify"
    except Exception as exc:  # any failure to read our own output means: redo it
        return "broken", 0, f"unreadable ({type(exc).__name__})"
    prov = header.get("PROV1")
    if input_name is not None and prov and not _made_from(header, blend_origin, input_name):
        return "foreign", n_sources, f"was made from {name_from_header(prov)}"
    if model is not None:
        name, digest = model
        made_hash, made_name = header.get("ADBMHASH", ""), header.get("ADBMODEL", "")
        if (digest and made_hash and made_hash != digest) or (not digest and made_name != name):
            return "foreign", n_sources, f"was made with another model ({made_name})"
    return "valid", n_sources, ""


def _made_from(primary, blend_origin, input_name):
    """Whether an output's provenance names the file ``input_name``.

    ``PROV1`` is the input file (names escaped as by `header_name`).  Outputs
    of versions that took ``PROVn`` from ``ORIGFn`` cards carried by the input
    itself name their files instead; for those (``PROV2`` present) the
    ``ORIGFILE`` card of BLEND, the file the reader read, decides.
    """
    names = {input_name, header_name(input_name)}
    prov = str(primary.get("PROV1"))
    if prov in names or name_from_header(prov) == input_name:
        return True
    return "PROV2" in primary and blend_origin is not None and str(blend_origin) in names


def _remove_stale_temporaries(output_dir, names):
    """Remove ``.{name}.tmp-*`` files that a killed run left for our outputs."""
    try:
        entries = [e.name for e in os.scandir(output_dir) if e.name.startswith(".")]
    except OSError:
        return
    for entry in entries:
        stem, sep, _ = entry[1:].partition(".tmp-")
        if sep and stem in names:
            with contextlib.suppress(OSError):
                os.unlink(Path(output_dir) / entry)


# ------------------------------------------------------------ worker side
@functools.lru_cache(maxsize=4)
def _cached_deblender(method, model, device, max_pixels, options=()):
    """Load a deblender once per process (the model is read at most once per worker).

    ``options`` are the ``(name, value)`` pairs of `_deblender_options`; only
    those given are passed on, so the factory sees its own defaults otherwise.
    """
    import inspect

    from .pipeline import get_deblender

    extra = {name: list(value) if isinstance(value, tuple) else value
             for name, value in options}
    takes_options = any(p.kind is p.VAR_KEYWORD
                        for p in inspect.signature(get_deblender).parameters.values())
    if extra and method == "gan" and not takes_options:  # a factory without **options
        from .pipeline import Deblender

        return Deblender.load(model, device=device, max_pixels=max_pixels, **extra)
    return get_deblender(method, model=model, device=device, max_pixels=max_pixels, **extra)


_WORKER = {"deblender": None, "threads": None}


def _set_torch_threads(n_threads):
    """Limit torch to ``n_threads`` in this worker (if the deblender uses torch)."""
    torch = sys.modules.get("torch")
    if n_threads and torch is not None and _WORKER["threads"] != n_threads:
        torch.set_num_threads(int(n_threads))
        _WORKER["threads"] = n_threads


def _init_pool_worker(n_threads, deblender):
    """Set up a `ProcessPoolExecutor` worker: torch threads and a shipped deblender."""
    _WORKER["deblender"] = deblender
    _set_torch_threads(n_threads)


def _write_png(result, path):
    """Write the quick-look figure of ``result`` atomically (a pyplot-free figure)."""
    from .plotting import plot_deblend_result

    plot_deblend_result(result, path, overwrite=True)


def _record(status, reason="", n_sources=0):
    return {"status": status, "reason": reason, "n_sources": int(n_sources), "seconds": 0.0}


#: Images deblended together at most (their network inputs batched across
#: images, `astrodeblend.pipeline.Deblender.deblend_many`), and the most pixel
#: values (bands x rows x columns) read ahead for one such group.
GROUP_FILES = 32
GROUP_PIXELS = 2 ** 23


def mask_path(input_path, mask):
    """Return the mask file of one input, or None.

    ``mask`` is a file for every input, or a name with ``{stem}`` for the
    input's file name less its suffix, relative to the input's folder:
    ``'{stem}_mask.fits'`` gives ``data/ic3478rss_256_mask.fits`` for
    ``data/ic3478rss_256.fits``.

    Examples
    --------
    >>> mask_path("data/ic3478rss_256.fits", "{stem}_mask.fits").as_posix()
    'data/ic3478rss_256_mask.fits'
    >>> mask_path("data/a.fits.gz", "/masks/all.fits").as_posix()
    '/masks/all.fits'
    """
    from .io.fits_output import _input_stem

    if mask is None:
        return None
    mask = str(mask)
    if "{stem}" not in mask:
        return Path(mask).expanduser()
    path = Path(mask.replace("{stem}", _input_stem(input_path))).expanduser()
    return path if path.is_absolute() else Path(input_path).parent / path


def _prepare_one(input_path, output_path, *, hdu=None, overwrite=False, png=False,
                 expect_model=None, max_image_pixels=None, mask=None, **_):
    """Check one task's output and read its input.

    Returns ``(record, None, state)`` when the task is settled here (skipped
    or failed) and ``(None, image, state)`` when its image is ready.
    """
    try:
        # with overwrite the output is replaced whatever it holds: not read
        files = band_files(input_path)
        state, n_found, detail = ("missing", 0, "") if overwrite else _output_state(
            output_path, input_name=(files or [input_path])[0].name, model=expect_model)
        if state in ("valid", "foreign"):
            if state == "foreign":
                return _record("failed", f"{output_path} exists and {detail} "
                               "(use --overwrite to replace it, or another output folder)"), \
                    None, None
            reason = "output exists and verifies"
            png_path = _png_path(output_path)
            if png and not png_path.exists():
                from .io import read_deblended

                _write_png(read_deblended(output_path), png_path)
                reason += "; quick-look PNG added"
            return _record("skipped", reason, n_found), None, None
        from .io import read_bands, read_image

        read = functools.partial(read_bands, files) if files else functools.partial(
            read_image, input_path)
        image = read(hdu=hdu, max_pixels=max_image_pixels, mask=mask_path(input_path, mask))
        return None, image, (state, detail)
    except Exception as exc:  # noqa: BLE001 - reported per input, the batch goes on
        return _failure(exc, input_path), None, None


def _finish_one(result, output_path, state, *, overwrite=False, png=False, full_frame=False,
                **_):
    """Write one result (the PNG first, then the FITS file); return its record."""
    from .io import write_deblended

    state, detail = state
    if png:  # the PNG first: a FITS output that exists then always has its PNG
        _write_png(result, _png_path(output_path))
    write_options = {"full_frame": True} if full_frame else {}  # format 2 writers only
    write_deblended(result, output_path, overwrite=overwrite or state == "broken",
                    **write_options)
    reason = f"replaced a damaged output ({detail})" if state == "broken" else ""
    return _record("done", reason, result.n_sources)


def _failure(exc, input_path):
    message = str(exc) if isinstance(exc, AstrodeblendError) else \
        f"{type(exc).__name__}: {exc}"
    return _record("failed", _without_name(" ".join(message.split()), input_path))


def _deblend_all(deblender, images):
    """Deblend images together where the deblender can (exceptions in place of failures)."""
    many = getattr(deblender, "deblend_many", None)
    if many is not None:
        return many(images, return_exceptions=True)
    outcomes = []
    for image in images:
        try:
            outcomes.append(deblender(image))
        except Exception as exc:  # noqa: BLE001 - reported per input
            outcomes.append(exc)
    return outcomes


def _process_group(tasks, key, *, torch_threads=None, deblender=None, **options):
    """Process tasks, deblending their images together; yield ``(task, record)`` in order.

    Runs in the worker.  ``key`` is ``(method, model, device, max_pixels,
    options)`` of the cached deblender, or None to use ``deblender`` (or the
    one set by the pool initializer).  Inputs are read ahead until
    `GROUP_FILES` images or `GROUP_PIXELS` pixel values are in memory; their
    network inputs are then batched together.  Every exception becomes a
    ``failed`` record, so that one bad input never stops a batch; the
    record's reason does not start with the input's name (the log and the
    report add it).  A record's ``seconds`` is the task's own reading and
    writing plus its share of the group's deblending.
    """
    tasks = iter(tasks)
    while True:
        ready, images, n_pixels = [], [], 0  # ready: (task, record or None, state, seconds)
        for task in tasks:
            started = time.perf_counter()
            record, image, state = _prepare_one(Path(task[0]), Path(task[1]), **options)
            ready.append((task, record, state, time.perf_counter() - started))
            if image is not None:
                images.append(image)
                n_pixels += image.data.size
                if deblender is None:  # loaded when first needed: skipped runs need none
                    deblender = _cached_deblender(*key) if key is not None \
                        else _WORKER["deblender"]
                # a deblender that cannot batch across images takes them one by one
                limit = GROUP_FILES if hasattr(deblender, "deblend_many") else 1
                if len(images) >= limit or n_pixels >= GROUP_PIXELS:
                    break
        if not ready:
            return
        outcomes, share = [], 0.0
        if images:
            _set_torch_threads(torch_threads)  # one worker, one thread: no oversubscription
            started = time.perf_counter()
            outcomes = _deblend_all(deblender, images)
            share = (time.perf_counter() - started) / len(images)
            del images
        outcomes = iter(outcomes)
        for task, record, state, seconds in ready:
            started = time.perf_counter()
            if state is not None:
                outcome = next(outcomes)
                try:
                    if isinstance(outcome, BaseException):
                        raise outcome
                    record = _finish_one(outcome, Path(task[1]), state, **options)
                except Exception as exc:  # noqa: BLE001 - reported per input
                    record = _failure(exc, Path(task[0]))
                seconds += share
            record["seconds"] = round(seconds + time.perf_counter() - started, 3)
            yield task, record


def _process_list(tasks, key, **options):
    """`_process_group` for a worker process: the records of ``tasks`` as a list."""
    tasks = [(Path(a), Path(b)) for a, b in tasks]
    return [record for _, record in _process_group(tasks, key, **options)]


def _without_name(message, path):
    """Drop a leading ``'<path>: '`` from ``message``: the report names the input itself."""
    for name in (str(path), os.path.abspath(path), Path(path).name):
        if message.startswith(f"{name}: "):
            return message[len(name) + 2:]
    return message


def _folder_problem(folder):
    """Why ``folder`` cannot take outputs here (runs on each Dask worker), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return "does not exist"
    probe = folder / f".astrodeblend-probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"is not writable ({_oserror_text(exc)})"
    return None


def _oserror_text(exc):
    from .io._atomic import _describe_oserror

    return _describe_oserror(exc)


# ------------------------------------------------------------------ runners
#: Tasks sent to a parallel worker at once (deblended together there).
WORKER_GROUP = 8


def _groups(tasks, size=WORKER_GROUP):
    """Split an iterable of tasks into lists of ``size``."""
    tasks = iter(tasks)
    while group := list(itertools.islice(tasks, size)):
        yield group


def _absolute(group):
    """Make the tasks' paths absolute strings (workers have their own folders)."""
    return [(os.path.abspath(a), os.path.abspath(b)) for a, b in group]


class _SerialRunner:
    """Process tasks one after the other in this process."""

    parallel = False

    def __init__(self, deblender):
        self.deblender = deblender

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, tasks, options):
        yield from _process_group(tasks, None, deblender=self.deblender, **options)


class _DaskRunner:
    """A bounded window of tasks on a Dask cluster (a scheduler's address or a given client)."""

    parallel = True

    def __init__(self, key, deblender, *, scheduler=None, client=None):
        self.key, self.deblender = key, deblender
        self.scheduler, self.client = scheduler, client
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        from distributed import Client

        try:
            if self.client is None:
                try:
                    self.client = self._stack.enter_context(Client(self.scheduler, timeout=30))
                except (OSError, ValueError, TypeError) as exc:
                    raise InvalidInputError(f"cannot connect to the Dask scheduler "
                                            f"{self.scheduler!r}: {exc}") from None
            self.window = 2 * max(1, sum(self.client.nthreads().values()))
            self.shipped = (self.client.scatter(self.deblender, broadcast=True, hash=False)
                            if self.deblender is not None else None)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._stack.close()
        return False

    def check_folder(self, folder):
        """Refuse to start when a worker cannot see or write the output folder."""
        folder = os.path.abspath(folder)
        try:
            problems = self.client.run(_folder_problem, folder)
        except Exception as exc:  # noqa: BLE001 - a worker died on the way: tasks will tell
            _note(f"could not check output folder {folder} on the Dask workers "
                  f"({type(exc).__name__}: {exc})")
            return
        for worker, problem in sorted(problems.items()):
            if problem:
                raise WriteError(f"output folder {folder} {problem} on Dask worker {worker} "
                                 "(workers need a shared file system with the client)")

    def run(self, tasks, options):
        from distributed import as_completed

        groups = _groups(tasks)
        pending = {}
        finished = as_completed()

        def submit():
            group = next(groups, None)
            if group is None:
                return
            future = self.client.submit(  # absolute: workers have their own folders
                _process_list, _absolute(group), self.key, pure=False,
                deblender=self.shipped, torch_threads=1, **options)
            pending[future] = group
            finished.add(future)

        for _ in range(self.window):
            submit()
        for future in finished:
            group = pending.pop(future)
            try:
                records = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker, a lost task
                records = [_record("failed", f"task lost: {type(exc).__name__}: {exc}")
                           for _ in group]
            future.release()
            submit()
            yield from zip(group, records, strict=True)


class _PoolRunner:
    """A bounded window of tasks on worker processes, and this process (when Dask is absent).

    ``n_workers - 1`` processes are started (forked or spawned,
    ``_start_method``); this process is the last worker and deblends groups
    itself between collecting theirs, with its own ``local`` deblender (set
    before `run`).  `start` starts the processes and has each load its
    model at once (a forked one finds it loaded), so that spawned ones
    start up while this one loads its own.  Torch runs on one thread in
    every process (this one's setting is restored at the end).
    """

    parallel = True

    def __init__(self, key, deblender, *, n_workers, start_method=None):
        self.key, self.deblender = key, deblender
        self.start_method = start_method  # None: `_start_method` decides at `start`
        self.n_spawned = max(n_workers - 1, 1)
        self.window = 2 * self.n_spawned
        self.executor, self.local, self._threads = None, None, None

    def start(self):
        """Spawn the worker processes (if not yet) and have them load their model."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self.executor is not None:
            return self
        try:
            self.executor = ProcessPoolExecutor(
                max_workers=self.n_spawned,
                mp_context=multiprocessing.get_context(self.start_method or _start_method()),
                initializer=_init_pool_worker, initargs=(1, self.deblender))
            if self.key is not None:
                for _ in range(self.n_spawned):
                    self.executor.submit(_warm_worker, self.key)
        except (OSError, NotImplementedError, ImportError) as exc:
            raise AstrodeblendError(f"cannot start {self.n_spawned} worker processes here "
                                    f"({exc}): use workers=1, or install Dask "
                                    f"({_INSTALL_HINT}) and use a scheduler") from None
        return self

    def close(self):
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        torch = sys.modules.get("torch")
        if self._threads is not None and torch is not None:
            torch.set_num_threads(self._threads)
            _WORKER["threads"] = None

    def __enter__(self):
        torch = sys.modules.get("torch")
        self._threads = torch.get_num_threads() if torch is not None else None
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def run(self, tasks, options):
        from concurrent.futures import FIRST_COMPLETED, wait

        groups = _groups(tasks)
        pending = {}

        def submit():
            group = next(groups, None)
            if group is not None:
                future = self.executor.submit(_process_list, _absolute(group), self.key,
                                              torch_threads=1, **options)
                pending[future] = group

        def collect(future):
            group = pending.pop(future)
            try:
                records = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker process died
                records = [_record("failed", f"worker process failed: "
                                   f"{type(exc).__name__}: {exc}") for _ in group]
            try:
                submit()
            except Exception:  # noqa: BLE001 - broken pool: this process does the rest
                pass
            return zip(group, records, strict=True)

        def here(group):
            return _process_group(group, None, deblender=self.local, torch_threads=1,
                                  **options)

        for _ in range(self.window):
            submit()
        while True:  # this process works too, collecting the others' results between groups
            for future in [f for f in pending if f.done()]:
                yield from collect(future)
            group = next(groups, None)
            if group is None:
                break
            yield from here(group)
        for future in list(pending):  # groups no worker has started: done here
            if future.cancel():
                yield from here(pending.pop(future))
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from collect(future)


def _start_method():
    """How worker processes start: ``'fork'`` where it is safe, else ``'spawn'``.

    A forked worker inherits this process's imports and loaded model, so it
    deblends at once; a spawned one imports torch and loads its model first
    (about 2.5 s of the other core on 2 cores, where 200 cutouts take 6 s in
    all).  Fork is used on Linux only, in a process without other threads
    (their locks would stay held in the child) and without CUDA initialised
    (a forked child cannot use it); torch runs on one thread in every worker,
    as `torch.utils.data.DataLoader`'s forked workers do.
    """
    import multiprocessing
    import threading

    torch = sys.modules.get("torch")
    if (sys.platform.startswith("linux") and threading.active_count() == 1
            and "fork" in multiprocessing.get_all_start_methods()
            and not (torch is not None and torch.cuda.is_initialized())):
        return "fork"
    return "spawn"


def _warm_worker(key):
    """Load the model of ``key`` in a worker process (its start-up, overlapped)."""
    _cached_deblender(*key)


# ------------------------------------------------------------------ summary
@dataclass
class BatchSummary:
    """What a batch did: counts, sources found, time and the run log.

    Attributes
    ----------
    n_done, n_skipped, n_failed : int
        Inputs deblended, skipped (their output was already complete) and
        failed.
    n_sources : int
        Sources found in the inputs deblended by this run.
    seconds : float
        Wall-clock time of the run.
    log_path : `~pathlib.Path`
        The run log (`LOG_NAME` in the output folder).
    failures : list of (str, str)
        ``(input, reason)`` of every failed input.
    n_inputs : int
        Inputs the run set out to handle (more than `n_files` when it was
        interrupted).

    Examples
    --------
    >>> summary = BatchSummary(n_done=3, n_skipped=1, n_sources=7, seconds=2.5,
    ...                        log_path="out/deblend_log.csv")
    >>> summary.exit_code
    0
    >>> print(summary)
    4 files: 3 deblended, 1 skipped (already done), 0 failed; 7 sources found in 2.5 s
    run log: out/deblend_log.csv
    >>> print(BatchSummary(n_done=1, n_sources=1, seconds=0.4, log_path="deblend_log.csv"))
    1 file: 1 deblended, 0 skipped (already done), 0 failed; 1 source found in 0.4 s
    run log: deblend_log.csv
    """

    n_done: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    n_sources: int = 0
    seconds: float = 0.0
    log_path: Path | str | None = None
    failures: list = field(default_factory=list)
    n_inputs: int = 0

    @property
    def n_files(self):
        """Number of inputs handled."""
        return self.n_done + self.n_skipped + self.n_failed

    @property
    def exit_code(self):
        """The CLI's status: 0 when nothing failed, 1 when some inputs failed, 2 when all did."""
        if not self.n_failed:
            return 0
        return 1 if self.n_done or self.n_skipped else 2

    def __str__(self):
        return (f"{plural(self.n_files, 'file')}: {self.n_done} deblended, {self.n_skipped} "
                f"skipped (already done), {self.n_failed} failed; "
                f"{plural(self.n_sources, 'source')} found in {self.seconds:.1f} s\n"
                f"run log: {self.log_path}")


class _RunLog:
    """The CSV run log, appended one whole row at a time.

    Each row goes to the file in one unbuffered write (repeated for a short
    write).  When a write fails (a full disk, a quota), the part of the row
    that got written is cut off again, so the rows before it stay intact, and
    a one-line `~astrodeblend.errors.WriteError` stops the run.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.n_rows = 0
        self.handle = None

    def __enter__(self):
        try:
            new = not self.path.exists() or self.path.stat().st_size == 0
            if not new:
                with open(self.path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    ends_cleanly = handle.read(1) == b"\n"
            self.handle = open(self.path, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise WriteError(f"cannot write the run log {self.path}: "
                             f"{_oserror_text(exc)}") from None
        try:
            if new:
                self._append(self._line(LOG_COLUMNS))
            elif not ends_cleanly:  # a run killed in the middle of a line
                self._append(b"\n")
        except BaseException:
            self.handle.close()
            raise
        return self

    @staticmethod
    def _line(fields):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(fields)
        # file names that are not UTF-8 keep their bytes
        return buffer.getvalue().encode("utf-8", "surrogateescape")

    def _raw_write(self, data):
        return self.handle.write(data)

    def _append(self, data):
        start = self.handle.seek(0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                written = self._raw_write(view)
                if not written:
                    raise OSError(errno.EIO, "the write did not make progress")
                view = view[written:]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self.handle.fileno(), start)  # no half row
            rows = (f"the {plural(self.n_rows, 'row')} written by this run and the rows "
                    "before them are intact" if self.n_rows else "earlier rows are intact")
            raise WriteError(f"cannot write the run log {self.path}: {_oserror_text(exc)}; "
                             f"the run stopped ({rows}; {_RESUME_HINT})") from None

    def write(self, input_path, output_path, record):
        self._append(self._line([str(input_path),
                                 "" if output_path is None else str(output_path),
                                 record["status"], record["reason"], record["n_sources"],
                                 f"{record['seconds']:.3f}"]))
        self.n_rows += 1

    def __exit__(self, *exc):
        self.handle.close()
        return False


class _FolderLock:
    """The lock file `LOCK_NAME` of an output folder: one run at a time.

    The file holds the owner's pid, host name and start time (JSON).  It is
    created with ``O_EXCL``, which also proves that the folder is writable.
    A lock whose owner is a process of this host that no longer runs, or an
    empty lock older than a minute (a run killed while taking it), is stale
    and taken over; a lock of another host cannot be checked and is
    respected.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.token = secrets.token_hex(8)
        self.held = False

    def _read(self):
        try:
            text = self.path.read_text(encoding="utf-8")
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None, 0.0
        except (OSError, UnicodeDecodeError):
            return {}, 0.0
        try:
            owner = json.loads(text)
        except ValueError:
            owner = {}
        return (owner if isinstance(owner, dict) else {}), age

    @staticmethod
    def _is_stale(owner, age):
        if not owner:
            return age > 60
        if owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return age > 60
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # another user's process, or no permission to ask: alive
            return False
        return False

    def _take_over(self, owner):
        """Move a stale lock aside; False when someone else changed it meanwhile."""
        aside = self.folder / f"{LOCK_NAME}.stale-{self.token}"
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return False
        moved, _ = self._read_file(aside)
        if moved != owner:  # not the lock we judged stale: put it back
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        with contextlib.suppress(OSError):
            os.unlink(aside)
        return moved == owner

    @staticmethod
    def _read_file(path):
        try:
            owner = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            owner = {}
        return (owner if isinstance(owner, dict) else {}), 0.0

    def __enter__(self):
        owner_text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                 "token": self.token})
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner, age = self._read()
                if owner is None:
                    continue  # removed meanwhile: try again
                if self._is_stale(owner, age):
                    if self._take_over(owner):
                        who = (f"pid {owner.get('pid')} on {owner.get('host')}" if owner
                               else "an unknown run")
                        _note(f"removed the stale lock of {who} in {self.folder}")
                    continue
                who = (f"pid {owner.get('pid')} on {owner.get('host')}, since "
                       f"{owner.get('started')}" if owner else "a run that is starting")
                raise WriteError(
                    f"output folder {self.folder} is in use by another astrodeblend run "
                    f"({who}); wait for it to finish or use another --output-dir (if that "
                    f"run is gone, remove {self.path})") from None
            except OSError as exc:
                raise WriteError(f"cannot write in output folder {self.folder}: "
                                 f"{_oserror_text(exc)}") from None
            try:
                os.write(fd, owner_text.encode())
            except OSError as exc:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise WriteError(f"cannot write in output folder {self.folder}: "
                                 f"{_oserror_text(exc)}") from None
            os.close(fd)
            self.held = True
            return self
        raise WriteError(f"cannot take the lock {self.path}: it keeps changing")

    def __exit__(self, *exc):
        if self.held:
            owner, _ = self._read()
            if owner and owner.get("token") == self.token:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            self.held = False
        return False


def _note(text):
    print(f"astrodeblend: {text}", file=sys.stderr, flush=True)


def _usable_cores():
    """Return the number of CPU cores this process may run on (its affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


def auto_workers(n_inputs, *, cores=None):
    """Return the worker processes ``workers="auto"`` uses for ``n_inputs`` files on a CPU.

    One per ``AUTO_FILES_PER_WORKER`` (64) inputs, at most
    ``AUTO_MAX_WORKERS`` (4) and the usable cores (``cores``; by default this
    process's CPU affinity).  `deblend_files` uses one on a GPU, where the
    networks batch the stamps of many images and more processes would only
    share the device.

    Examples
    --------
    >>> auto_workers(20, cores=2), auto_workers(200, cores=2), auto_workers(1000, cores=16)
    (1, 2, 4)
    """
    cores = _usable_cores() if cores is None else int(cores)
    return int(max(1, min(n_inputs // AUTO_FILES_PER_WORKER, AUTO_MAX_WORKERS, cores)))


def _on_gpu(method, device):
    """Whether a batch's networks would run on a GPU (so that auto means one worker)."""
    if method != "gan" or device == "cpu":
        return False
    import torch

    return device == "cuda" or torch.cuda.is_available()


# --------------------------------------------------------------- the batch
def deblend_files(inputs, output_dir, *, method="gan", model=None, deblender=None,
                  device="auto", hdu=None, overwrite=False, png=False, workers=1,
                  scheduler=None, client=None, max_pixels=None, mode="auto",
                  background="auto", flux=None, full_frame=False, progress=True,
                  max_image_pixels=None, batch_size=None, augment=None, halos=None,
                  precision=None, mask=None):
    """Deblend many image files into one FITS result each, restartably.

    Each input ``<stem>.<ext>`` gives ``output_dir/<stem>_deblended.fits``
    (``spec/fits-output.md``), plus ``<stem>_deblended.png`` with ``png``.
    See the module documentation for streaming, skip-if-done, the run log
    and parallelism.

    Parameters
    ----------
    inputs : str, path or list of them
        Files, folders, glob patterns or ``@list.txt`` files
        (`expand_inputs`).  Entries that name no file are logged as failed.
    output_dir : str or path
        Folder for the results and the run log `LOG_NAME` (created).
    method : {'gan', 'segmentation', 'fluxshare'}, optional
        Deblending method (`astrodeblend.pipeline.get_deblender`).
    model : str or path, optional
        Checkpoint for ``'gan'`` (the shipped model by default).
    deblender : callable, optional
        A ready deblender (``deblender(image) -> DeblendResult``), used
        instead of ``method``/``model``; with workers it is sent to each
        worker once.
    device : {'auto', 'cpu', 'cuda'}, optional
        Torch device of every worker.
    hdu : int or str, optional
        FITS HDU to read from each input.
    overwrite : bool, optional
        Deblend again and replace outputs that exist.  Without it, outputs
        that verify are skipped, damaged ones are redone, and outputs that
        are not ours to replace (another program's file, or a result made
        from another input or with another model) make the input fail.
    png : bool, optional
        Also write a quick-look figure per input.
    workers : int or 'auto', optional
        Parallel worker processes on this machine, this one included (one
        model copy each; a process pool, see the module's notes).
        ``'auto'`` (the command line's default): `auto_workers` of the
        inputs found, one on a GPU, with Dask or with a ready ``deblender``,
        and one when worker processes cannot be started here.
    scheduler : str, optional
        Address of a running Dask scheduler (``'tcp://host:8786'``) to use
        instead of local processes.
    client : `distributed.Client`, optional
        An existing Dask client to use.
    max_pixels : int, optional
        Images larger than this (pixels per band) are processed in tiles.
    mode : {'auto', 'display', 'linear'}, optional
        Value space of the inputs (``'gan'`` only): ``'auto'`` takes JPG/PNG,
        and FITS that look like a JPG's RGB
        (`~astrodeblend.image.looks_display`), as display-stretched and
        other FITS as linear flux; ``'display'`` is for FITS files that hold
        display values (0-1 or 0-255 from a JPG).
    background : 'auto', float or list of float, optional
        Sky level (``'gan'`` only): ``'auto'`` estimates it with the sources
        masked; ``0`` for inputs that are already sky-subtracted; one value
        for all bands or one per band.  A string is read by
        `parse_background` (``'none'``, ``'1.5,2,2.5'``).
    flux : {'conserve', 'model'}, optional
        How SOURCE pixels are made (``'gan'`` only): shared input pixels, or
        the generator's noiseless estimate.  None: the deblender's default.
    full_frame : bool, optional
        Write full-size SOURCE HDUs instead of cutouts over each footprint.
    progress : bool, optional
        Report progress over files: a bar when standard error is a
        terminal, otherwise a line every 50 files or 30 seconds
        (`astrodeblend.utils.progress`).
    max_image_pixels : int, optional
        Inputs of more pixel values than this (bands x rows x columns) fail
        before they are decoded (``max_pixels`` of
        `astrodeblend.io.read_image`; its default, 2**27, when None).
    batch_size : int, optional
        Stamps per forward pass of the networks (``'gan'`` only), gathered
        across a group of images; None: 64 on a CPU, 512 on a GPU.
    augment : {1, 2, 4, 8}, optional
        Symmetric copies of each stamp whose generator outputs are averaged
        (``'gan'`` only; `astrodeblend.pipeline.Deblender`); None: the
        deblender's default, 2.
    halos : bool, optional
        Give each source the smoothed faint light just outside the
        footprints (``'gan'`` only; `astrodeblend.pipeline.Deblender`);
        None: the deblender's default, on.
    precision : {'auto', 'float32', 'bfloat16', 'float16'}, optional
        The networks' arithmetic (``'gan'`` only;
        `astrodeblend.utils.resolve_precision`); None: the deblender's
        default, ``'auto'`` (bfloat16 autocast on a CPU that has it).
    mask : str or path, optional
        Bad-pixel flags for the inputs (`astrodeblend.io.read_image`'s
        ``mask``): one file for every input, or a name with ``{stem}``, the
        input's name less its suffix, in the input's folder
        (``'{stem}_mask.fits'``; `mask_path`).  An input whose mask is
        missing or does not fit it fails; the masks that a folder or a
        pattern brings in among the inputs are left out.  An output made
        before is not made again for a new mask without ``overwrite``.

    Returns
    -------
    BatchSummary

    Raises
    ------
    InvalidInputError
        If the inputs name no file at all, or an option is wrong (unknown
        method, Dask needed but absent, ``mode``/``background``/``flux``/
        ``batch_size``/``augment``/``halos``/``precision`` with a baseline
        method or a ready ``deblender``; ``precision='float16'`` on a CPU).
    CheckpointError
        If ``model`` is missing or not a valid checkpoint.
    DeviceError
        If ``device='cuda'`` and there is no GPU.
    WriteError
        If ``output_dir`` cannot be created or written (checked before the
        first input, on every Dask worker too), another run holds its lock
        (`LOCK_NAME`), or the run log cannot be written (the run stops; the
        rows written so far are intact).
    KeyboardInterrupt
        When the run is interrupted; outputs finished so far are complete
        and the same call skips them.  The exception carries the partial
        `BatchSummary` as its ``summary`` attribute.

    Notes
    -----
    Results are written atomically; the run log is the one file that is
    appended to instead (one flushed line per input).  Temporary files that
    a killed run left for this batch's outputs (``.<name>.tmp-*``) are
    removed when it starts again, and earlier results
    (``*_deblended.fits``) found among the inputs when the output folder is
    also an input folder are ignored (when named one by one, they are
    reported as failed).  Two batches cannot write to the same output folder
    at the same time: the second is refused (`LOCK_NAME`).  Paths are sent to
    workers as absolute paths.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from astropy.modeling.models import Gaussian2D
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> yy, xx = np.mgrid[:48, :48]
    >>> blend = Gaussian2D(1, 18, 24, 3, 3)(xx, yy) + Gaussian2D(0.6, 31, 24, 3, 3)(xx, yy)
    >>> fits.writeto(folder / "pair.fits", blend.astype(np.float32))
    >>> summary = deblend_files(folder / "*.fits", folder / "out", method="segmentation",
    ...                         progress=False)
    >>> summary.n_done, summary.n_failed
    (1, 0)
    >>> sorted(p.name for p in (folder / "out").iterdir())
    ['deblend_log.csv', 'pair_deblended.fits']
    >>> deblend_files(folder / "*.fits", folder / "out", method="segmentation",
    ...               progress=False).n_skipped
    1
    """
    started = time.perf_counter()
    paths, explicit = _expand_inputs(inputs)
    if not paths:
        raise InvalidInputError("no inputs given: name files, folders, patterns or @lists")
    reasons = {path: _missing_reason(path) for path in paths}
    if all(reasons.values()):
        shown = "; ".join(f"{p}: {r}" for p, r in list(reasons.items())[:5])
        raise InvalidInputError(f"no input file found ({shown})")
    auto = isinstance(workers, str) and workers == "auto"
    if auto:
        # a ready deblender stays in this process (it would be pickled to each worker)
        workers = 1 if deblender is not None or _uses_dask(scheduler, client) \
            or _on_gpu(method, device) else auto_workers(sum(not r for r in reasons.values()))
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InvalidInputError(f"workers must be a positive integer or 'auto', "
                                f"not {workers!r}")
    if (scheduler is not None or client is not None) and not HAS_DASK:
        raise InvalidInputError(f"scheduler= and client= need Dask: {_INSTALL_HINT}")
    if max_image_pixels is not None:
        from .io.readers import _limit

        max_image_pixels = _limit(max_image_pixels)

    # options are checked (and the model loaded) before anything is written
    deblender_options = _deblender_options(mode, background, flux, batch_size, augment, halos,
                                           precision, device)
    if deblender_options and (deblender is not None or method != "gan"):
        names = ", ".join(name for name, _ in deblender_options)
        target = "a ready deblender" if deblender is not None else f"method {method!r}"
        raise InvalidInputError(f"{names} apply to method 'gan' only, not to {target}")
    pool = None
    if deblender is None:
        if model is not None:
            model = Path(model).expanduser()
            if not model.is_file():
                raise CheckpointError(f"model file {model} not found")
            model = str(model.resolve())
        key = (method, model, device, max_pixels, deblender_options)
        parallel = workers > 1 and not _uses_dask(scheduler, client)
        start = _start_method() if parallel else None
        local = _cached_deblender(*key) if start != "spawn" else None
        if parallel:
            # forked after this process loaded its model, the workers inherit it;
            # spawned now, they load theirs while this process loads its own
            try:
                pool = _PoolRunner(key, None, n_workers=workers, start_method=start).start()
            except AstrodeblendError as exc:
                if not auto:
                    raise
                _note(f"{exc}; deblending in this process alone")
                workers = 1
        if local is None:
            try:
                local = _cached_deblender(*key)
            except BaseException:
                if pool is not None:
                    pool.close()
                raise
    else:
        if not callable(deblender):
            raise InvalidInputError(f"deblender must be callable, not {type(deblender).__name__}")
        key, local = None, deblender
    expect_model = (str(getattr(local, "name", "")), str(getattr(local, "model_hash", "")))

    try:
        output_dir = Path(output_dir).expanduser()
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"cannot create output folder {output_dir}: "
                             f"{exc.strerror or exc}") from None
        # the lock proves the folder writable, before any input is read
        with _FolderLock(output_dir):
            return _run_batch(
                paths, explicit, reasons, output_dir, started=started, key=key, local=local,
                deblender=deblender, workers=workers, scheduler=scheduler, client=client,
                options={"hdu": hdu, "overwrite": bool(overwrite), "png": bool(png),
                         "expect_model": expect_model, "max_image_pixels": max_image_pixels,
                         **({"mask": str(mask)} if mask is not None else {}),
                         **({"full_frame": True} if full_frame else {})},
                progress=progress, pool=pool)
    finally:
        if pool is not None:
            pool.close()


def _uses_dask(scheduler, client):
    """Whether a batch runs on Dask: a scheduler's address or a client is given."""
    return scheduler is not None or client is not None


def _run_batch(paths, explicit, reasons, output_dir, *, started, key, local, deblender,
               workers, scheduler, client, options, progress, pool=None):
    """Run the part of `deblend_files` that needs the output folder's lock."""
    # plan: paths only; an output named twice is an error of the later input
    tasks, planned_failures, owners, ignored = [], [], {}, 0
    resolved_dir = output_dir.resolve()
    # the inputs' mask files (a folder or a pattern takes them in with the images)
    masks = {} if options.get("mask") is None else {
        _path_key(mask_path(path, options["mask"])): path for path in paths}
    n_masks = 0
    for path in paths:
        if path.name.endswith("_deblended.fits") and path.parent.resolve() == resolved_dir:
            if _path_key(path) in explicit:  # named on purpose: say why it is not used
                planned_failures.append((path, None, "is a result in the output folder, not "
                                         "an input (name the image it was made from)"))
            else:  # our own outputs, when the output folder is also an input
                ignored += 1
            continue
        owner = masks.get(_path_key(path))
        if owner is not None and owner != path:
            if _path_key(path) in explicit:
                planned_failures.append((path, None, f"is the mask of {owner.name} (--mask), "
                                         "not an image"))
            else:
                n_masks += 1
            continue
        if reasons[path]:
            planned_failures.append((path, None, reasons[path]))
            continue
        output = _output_path(path, output_dir)
        if output in owners:
            planned_failures.append((path, output, f"same output name as {owners[output]}"))
            continue
        owners[output] = path
        tasks.append((path, output))
    if n_masks:
        _note(f"ignored {plural(n_masks, 'mask file')} among the inputs (--mask)")
    if ignored:
        _note(f"ignored {plural(ignored, 'earlier result')} *_deblended.fits of {output_dir} "
              "among the inputs")
    _remove_stale_temporaries(output_dir, {name for out in owners
                                           for name in (out.name, _png_path(out).name)})

    if _uses_dask(scheduler, client):
        if deblender is None:  # each worker loads its own copy
            _cached_deblender.cache_clear()
            local = None
        runner = _DaskRunner(key, deblender, scheduler=scheduler, client=client)
    elif workers > 1:
        runner = pool if pool is not None else _PoolRunner(key, deblender, n_workers=workers)
        runner.local = local  # this process is one of the workers
    else:
        runner = _SerialRunner(local)

    summary = BatchSummary(log_path=output_dir / LOG_NAME)

    def results(active):
        for path, output, reason in planned_failures:
            yield (path, output), _record("failed", reason)
        yield from active.run(tasks, options)

    summary.n_inputs = len(tasks) + len(planned_failures)
    try:
        with runner as active, _RunLog(summary.log_path) as log:  # a bad scheduler: no log
            if hasattr(active, "check_folder") and tasks:
                active.check_folder(output_dir)
            bar = _progress_bar(results(active), enable=progress, total=summary.n_inputs,
                                desc="deblend", unit="file")
            for (path, output), record in bar:
                log.write(path, output, record)
                status = record["status"]
                if status == "done":
                    summary.n_done += 1
                    summary.n_sources += record["n_sources"]
                elif status == "skipped":
                    summary.n_skipped += 1
                else:
                    summary.n_failed += 1
                    summary.failures.append((str(path), record["reason"]))
                    reason = record["reason"]
                    line = (f"astrodeblend: {reason}" if reason.startswith(f"{path}: ")
                            else f"astrodeblend: {path}: {reason}")
                    if hasattr(bar, "write"):
                        bar.set_postfix_str(f"{summary.n_failed} failed")
                        bar.write(line, file=sys.stderr)
                    else:
                        print(line, file=sys.stderr, flush=True)
            if hasattr(bar, "close"):
                bar.close()
    except KeyboardInterrupt as exc:
        summary.seconds = time.perf_counter() - started
        exc.summary = summary
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _hdu_argument(text):
    if text is None:
        return None
    text = str(text).strip()
    return int(text) if text.lstrip("-").isdigit() else text


def deblend_from_cli(args):
    """Run ``astrodeblend deblend`` from parsed arguments; print the summary.

    Parameters
    ----------
    args : `argparse.Namespace`
        The arguments of the ``deblend`` subcommand (`astrodeblend.cli`).

    Returns
    -------
    int
        0 when every input was deblended or skipped, 1 when some failed, 2
        when all failed, 130 when interrupted (the message says how to resume).  Bad
        arguments raise `~astrodeblend.errors.AstrodeblendError`, which
        the command line turns into exit status 2.

    Examples
    --------
    >>> from astrodeblend.cli import build_parser
    >>> args = build_parser().parse_args(["deblend", "no-such-file.fits", "--output-dir", "x"])
    >>> deblend_from_cli(args)
    Traceback (most recent call last):
    ...
    astrodeblend.errors.InvalidInputError: no input file found (no-such-file.fits: file not found)
    """
    background = getattr(args, "background", "auto")
    try:
        summary = deblend_files(
            args.inputs, args.output_dir, method=args.method, model=args.model,
            device=args.device, hdu=_hdu_argument(args.hdu), overwrite=args.overwrite,
            png=args.png, workers=args.workers, scheduler=args.scheduler,
            max_pixels=args.max_pixels, mode=getattr(args, "mode", "auto"),
            max_image_pixels=getattr(args, "max_image_pixels", None),
            background=parse_background(background) if isinstance(background, str)
            else background,
            flux=getattr(args, "flux", None), full_frame=getattr(args, "full_frame", False),
            batch_size=getattr(args, "batch_size", None), augment=getattr(args, "augment", None),
            halos=False if getattr(args, "no_halos", False) else None,
            precision=getattr(args, "precision", None),
            mask=getattr(args, "mask", None), progress=not args.no_progress)
    except KeyboardInterrupt as exc:
        done = getattr(exc, "summary", None)
        if done is not None:
            finished = done.n_done + done.n_skipped
            _note(f"interrupted after {finished} of {plural(done.n_inputs, 'file')} "
                  f"({done.n_failed} failed; run log: {done.log_path})")
        else:
            _note("interrupted")
        _note(_RESUME_HINT)
        return EXIT_INTERRUPTED
    print(summary)
    return summary.exit_code
