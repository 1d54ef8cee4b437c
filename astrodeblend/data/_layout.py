"""The layout of a training-set file: format, version, splits and their datasets."""

from __future__ import annotations

import json

from ..errors import DatasetError

#: Value of the ``format`` root attribute of a training-set file.
FORMAT = "astrodeblend-dataset"
#: Version of the file layout.
VERSION = 1
#: Names of the splits, in order (``k`` of the scene seeds).
SPLITS = ("train", "validation", "test")

_KEYS = ("blend", "truth", "centers", "n_sources", "ids")


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
