"""`build_dataset`: blended scenes drawn split by split and appended to a new file."""

from __future__ import annotations

import hashlib
import json
import numbers
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InvalidInputError
from ._layout import FORMAT, SPLITS, VERSION, _check_existing, _create
from ._split import _check_fractions, split_galaxies

_BATCH = 32


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
    from ..io import IMAGE_SUFFIXES, read_image

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
    from ..blend import SURVEY_GALAXY_PROBABILITIES

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
    from ..blend import make_scene

    try:
        return make_scene(images, protocol=protocol, seed=scene_seed, **options)
    except TypeError as exc:
        raise InvalidInputError(f"bad option for protocol {protocol!r}: {exc}") from None


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
    >>> from astrodeblend.data import open_split
    >>> with open_split(folder / "train.h5", "train") as scenes:
    ...     scenes[0]["truth"].shape
    (2, 3, 9, 9)
    """
    import h5py

    from ..blend import PROTOCOLS
    from ..io import list_galaxy_images, read_image

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
    if protocol == "survey" and "max_zoom" not in options:
        # recorded: a file drawn under an earlier default (no limit) is not
        # extended with scenes drawn under this one
        from ..blend import SURVEY_MAX_ZOOM

        options["max_zoom"] = SURVEY_MAX_ZOOM
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
        from ..io import atomic_write

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
    from ..utils import progress as progress_bar

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
