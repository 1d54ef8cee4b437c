"""Model checkpoints: safe saving, safe loading, weight hashes.

A checkpoint is a `torch.save` file that holds *only* state dicts and plain
data (numbers, strings, lists, dicts, tensors).  It is always loaded with
``torch.load(..., weights_only=True)``, so a checkpoint from elsewhere can
never run code; anything that this restricted loader rejects is refused
with a `CheckpointError`, never retried with the unsafe loader.  Before
loading, the sizes that the file's zip directory declares are added up
(at most `MAX_CHECKPOINT_BYTES`); after loading, every model config in the
payload is checked (`~astrodeblend.models.ModelConfig`: types, ranges and
the parameter count), before any network is built.

Payload keys written by `astrodeblend.train`:

``format`` (``'astrodeblend-checkpoint'``), ``version``, ``model_config``
(`ModelConfig.to_dict`), ``models`` (name -> state dict), and for training
runs ``train_config``, ``epoch``, ``step``, ``history``, ``optimizers``,
``scaler``, ``rng``, ``best_psnr``, ``generator_sha256`` and
``galaxy_split`` (`make_split_record`: which galaxies the model was trained
on; `training_galaxy_ids` reads it back, None for older checkpoints such as
the first shipped default model).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from .errors import CheckpointError, WriteError

__all__ = ["CHECKPOINT_FORMAT", "MAX_CHECKPOINT_BYTES", "save_checkpoint", "load_checkpoint",
           "weights_hash", "load_models", "load_state", "set_cuda_rng_states",
           "make_split_record", "merge_split_records", "training_galaxy_ids", "ids_hash"]

CHECKPOINT_FORMAT = "astrodeblend-checkpoint"

#: Largest amount of data (bytes, uncompressed) that a checkpoint file may
#: declare: 2 GiB.  A small file that declares more (a compressed zip
#: member) is refused before torch reads it.
MAX_CHECKPOINT_BYTES = 2 * 1024**3


def _atomic_write(path, *, overwrite=True):
    from . import io

    return io.atomic_write(path, overwrite=overwrite)


def save_checkpoint(path, payload, *, overwrite=True):
    """Write a checkpoint atomically (temporary file, then `os.replace`).

    Parameters
    ----------
    path : str or `~pathlib.Path`
        Destination ``.pt`` file.
    payload : dict
        State dicts and plain data only (checked by loading it back with
        ``weights_only=True`` semantics at load time).
    overwrite : bool, optional
        Replace an existing file (True: checkpoints are updated every epoch).

    Returns
    -------
    `~pathlib.Path`
        The written path.

    Raises
    ------
    InvalidInputError
        If ``payload`` is not a dict.
    WriteError
        If the file cannot be written.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ck.pt"
    >>> _ = save_checkpoint(path, {"epoch": 1, "w": torch.ones(2)})
    >>> load_checkpoint(path)["epoch"]
    1
    """
    import torch

    from .errors import InvalidInputError

    if not isinstance(payload, dict):
        raise InvalidInputError(f"a checkpoint payload must be a dict, not "
                                f"{type(payload).__name__}")
    path = Path(path)
    with _atomic_write(path, overwrite=overwrite) as tmp:
        try:
            torch.save(payload, tmp)
        except OSError as exc:
            raise WriteError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    return path


def load_checkpoint(path, *, map_location="cpu"):
    """Load a checkpoint safely (``torch.load(weights_only=True)``).

    Parameters
    ----------
    path : str or `~pathlib.Path`
        Checkpoint file.
    map_location : str or `torch.device`, optional
        Where to put the tensors.

    Returns
    -------
    dict
        The payload.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, corrupt, not a dict, declares
        more than `MAX_CHECKPOINT_BYTES` of data, holds anything but tensors
        and plain data (for example a pickle that would run code: it is never
        loaded with ``weights_only=False``), or holds a model config that
        is invalid or describes networks of more than
        ``astrodeblend.models.config.MAX_PARAMETERS`` parameters.

    Examples
    --------
    >>> load_checkpoint("no-such-file.pt")
    Traceback (most recent call last):
    ...
    astrodeblend.errors.CheckpointError: checkpoint no-such-file.pt does not exist
    """
    import pickle
    import warnings
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    _check_declared_size(path)
    try:
        with warnings.catch_warnings():
            # foreign (non-torch.save) pickles: the restricted loader decides, no warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol",
                                    category=UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "Unsupported" in line or "GLOBAL" in line),
                      reason[0] if reason else "rejected")
        raise CheckpointError(f"checkpoint {path} is not a plain-data checkpoint and was not "
                              f"loaded (unsafe or foreign content: {detail.strip()})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, KeyError,
            AttributeError, IndexError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint "
                              f"({type(exc).__name__}: {first})") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict "
                              f"(found {type(payload).__name__})")
    _check_model_configs(payload, path)
    return payload


def _check_declared_size(path):
    """Refuse a zip checkpoint whose members declare more than `MAX_CHECKPOINT_BYTES`."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip (legacy format) or corrupt: torch.load reports it
    if declared > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"checkpoint {path} declares {declared:,} bytes of data, more "
                              f"than the limit of {MAX_CHECKPOINT_BYTES:,}; not loaded")


def _check_model_configs(payload, where):
    """Check the model configs of a payload (``model_config``, ``train_config['model']``)."""
    from .errors import InvalidInputError
    from .models import ModelConfig

    configs = []
    if "model_config" in payload:
        configs.append(payload["model_config"])
    train = payload.get("train_config")
    if isinstance(train, dict) and "model" in train:
        configs.append(train["model"])
    for mapping in configs:
        try:
            ModelConfig.from_dict(mapping)
        except InvalidInputError as exc:
            raise CheckpointError(f"checkpoint {where} has an invalid model config: "
                                  f"{exc}") from None


def weights_hash(state_dict):
    """Return the sha256 of a state dict's tensors, in sorted key order.

    The hash covers each key name, dtype, shape and the raw bytes of the
    tensor (moved to the CPU, contiguous), so it identifies the weights
    independently of the file they were saved in.

    Parameters
    ----------
    state_dict : dict of `torch.Tensor`
        Model weights (``module.state_dict()``).

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> a = weights_hash({"w": torch.zeros(3), "b": torch.ones(1)})
    >>> a == weights_hash({"b": torch.ones(1), "w": torch.zeros(3)})
    True
    >>> a == weights_hash({"w": torch.zeros(3), "b": torch.zeros(1)})
    False
    """
    import torch

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        digest.update(key.encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            # reshape: a 0-d tensor (BatchNorm's num_batches_tracked) has no byte view
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
                          if tensor.numel() else b"")
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def models_hash(state_dicts):
    """Return the sha256 of several networks' weights together (`weights_hash`).

    Each key is prefixed with its network's name (``generator.``,
    ``detector.``), so the hash changes when any of them does: two models
    with the same generator and different detectors deblend differently.

    Parameters
    ----------
    state_dicts : dict of str to dict
        Network name to its ``state_dict()``.

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> g = {"w": torch.zeros(3)}
    >>> models_hash({"generator": g}) == models_hash({"generator": g,
    ...                                               "detector": {"w": torch.ones(1)}})
    False
    """
    return weights_hash({f"{name}.{key}": value for name, state in state_dicts.items()
                         for key, value in state.items()})


def load_models(payload_or_path, *, device="cpu", names=None):
    """Rebuild the networks stored in a checkpoint and load their weights strictly.

    Parameters
    ----------
    payload_or_path : dict, str or `~pathlib.Path`
        A checkpoint payload (from `load_checkpoint`) or its file.
    device : str or `torch.device`, optional
        Where to put the models.
    names : iterable of str, optional
        Which networks to return (default: every network stored).

    Returns
    -------
    models : dict of `torch.nn.Module`
        The networks, in eval mode.
    config : `~astrodeblend.models.ModelConfig`
        Their architecture.

    Raises
    ------
    CheckpointError
        If the checkpoint has no model config or weights, lacks a requested
        network, or its weights do not fit the architecture (missing or
        unexpected keys, other shapes).

    Examples
    --------
    >>> from astrodeblend.models import ModelConfig, build_models
    >>> cfg = ModelConfig(generator_channels=4, detector_channels=4, discriminator_channels=4)
    >>> nets = build_models(cfg)
    >>> payload = {"model_config": cfg.to_dict(),
    ...            "models": {k: m.state_dict() for k, m in nets.items()}}
    >>> models, config = load_models(payload)
    >>> sorted(models), config.generator_channels
    (['detector', 'discriminator', 'generator'], 4)
    """
    from .errors import InvalidInputError
    from .models import ModelConfig, build_models

    if isinstance(payload_or_path, dict):
        payload, where = payload_or_path, "payload"
    else:
        payload, where = load_checkpoint(payload_or_path, map_location="cpu"), payload_or_path
    if "model_config" not in payload or not isinstance(payload.get("models"), dict):
        raise CheckpointError(f"checkpoint {where} holds no astrodeblend model "
                              "(keys 'model_config' and 'models' are missing)")
    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except InvalidInputError as exc:
        raise CheckpointError(f"checkpoint {where} has an invalid model config: {exc}") from None
    stored = payload["models"]
    wanted = list(stored) if names is None else list(names)
    if any(name.startswith("sample_") for name in wanted) and not config.with_sampler:
        try:
            config = dataclasses.replace(config, with_sampler=True)  # checked again
        except InvalidInputError as exc:
            raise CheckpointError(f"checkpoint {where} has an invalid model config: "
                                  f"{exc}") from None
    built = build_models(config)
    models = {}
    for name in wanted:
        if name not in stored or name not in built:
            raise CheckpointError(f"checkpoint {where} has no {name.replace('_', ' ')} "
                                  f"(it holds: {', '.join(sorted(stored)) or 'nothing'})")
        load_state(built[name], stored[name], where=where, name=name)
        models[name] = built[name].to(device).eval()
    return models, config


def load_state(module, state_dict, *, where, name="model"):
    """Load ``state_dict`` into ``module`` strictly, with a `CheckpointError` on mismatch.

    Parameters
    ----------
    module : `torch.nn.Module`
        The freshly built network.
    state_dict : dict
        Its stored weights.
    where : str or path
        Checkpoint name for the message.
    name : str, optional
        Network name for the message.

    Raises
    ------
    CheckpointError
        If keys are missing or unexpected, or shapes differ.

    Examples
    --------
    >>> import torch
    >>> load_state(torch.nn.Linear(2, 2), {"weight": torch.zeros(2, 2)}, where="x.pt")
    Traceback (most recent call last):
    ...
    astrodeblend.errors.CheckpointError: checkpoint x.pt does not match ...: missing keys bias
    """
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {where}: the {name} weights are not a state dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing keys " + ", ".join(missing[:5])
                         + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        if unexpected:
            parts.append("unexpected keys " + ", ".join(unexpected[:5])
                         + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
        raise CheckpointError(f"checkpoint {where} does not match the model ({name}): "
                              + "; ".join(parts))
    bad = [k for k in own if tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"checkpoint {where} does not match the model ({name}): {k} has shape "
            f"{tuple(state_dict[k].shape)} in the checkpoint but {tuple(own[k].shape)} in the "
            f"model" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""))
    module.load_state_dict(state_dict, strict=True)


def set_cuda_rng_states(states):
    """Restore the CUDA random states of a checkpoint on the GPUs visible now.

    A checkpoint holds one state per GPU of the run that saved it
    (`torch.cuda.get_rng_state_all`); a run resumed on fewer GPUs restores
    the states of the GPUs it has and drops the rest, where
    `torch.cuda.set_rng_state_all` would fail on the first missing device.
    Without CUDA nothing is done.

    Parameters
    ----------
    states : sequence of `torch.Tensor`
        Saved states, one per GPU, in device order.

    Returns
    -------
    int
        Number of states restored.

    Examples
    --------
    >>> import torch
    >>> set_cuda_rng_states([]) if not torch.cuda.is_available() else 0
    0
    """
    import torch

    if not torch.cuda.is_available():
        return 0
    states = list(states)[:torch.cuda.device_count()]
    for index, state in enumerate(states):
        torch.cuda.set_rng_state(state.cpu(), index)
    return len(states)


def ids_hash(ids):
    """Return the sha256 of sorted distinct galaxy ids (little-endian int64 bytes).

    Parameters
    ----------
    ids : array-like of int
        Galaxy ids, in any order, repeats allowed.

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> ids_hash([3, 1, 2, 3]) == ids_hash([1, 2, 3])
    True
    """
    import numpy as np

    array = np.unique(np.asarray(ids, dtype=np.int64)).astype("<i8")
    return hashlib.sha256(array.tobytes()).hexdigest()


def make_split_record(ids, *, files=()):
    """Describe the galaxies a model was trained on, for the checkpoint's ``galaxy_split``.

    Parameters
    ----------
    ids : array-like of int
        Ids of the galaxies of the training scenes (profiles and stars, -1,
        are left out).
    files : sequence of dict, optional
        One dict per training file: ``name``, ``protocol``, ``split`` (the
        train, validation and test fractions of
        `astrodeblend.data.split_galaxies`, None when the file does not
        record them) and ``images_ids_sha256`` (the hash of the image
        folder's ids that the file records, None without it).

    Returns
    -------
    dict
        ``rule``, ``fractions`` (those of the files when they all agree,
        else None), ``files``, ``n_train_galaxies``, ``train_ids_sha256``
        (`ids_hash`) and ``train_ids`` (a sorted ``int64`` tensor, so that
        ``evaluate`` can refuse exactly those galaxies).

    Examples
    --------
    >>> files = [{"name": "a.h5", "split": [0.8, 0.1, 0.1]}]
    >>> record = make_split_record([5, 3, -1, 3], files=files)
    >>> record["n_train_galaxies"], record["fractions"], record["train_ids"].tolist()
    (2, [0.8, 0.1, 0.1], [3, 5])
    """
    import numpy as np
    import torch

    array = np.asarray(ids, dtype=np.int64).ravel()
    array = np.unique(array[array >= 0])
    files = [dict(f) for f in files]
    splits = [f.get("split") for f in files]
    fractions = (list(splits[0]) if splits and splits[0] is not None
                 and all(s == splits[0] for s in splits) else None)
    return {"rule": "astrodeblend.data.split_galaxies", "fractions": fractions, "files": files,
            "n_train_galaxies": int(array.size), "train_ids_sha256": ids_hash(array),
            "train_ids": torch.from_numpy(array.copy())}


def merge_split_records(old, new):
    """Return a record of the galaxies of both ``old`` and ``new`` (a resumed run's data)."""
    import numpy as np

    if not old:
        return new
    ids = np.union1d(training_galaxy_ids(old), training_galaxy_ids(new))
    names = {f.get("name") for f in old.get("files", [])}
    files = list(old.get("files", [])) + [f for f in new.get("files", [])
                                           if f.get("name") not in names]
    return make_split_record(ids, files=files)


def training_galaxy_ids(payload_or_record):
    """Return the training galaxy ids recorded in a checkpoint, or None when it has none.

    Parameters
    ----------
    payload_or_record : dict
        A checkpoint payload (`load_checkpoint`) or its ``galaxy_split``.

    Returns
    -------
    `numpy.ndarray` or None
        Sorted ``int64`` ids; None for a checkpoint without a record (the
        galaxies it was trained on are unknown).

    Raises
    ------
    CheckpointError
        If the record is malformed.

    Examples
    --------
    >>> training_galaxy_ids({"format": "astrodeblend-checkpoint"}) is None
    True
    >>> training_galaxy_ids(make_split_record([7, 2])).tolist()
    [2, 7]
    """
    import numpy as np
    import torch

    record = payload_or_record.get("galaxy_split", payload_or_record) \
        if "train_ids" not in payload_or_record else payload_or_record
    if not isinstance(record, dict) or "train_ids" not in record:
        return None
    ids = record["train_ids"]
    try:
        array = (ids.cpu().numpy() if isinstance(ids, torch.Tensor)
                 else np.asarray(ids)).astype(np.int64).ravel()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's galaxy_split record is malformed: {exc}") \
            from None
    return np.unique(array)
