"""Training-set files: build blended scenes into HDF5, split by galaxy, stream them back.

File layout (``format='astrodeblend-dataset'``, ``version=1``)
---------------------------------------------------------------
Root attributes: ``format``, ``version``, ``protocol``, ``seed`` and
``params`` (JSON: the protocol options, the split fractions, the number of
galaxies per scene, the image shape, the number of galaxies of each split
and a SHA-256 of the sorted galaxy ids), plus ``images`` (the folder the
scenes were made from, for information).  One group per split, ``train``,
``validation`` and ``test``, each with

- ``blend``     float32 ``(N, C, H, W)``
- ``truth``     float32 ``(N, K, C, H, W)``: noiseless galaxies, zero padded
- ``centers``   float32 ``(N, K, 2)``: 0-based ``(x, y)``, NaN padded
- ``n_sources`` int32   ``(N,)``
- ``ids``       int64   ``(N, K)``: galaxy ids, -1 padded
- ``partials``  float32 ``(N, K, C, H, W)``: ``paper`` protocol only
- attribute ``n_complete``: the number of scenes that are completely written

``K`` is the number of galaxies per scene (2, or ``n_galaxies`` for
``physical``); for ``survey`` it is the most sources of a scene (4 galaxies
+ ``max_stars`` stars by default), ``n_sources`` varies from scene to scene,
stars and profile galaxies have id -1, the images' own band count is the
scenes' (``n_bands``) and the defects' mask is not stored (the blend keeps
the defective values).  Datasets are chunked one scene per chunk and resizable.
Images may be stored as float16 (``dtype='float16'``) to halve the file;
`open_split` always returns float32.

Splits and determinism
----------------------
Galaxies are assigned to a split by a stable hash of their id
(`split_galaxies`), independent of seeds and of which other galaxies are
present, so the test galaxies never change.  Each scene *i* of split *k*
draws its galaxies from that split only, with
``numpy.random.default_rng([seed, k, i])``: a file is a pure function of
the image folder and the arguments.

Writing and resuming
--------------------
A file is never changed in place: `build_dataset` writes a new file, or
extends a copy of an existing one, beside it and renames it into place
(`astrodeblend.io.atomic_write`), so a kill at any moment leaves the old
file whole.  Scenes are appended in batches; after each flushed batch the
split's ``n_complete`` attribute is updated.  When a build is interrupted
(Ctrl-C, an error) after some scenes were completed, the file with those
scenes is kept (unless ``overwrite=True`` was replacing a file: that file
stays as it was); running `build_dataset` again with the same arguments (and
a larger ``n``, or after an interruption) truncates each split to its
``n_complete`` scenes and appends the missing ones.  A file made with
another protocol, seed or options is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError, InvalidInputError

__all__ = ["FORMAT", "VERSION", "SPLITS", "split_galaxies", "build_dataset", "DatasetSummary",
           "open_split", "SceneFile"]

#: Value of the ``format`` root attribute of a training-set file.
FORMAT = "astrodeblend-dataset"
#: Version of the file layout.
VERSION = 1
#: Names of the splits, in order (``k`` of the scene seeds).
SPLITS = ("train", "validation", "test")

_KEYS = ("blend", "truth", "centers", "n_sources", "ids")
_BATCH = 32


# --------------------------------------------------------------------- splits
def _check_fractions(fractions, name="split"):
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be three fractions, not {fractions!r}") from None
    if (len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values)
            or abs(sum(values) - 1.0) > 1e-6):
        raise InvalidInputError(f"{name} must be three fractions >= 0 adding up to 1, "
                                f"not {fractions!r}")
    return values


def _unit_hash(galaxy_id):
    """Map an id to [0, 1) with SHA-256 of its decimal string (stable across runs)."""
    digest = hashlib.sha256(str(int(galaxy_id)).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_galaxies(ids, fractions=(0.8, 0.1, 0.1)):
    """Assign galaxies to the train, validation and test splits by a stable hash of their id.

    Each id is mapped to a number in [0, 1) by the SHA-256 of its decimal
    string; it goes to ``train`` below ``fractions[0]``, to ``validation``
    below ``fractions[0] + fractions[1]`` and to ``test`` otherwise.  The
    assignment of a galaxy depends only on its id and the fractions, not on
    a seed or on the other ids, so the held-out galaxies never change.

    Parameters
    ----------
    ids : sequence of int
        Galaxy ids.
    fractions : (float, float, float), optional
        Expected fractions of train, validation and test galaxies (sum 1).

    Returns
    -------
    dict
        ``{'train': ids, 'validation': ids, 'test': ids}``, each an
        ``int64`` array in the order of ``ids``.

    Raises
    ------
    InvalidInputError
        If the fractions are not three non-negative numbers adding up to 1
        or an id is not an integer.

    Examples
    --------
    >>> parts = split_galaxies(range(100000, 101000))
    >>> {name: len(part) for name, part in parts.items()}
    {'train': 837, 'validation': 83, 'test': 80}
    >>> int(split_galaxies([100123])["train"][0])  # the same wherever it appears
    100123
    """
    lo, mid, _ = _check_fractions(fractions)
    mid += lo
    try:
        array = np.array([int(i) for i in ids], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError("ids must be integers") from None
    u = np.array([_unit_hash(i) for i in array], dtype=np.float64)
    return {"train": array[u < lo], "validation": array[(u >= lo) & (u < mid)],
            "test": array[u >= mid]}


def _allocate(n, fractions):
    """Split ``n`` scenes proportionally to ``fractions`` (largest remainders)."""
    raw = np.array(fractions) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return [int(c) for c in counts]


# -------------------------------------------------------------- image folders
def _probe_shape(path):
    """``(C, H, W)`` of an image file, from its header when cheap."""
    from .io import IMAGE_SUFFIXES, read_image

    if path.name.lower().endswith(IMAGE_SUFFIXES):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                mode, (w, h) = img.mode, img.size
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from None
        single = mode in ("1", "L", "LA", "P;L", "I", "F") or mode.startswith("I;16")
        return (1 if single else 3, h, w)
    return read_image(path).shape


def _check_shapes(paths):
    shape, first = None, None
    for path in paths:
        this = tuple(_probe_shape(path))
        if shape is None:
            shape, first = this, path
        elif this != shape:
            what = "band count" if this[0] != shape[0] else "size"
            raise DatasetError(f"images of mixed {what}: {path.name} is {this[1]}x{this[2]} with "
                               f"{this[0]} bands but {first.name} is {shape[1]}x{shape[2]} with "
                               f"{shape[0]} bands")
    return shape


# ------------------------------------------------------------------- building
@dataclass
class DatasetSummary:
    """What `build_dataset` did; ``print(summary)`` gives a short report.

    Attributes
    ----------
    path : `~pathlib.Path`
        The HDF5 file.
    protocol : str
        Blending protocol.
    seed : int
        Seed of the file.
    counts : dict
        Scenes in the file per split after the call.
    added : dict
        Scenes written by this call per split.
    galaxies : dict
        Galaxies available per split.
    seconds : float
        Wall-clock time of the call.
    """

    path: Path
    protocol: str
    seed: int
    counts: dict = field(default_factory=dict)
    added: dict = field(default_factory=dict)
    galaxies: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self):
        lines = [f"{self.path}: protocol {self.protocol}, seed {self.seed}"]
        for name in SPLITS:
            lines.append(f"  {name:<10} {self.counts.get(name, 0):>8} scenes "
                         f"({self.added.get(name, 0)} added) from "
                         f"{self.galaxies.get(name, 0)} galaxies")
        total = sum(self.added.values())
        rate = total / self.seconds if self.seconds > 0 else 0.0
        lines.append(f"  {total} scenes written in {self.seconds:.1f} s ({rate:.1f} scenes/s)")
        return "\n".join(lines)


def _jsonable(options):
    out = {}
    for key, value in sorted(options.items()):
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, tuple):
            value = list(value)
        try:
            json.dumps(value)
        except TypeError:
            raise InvalidInputError(f"protocol option {key}={value!r} cannot be stored in a "
                                    f"dataset file (use numbers, strings or a FITS path)") from None
        out[key] = value
    return out


def _survey_sizes(options):
    """``(K, images per scene)`` of a ``survey`` file: most galaxies + most stars, most galaxies."""
    from .blend import SURVEY_GALAXY_PROBABILITIES

    n = options.get("n_galaxies")
    stars = options.get("max_stars", 2)
    for value, name in ((n, "n_galaxies"), (stars, "max_stars")):
        if value is not None and (not isinstance(value, numbers.Integral)
                                  or isinstance(value, bool) or value < 0):
            raise InvalidInputError(f"{name} must be a non-negative integer, not {value!r}")
    most = (len(options.get("galaxy_probabilities", SURVEY_GALAXY_PROBABILITIES)) - 1
            if n is None else int(n))
    return most + int(stars), max(most, 1)


def _n_per_scene(protocol, options):
    n = options.get("n_galaxies")
    if protocol == "survey":
        return _survey_sizes(options)[0]
    if protocol != "physical":
        if n not in (None, 2):
            raise InvalidInputError(f"protocol {protocol!r} blends 2 galaxies, not "
                                    f"n_galaxies={n}")
        options.pop("n_galaxies", None)
        return 2
    if n is None:
        n = 2
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 2:
        raise InvalidInputError(f"n_galaxies must be an integer >= 2, not {n!r}")
    options["n_galaxies"] = int(n)
    return int(n)


def _scene_inputs(seed, k, i, pool, n_per_scene, attempt=0):
    """Positions (in ``pool``) of the galaxies of scene ``i`` of split ``k``, and its seed."""
    rng = np.random.default_rng([seed, k, i] if attempt == 0 else [seed, k, i, attempt])
    pick = rng.choice(len(pool), size=n_per_scene, replace=False)
    return [int(p) for p in pick], int(rng.integers(2 ** 62))


#: Draws of other galaxies tried for one scene when a galaxy cannot be used
#: (for example no flux left after sky subtraction in the ``physical`` crop).
_MAX_ATTEMPTS = 20


def _draw_scene(seed, k, i, pool, n_per_scene, load, protocol, options):
    """Make scene ``i`` of split ``k``; redraw its galaxies (deterministically) if unusable."""
    for attempt in range(_MAX_ATTEMPTS):
        pick, scene_seed = _scene_inputs(seed, k, i, pool, n_per_scene, attempt)
        scene_ids = [int(pool[p]) for p in pick]
        try:
            scene = _make(protocol, [load(g) for g in scene_ids], scene_seed, options)
        except InvalidInputError as exc:
            if "no positive flux" not in str(exc):
                raise
            last = exc
            continue
        if protocol == "survey":  # ids of the components: -1 for profiles and stars
            scene_ids = [scene_ids[c["image"]] if c.get("source") == "image" else -1
                         for c in scene.params["components"]]
        return scene, scene_ids
    raise InvalidInputError(f"scene {i} of split {SPLITS[k]}: no usable galaxies in "
                            f"{_MAX_ATTEMPTS} draws ({last})")


def _make(protocol, images, scene_seed, options):
    from .blend import make_scene

    try:
        return make_scene(images, protocol=protocol, seed=scene_seed, **options)
    except TypeError as exc:
        raise InvalidInputError(f"bad option for protocol {protocol!r}: {exc}") from None


def _create(h5, shape, k_max, protocol, dtype):
    c, h, w = shape
    for name in SPLITS:
        group = h5.create_group(name)
        group.attrs["n_complete"] = 0
        group.create_dataset("blend", (0, c, h, w), dtype=dtype, maxshape=(None, c, h, w),
                             chunks=(1, c, h, w))
        group.create_dataset("truth", (0, k_max, c, h, w), dtype=dtype,
                             maxshape=(None, k_max, c, h, w), chunks=(1, k_max, c, h, w))
        if protocol == "paper":
            group.create_dataset("partials", (0, k_max, c, h, w), dtype=dtype,
                                 maxshape=(None, k_max, c, h, w), chunks=(1, k_max, c, h, w))
        group.create_dataset("centers", (0, k_max, 2), dtype="float32",
                             maxshape=(None, k_max, 2), chunks=(256, k_max, 2))
        group.create_dataset("n_sources", (0,), dtype="int32", maxshape=(None,), chunks=(1024,))
        group.create_dataset("ids", (0, k_max), dtype="int64", maxshape=(None, k_max),
                             chunks=(256, k_max))


def _check_existing(path, protocol, seed, params_json, scene_shape):
    """Check that ``path`` is a dataset made with these settings; its complete scenes per split."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path} exists and is not a readable HDF5 file ({exc}); use "
                           f"overwrite=True to replace it") from None
    with h5:
        _check_layout(h5, path, protocol, seed, params_json)
        if h5["train"]["blend"].shape[1:] != scene_shape:
            raise DatasetError(f"{path} holds scenes of shape {h5['train']['blend'].shape[1:]}, "
                               f"not {scene_shape}; use overwrite=True (--overwrite) to "
                               f"replace it")
        return {name: int(h5[name].attrs.get("n_complete", 0)) for name in SPLITS}


def _check_layout(h5, path, protocol, seed, params_json):
    attrs = h5.attrs
    if attrs.get("format") != FORMAT:
        raise DatasetError(f"{path} is not an astrodeblend dataset (no format attribute "
                           f"{FORMAT!r}); use overwrite=True (--overwrite) to replace it")
    if int(attrs.get("version", -1)) != VERSION:
        raise DatasetError(f"{path} has layout version {attrs.get('version')}, this astrodeblend "
                           f"writes version {VERSION}; use overwrite=True (--overwrite) to "
                           f"replace it")
    old = {"protocol": str(attrs.get("protocol")), "seed": int(attrs.get("seed", -1))}
    new = {"protocol": protocol, "seed": seed}
    for key in old:
        if old[key] != new[key]:
            raise DatasetError(f"{path} was made with {key}={old[key]!r}, not {new[key]!r}; "
                               f"use overwrite=True (--overwrite) to start a new file")
    old_params = json.loads(attrs.get("params", "{}"))
    new_params = json.loads(params_json)
    if old_params != new_params:
        diff = sorted(k for k in set(old_params) | set(new_params)
                      if old_params.get(k) != new_params.get(k))
        raise DatasetError(f"{path} was made with other settings ({', '.join(diff)} differ); "
                           f"use overwrite=True (--overwrite) to start a new file")
    for name in SPLITS:
        if name not in h5 or any(key not in h5[name] for key in _KEYS):
            raise DatasetError(f"{path} lacks the datasets of split {name!r}; "
                               f"use overwrite=True (--overwrite) to replace it")


def _append(group, batch, k_max):
    start = int(group.attrs["n_complete"])
    stop = start + len(batch)
    for key in group:
        group[key].resize(stop, axis=0)
    c, h, w = batch[0][0].blend.shape
    truth = np.zeros((len(batch), k_max, c, h, w), dtype=np.float32)
    centers = np.full((len(batch), k_max, 2), np.nan, dtype=np.float32)
    ids = np.full((len(batch), k_max), -1, dtype=np.int64)
    n_sources = np.zeros(len(batch), dtype=np.int32)
    partials = np.zeros_like(truth) if "partials" in group else None
    for j, (scene, scene_ids) in enumerate(batch):
        n = scene.n_sources
        truth[j, :n] = scene.components
        centers[j, :n] = scene.centers
        ids[j, :n] = scene_ids
        n_sources[j] = n
        if partials is not None:
            partials[j, :n] = scene.partials
    group["blend"][start:stop] = np.stack([scene.blend.data for scene, _ in batch])
    group["truth"][start:stop] = truth
    group["centers"][start:stop] = centers
    group["ids"][start:stop] = ids
    group["n_sources"][start:stop] = n_sources
    if partials is not None:
        group["partials"][start:stop] = partials
    group.file.flush()
    group.attrs["n_complete"] = stop
    group.file.flush()


def build_dataset(images, out, *, protocol="reiman", n=1000, seed=0, split=(0.8, 0.1, 0.1),
                  overwrite=False, progress=True, dtype="float32", **protocol_kwargs):
    """Build (or resume) an HDF5 training set of blended scenes with ground truth.

    The galaxies of ``images`` are split by `split_galaxies`; ``n`` scenes
    are shared among the splits in proportion to ``split``, and each scene
    of a split blends galaxies of that split only (see the module
    documentation for the file layout, seeds and resuming).

    Parameters
    ----------
    images : str or `~pathlib.Path`
        Folder of galaxy images, one galaxy per file (JPG, PNG or FITS, all
        of one size and band count), e.g. Galaxy Zoo's
        ``images_training_rev1``.  Galaxy ids are the file names without
        suffix; files not named by a number are ignored (the rule of
        `~astrodeblend.io.list_galaxy_images`, shared with ``evaluate``).
    out : str or `~pathlib.Path`
        The HDF5 file to write or extend.
    protocol : {'reiman', 'paper', 'physical', 'survey'}, optional
        Blending protocol (`astrodeblend.blend`).
    n : int, optional
        Total number of scenes over the three splits.
    seed : int, optional
        Seed of the file.
    split : (float, float, float), optional
        Fractions of galaxies (and scenes) in train, validation and test.
    overwrite : bool, optional
        Replace an existing file instead of resuming it (the old file stays
        until the new one is complete).
    progress : bool, optional
        Show a progress bar.
    dtype : {'float32', 'float16'}, optional
        Storage type of the images (the reader returns float32 either way).
    **protocol_kwargs
        Options of the protocol function, e.g. ``n_galaxies`` and
        ``psf_fwhm`` for ``physical``; must be JSON-serialisable.

    Returns
    -------
    DatasetSummary

    Raises
    ------
    DatasetError
        If the folder is missing, empty or holds images of mixed sizes or
        band counts, a split has fewer galaxies than a scene needs, or
        ``out`` exists with another protocol, seed or options (or is not a
        dataset) and ``overwrite`` is False.
    InvalidInputError
        If ``seed``, ``n``, ``split`` or a protocol option is invalid.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> yy, xx = np.mgrid[:48, :48]
    >>> for gid in range(100000, 100040):
    ...     g = np.exp(-((xx - 23.5) ** 2 + (yy - 23.5) ** 2) / (20 + gid % 7))
    ...     rgb = np.repeat((255 * g ** 0.45)[..., None], 3, axis=2).astype(np.uint8)
    ...     Image.fromarray(rgb).save(folder / f"{gid}.jpg")
    >>> summary = build_dataset(folder, folder / "train.h5", n=10, progress=False)
    >>> summary.counts
    {'train': 8, 'validation': 1, 'test': 1}
    >>> with open_split(folder / "train.h5", "train") as scenes:
    ...     scenes[0]["truth"].shape
    (2, 3, 9, 9)
    """
    import h5py

    from .blend import PROTOCOLS
    from .io import list_galaxy_images, read_image

    start_time = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"protocol must be one of {', '.join(PROTOCOLS)}, "
                                f"not {protocol!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, not {seed!r}")
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise InvalidInputError(f"n must be a positive integer, not {n!r}")
    if dtype not in ("float32", "float16"):
        raise InvalidInputError(f"dtype must be 'float32' or 'float16', not {dtype!r}")
    seed, n = int(seed), int(n)
    fractions = _check_fractions(split)
    options = dict(protocol_kwargs)
    k_max = _n_per_scene(protocol, options)
    n_pick = _survey_sizes(options)[1] if protocol == "survey" else k_max
    options = _jsonable(options)
    out = Path(out)
    if out.is_dir():
        raise DatasetError(f"output {out} is a folder, not a file name")
    if not out.parent.is_dir():
        raise DatasetError(f"folder of output {out} does not exist")

    ids, paths = list_galaxy_images(images)
    shape = _check_shapes(paths)
    if protocol == "survey" and options.get("n_bands") is None:
        options["n_bands"] = int(shape[0])  # one band count per file
    by_id = {int(i): p for i, p in zip(ids, paths, strict=True)}
    parts = split_galaxies(ids, fractions)
    pools = [np.sort(parts[name]) for name in SPLITS]
    targets = _allocate(n, fractions)
    for name, pool, target in zip(SPLITS, pools, targets, strict=True):
        least = min(n_pick, 1) if protocol == "survey" else n_pick
        if target and len(pool) < least:
            raise DatasetError(f"split {name!r} has {len(pool)} galaxies of {images} but a "
                               f"{protocol} scene needs {least}")
    params = {"options": options, "split": list(fractions), "n_per_scene": k_max,
              "image_shape": [int(v) for v in shape], "dtype": dtype,
              "galaxies": {name: len(pool) for name, pool in zip(SPLITS, pools, strict=True)},
              "ids_sha256": hashlib.sha256(ids.tobytes()).hexdigest()}
    params_json = json.dumps(params, sort_keys=True)

    # make one scene before touching the output: bad options fail here
    first = next(k for k, t in enumerate(targets) if t)
    picks = [min(n_pick, len(pool)) if protocol == "survey" else n_pick for pool in pools]
    scene_shape = _draw_scene(seed, first, 0, pools[first], picks[first],
                              lambda g: read_image(by_id[g]), protocol,
                              options)[0].blend.shape

    resume = out.exists() and not overwrite
    done = (_check_existing(out, protocol, seed, params_json, scene_shape) if resume
            else dict.fromkeys(SPLITS, 0))
    todo = [(k, i) for k, name in enumerate(SPLITS) for i in range(done[name], targets[k])]
    counts = {name: max(done[name], targets[k]) for k, name in enumerate(SPLITS)}
    added = dict.fromkeys(SPLITS, 0)
    if todo or not resume:
        from .io import atomic_write

        # the file is built (or extended) as a copy beside it and renamed into place:
        # a kill at any moment leaves the old file as it was
        interrupted = None
        with atomic_write(out, overwrite=True) as tmp:
            if resume:
                shutil.copyfile(out, tmp)
            with h5py.File(tmp, "r+" if resume else "w") as h5:
                if not resume:
                    h5.attrs.update({"format": FORMAT, "version": VERSION, "protocol": protocol,
                                     "seed": seed, "params": params_json,
                                     "images": str(images)})
                    _create(h5, scene_shape, k_max, protocol, dtype)
                try:
                    _fill(h5, todo, added, k_max, progress=progress and bool(todo),
                          desc=f"{protocol} scenes",
                          draw=lambda k, i: _draw_scene(seed, k, i, pools[k], picks[k],
                                                        lambda g: read_image(by_id[g]),
                                                        protocol, options))
                except BaseException as exc:
                    # keep the scenes completed before an interruption (a rerun resumes),
                    # unless they would replace a file that overwrite was to replace
                    completed = sum(int(h5[name].attrs["n_complete"]) for name in SPLITS)
                    if completed == sum(done.values()) or (overwrite and out.exists()):
                        raise
                    interrupted = exc
        if interrupted is not None:
            raise interrupted
    return DatasetSummary(out, protocol, seed, counts, added,
                          {name: len(pool) for name, pool in zip(SPLITS, pools, strict=True)},
                          time.perf_counter() - start_time)


def _fill(h5, todo, added, k_max, *, progress, desc, draw):
    """Append the scenes ``todo`` (``(split index, scene index)`` pairs) to an open file."""
    from .utils import progress as progress_bar

    for name in SPLITS:  # drop scenes of an interrupted batch
        group = h5[name]
        done = int(group.attrs["n_complete"])
        for key in group:
            if group[key].shape[0] != done:
                group[key].resize(done, axis=0)
    batch, batch_split = [], None
    for k, i in progress_bar(todo, enable=progress, desc=desc, unit="scene"):
        if batch and k != batch_split:
            _append(h5[SPLITS[batch_split]], batch, k_max)
            batch = []
        batch_split = k
        batch.append(draw(k, i))
        added[SPLITS[k]] += 1
        if len(batch) == _BATCH:
            _append(h5[SPLITS[k]], batch, k_max)
            batch = []
    if batch:
        _append(h5[SPLITS[batch_split]], batch, k_max)


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
        from .blend import PROTOCOLS

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
