"""Training the deblending GAN: data, losses, checkpoints, DDP, logs and plots.

`train` reads one or more training-set files written by
`astrodeblend.data.build_dataset` (HDF5, layout in ``DEVELOPERS.md``) and
trains, in one loop:

- the `~astrodeblend.models.DeblendGenerator` (conditional U-Net), run once
  per galaxy of each scene and conditioned on a Gaussian heatmap at that
  galaxy's centre;
- the `~astrodeblend.models.PatchDiscriminator` (conditional PatchGAN), only
  once the adversarial term is switched on;
- the `~astrodeblend.models.CenterDetector`, with its own optimiser;
- optionally the unconditional `~astrodeblend.models.SampleGenerator`
  (``TrainConfig.train_sampler``/``sampler_only``) on the isolated truths.

Value space
    Scenes of the ``physical`` protocol (linear flux) are mapped to model
    space with ``stretch(x / robust_peak(blend))`` (one scale per scene, for
    the blend and its components); ``reiman``/``paper`` scenes are already
    display-stretched and are used as they are.

Generator loss
    ``w_l1 * L1_scaled + w_adv(epoch) * BCE(D(fake), 1) + w_flux * flux``:

    - ``L1_scaled``: per galaxy ``mean|out - truth| / (mean|truth| + l1_eps)``
      averaged over galaxies, so a faint neighbour counts as much as a
      bright one;
    - adversarial weight 0 for ``adv_warmup_epochs`` (half the run by
      default), then a linear ramp to ``w_adv`` over ``adv_ramp_epochs``;
      the discriminator is only trained while the weight is positive;
    - ``flux`` (physical scenes only): per galaxy, the relative error of the
      total linear flux, ``|sum unstretch(out) - sum unstretch(truth)| /
      (sum |unstretch(truth)| + eps)``.

Detector loss
    Binary cross-entropy between the logits and the target map ``max_k
    make_heatmap(center_k)`` (soft Gaussian targets of ``heatmap_sigma``
    px; unlike CenterNet's focal loss this needs no integer peak pixel, so
    sub-pixel centres are learnt directly).

Reproducibility
    The shuffling and augmentation of epoch ``e`` are drawn from generators
    seeded with ``(seed, e)``; checkpoints hold the model, optimiser and
    scaler states and the global RNG states, so that resuming from the last
    epoch checkpoint gives bit-identical weights on the CPU.

Run folder
    ``config.json``, ``history.csv``, ``loss.png``, ``samples_epochNNN.png``,
    ``checkpoint_last.pt`` (+ ``checkpoint_last.sha256``, the generator
    weights hash) and ``checkpoint_best.pt`` (best validation PSNR).
"""

from __future__ import annotations

import csv
import dataclasses
import io as _stdio
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_models,
    load_state,
    save_checkpoint,
    weights_hash,
)
from .errors import (
    CheckpointError,
    DatasetError,
    DeviceError,
    InvalidInputError,
    OutputExistsError,
)
from .models import ModelConfig, build_models, find_peaks, make_heatmap, robust_peak, stretch
from .models import unstretch as _unstretch
from .utils import resolve_device
from .weights import default_model_path

__all__ = ["TrainConfig", "TrainResult", "train", "train_from_cli", "sample",
           "sample_from_cli", "load_scenes"]

_PROTOCOLS = ("paper", "reiman", "physical")
_HISTORY_KEYS = ["epoch", "step", "lr", "w_adv", "loss_g_l1", "loss_g_adv", "loss_g_flux",
                 "loss_d", "loss_det", "loss_sg", "loss_sd", "val_l1", "val_psnr", "val_ssim",
                 "val_psnr_blend", "det_recall", "scenes_per_s", "time_s"]


# ----------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Every setting of a training run (saved as ``config.json`` in the run folder).

    Parameters
    ----------
    epochs : int
        Number of passes over the training split.
    batch_size : int
        Scenes per optimisation step (per process under DDP); the generator
        sees one item per galaxy, i.e. about ``batch_size * K`` stamps.
    lr : float
        Adam learning rate of every network.
    betas : list of float
        Adam betas.
    cosine_lr : bool
        Decay the learning rate along a cosine, per epoch, to
        ``lr * lr_min_factor``.
    lr_min_factor : float
        Final learning rate as a fraction of ``lr``.
    seed : int
        Seed of the weights, the shuffling and the augmentation.
    w_l1, w_adv, w_flux, w_det : float
        Loss weights (content, adversarial, flux, detector).
    det_pos_weight : float
        Extra weight of the detector's BCE at the centres: pixel weights are
        ``1 + det_pos_weight * target``.
    adv_warmup_epochs : int or None
        Epochs without adversarial loss (None: half of ``epochs``).
    adv_ramp_epochs : int or None
        Epochs of the linear ramp of the adversarial weight (None: a quarter
        of ``epochs``, at least 1).
    l1_eps : float
        Added to each galaxy's mean brightness in ``L1_scaled``.
    real_label : float
        Target of real pairs for the discriminator (one-sided label
        smoothing; 1 switches it off).
    augment : bool
        Random flips and transposes (all 8 symmetries of the square) of each
        scene, centres transformed consistently.
    train_detector : bool
        Train the centre detector.
    train_sampler : bool
        Also train the unconditional sample GAN.
    sampler_only : bool
        Train only the unconditional sample GAN (on the isolated truths).
    val_max_scenes : int
        Validation scenes scored per epoch (the first ones of the split).
    sample_every : int
        Write ``samples_epochNNN.png`` every this many epochs (0: never).
    n_sample_scenes : int
        Validation scenes shown in the sample grids.
    amp : bool
        Mixed precision on CUDA (bf16 where supported, else fp16 with a
        gradient scaler); ignored on the CPU.
    max_memory_gb : float
        Training files smaller than this are read into memory; larger ones
        are read batch by batch.
    model : dict
        `~astrodeblend.models.ModelConfig` settings.

    Examples
    --------
    >>> cfg = TrainConfig(epochs=4)
    >>> cfg.warmup_epochs, cfg.adv_weight(1), cfg.adv_weight(2), cfg.adv_weight(3)
    (2, 0.0, 0.01, 0.01)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-4
    betas: list = field(default_factory=lambda: [0.5, 0.999])
    cosine_lr: bool = True
    lr_min_factor: float = 0.05
    seed: int = 0
    w_l1: float = 1.0
    w_adv: float = 0.01
    w_flux: float = 0.1
    w_det: float = 1.0
    det_pos_weight: float = 20.0
    adv_warmup_epochs: int | None = None
    adv_ramp_epochs: int | None = None
    l1_eps: float = 1e-2
    real_label: float = 0.9
    augment: bool = True
    train_detector: bool = True
    train_sampler: bool = False
    sampler_only: bool = False
    val_max_scenes: int = 256
    sample_every: int = 1
    n_sample_scenes: int = 4
    amp: bool = True
    max_memory_gb: float = 4.0
    model: dict = field(default_factory=lambda: ModelConfig().to_dict())

    def __post_init__(self):
        self.model = ModelConfig.from_dict(self.model).to_dict()
        if self.train_sampler or self.sampler_only:
            self.model["with_sampler"] = True
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be a positive integer, "
                                        f"not {getattr(self, name)!r}")
        if not self.lr > 0:
            raise InvalidInputError(f"lr must be positive, not {self.lr!r}")
        self.betas = [float(b) for b in self.betas]

    @property
    def warmup_epochs(self):
        """Epochs without adversarial loss."""
        if self.adv_warmup_epochs is not None:
            return int(self.adv_warmup_epochs)
        return self.epochs // 2

    def adv_weight(self, epoch):
        """Adversarial weight of 0-based ``epoch`` (0 during the warm-up, then a ramp)."""
        warm = self.warmup_epochs
        ramp = (self.adv_ramp_epochs if self.adv_ramp_epochs is not None
                else max(1, self.epochs // 4))
        if epoch < warm or self.w_adv <= 0:
            return 0.0
        return float(self.w_adv * min(1.0, (epoch - warm + 1) / max(1, ramp)))

    def lr_at(self, epoch):
        """Learning rate of 0-based ``epoch``."""
        if not self.cosine_lr or self.epochs <= 1:
            return float(self.lr)
        low = self.lr * self.lr_min_factor
        return float(low + 0.5 * (self.lr - low) * (1 + math.cos(math.pi * epoch / self.epochs)))

    def to_dict(self):
        """Return the settings as a JSON-able dict.

        Returns
        -------
        dict
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping):
        """Build a config from a dict, refusing unknown keys.

        Parameters
        ----------
        mapping : dict
            Settings; ``model`` may hold `ModelConfig` settings.

        Returns
        -------
        TrainConfig

        Raises
        ------
        InvalidInputError
            If a key is not a setting.
        """
        from .models.config import check_settings

        check_settings(cls, mapping, "training")
        return cls(**mapping)


def _read_config_file(path):
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInputError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"config file {path} must hold a JSON object")
    return data


def _merge_config(base, override):
    """Return ``base`` updated by ``override`` (the ``model`` dict merged key by key)."""
    merged = dict(base)
    for key, value in override.items():
        if key == "model" and isinstance(value, dict):
            merged["model"] = {**merged.get("model", {}), **value}
        else:
            merged[key] = value
    return merged


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes
    ----------
    run_dir : `~pathlib.Path`
        The run folder.
    history : list of dict
        One row per epoch (the contents of ``history.csv``).
    best_epoch : int or None
        Epoch of the best validation PSNR.
    best_psnr : float
        Best validation PSNR (NaN if never measured).
    checkpoint : `~pathlib.Path`
        ``checkpoint_best.pt`` (``checkpoint_last.pt`` when there is no best).
    last_checkpoint : `~pathlib.Path`
        ``checkpoint_last.pt``.
    generator_sha256 : str
        `~astrodeblend._checkpoint.weights_hash` of the final generator.
    """

    run_dir: Path
    history: list
    best_epoch: int | None
    best_psnr: float
    checkpoint: Path
    last_checkpoint: Path
    generator_sha256: str


# -------------------------------------------------------------------------- data
class _SceneSet:
    """Scenes of one split from one or more dataset files, read batch by batch."""

    def __init__(self, paths, split, *, max_memory_gb=4.0, max_scenes=None):
        import h5py

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DatasetError("no training-set file was given")
        self.parts = []
        shape = None
        k_max = 0
        for path in self.paths:
            if not path.is_file():
                raise DatasetError(f"training-set file {path} does not exist")
            try:
                handle = h5py.File(path, "r")
            except OSError:
                raise DatasetError(f"training-set file {path} is not an HDF5 file "
                                   "(make one with 'astrodeblend make-dataset')") from None
            protocol = handle.attrs.get("protocol")
            if isinstance(protocol, bytes):
                protocol = protocol.decode()
            if protocol not in _PROTOCOLS:
                handle.close()
                raise DatasetError(f"training-set file {path} has no valid 'protocol' attribute "
                                   f"(found {protocol!r}; expected one of {', '.join(_PROTOCOLS)})")
            if split not in handle:
                handle.close()
                raise DatasetError(f"training-set file {path} has no {split!r} group")
            group = handle[split]
            missing = [k for k in ("blend", "truth", "centers", "n_sources") if k not in group]
            if missing:
                handle.close()
                raise DatasetError(f"training-set file {path}: group {split!r} lacks "
                                   f"{', '.join(missing)}")
            b, t, c = group["blend"].shape, group["truth"].shape, group["centers"].shape
            n = b[0]
            if (len(b) != 4 or len(t) != 5 or t[0] != n or t[2:] != b[1:] or c != (n, t[1], 2)
                    or group["n_sources"].shape != (n,)):
                handle.close()
                raise DatasetError(f"training-set file {path}: group {split!r} has inconsistent "
                                   f"shapes blend {b}, truth {t}, centers {c}")
            if shape is None:
                shape = b[1:]
            elif b[1:] != shape:
                handle.close()
                raise DatasetError(f"training-set file {path} has scenes of shape {b[1:]} but "
                                   f"{self.paths[0]} has {shape}; all files must share bands "
                                   "and size")
            k_max = max(k_max, t[1])
            # a file still being built: only its first n_complete scenes are whole
            n = min(n, int(group.attrs.get("n_complete", n)))
            size_gb = sum(group[k].size * group[k].dtype.itemsize
                          for k in ("blend", "truth", "centers")) / 1e9
            if max_scenes is not None:
                n = min(n, max_scenes - sum(p["n"] for p in self.parts))
            if size_gb <= max_memory_gb or (max_scenes is not None):
                arrays = {k: np.asarray(group[k][:n]) for k in
                          ("blend", "truth", "centers", "n_sources")}
                handle.close()
                handle = None
            else:
                arrays = {k: group[k] for k in ("blend", "truth", "centers", "n_sources")}
            self.parts.append({"path": path, "protocol": protocol, "n": int(n),
                               "arrays": arrays, "handle": handle})
            if max_scenes is not None and sum(p["n"] for p in self.parts) >= max_scenes:
                break
        self.shape = tuple(int(v) for v in shape)
        self.k_max = int(k_max)
        self.offsets = np.cumsum([0] + [p["n"] for p in self.parts])

    def __len__(self):
        return int(self.offsets[-1])

    @property
    def protocols(self):
        return sorted({p["protocol"] for p in self.parts})

    def close(self):
        for part in self.parts:
            if part["handle"] is not None:
                part["handle"].close()
                part["handle"] = None

    def batch(self, indices):
        """Return float32 tensors for the scenes ``indices`` (any order)."""
        indices = np.asarray(indices, dtype=np.int64)
        b = len(indices)
        c, h, w = self.shape
        blend = np.zeros((b, c, h, w), np.float32)
        truth = np.zeros((b, self.k_max, c, h, w), np.float32)
        centers = np.zeros((b, self.k_max, 2), np.float32)
        n_src = np.zeros(b, np.int64)
        physical = np.zeros(b, bool)
        part_of = np.searchsorted(self.offsets, indices, side="right") - 1
        for p, part in enumerate(self.parts):
            sel = np.nonzero(part_of == p)[0]
            if not len(sel):
                continue
            local = indices[sel] - self.offsets[p]
            order = np.argsort(local)
            uniq, inverse = np.unique(local[order], return_inverse=True)
            arrays = part["arrays"]
            try:
                got = {k: np.asarray(arrays[k][uniq])[inverse] for k in arrays}
            except (OSError, KeyError) as exc:
                raise DatasetError(f"cannot read scenes from {part['path']}: {exc}") from None
            rows = sel[order]
            k = got["truth"].shape[1]
            blend[rows] = got["blend"]
            truth[rows, :k] = got["truth"]
            centers[rows, :k] = got["centers"]
            n_src[rows] = np.minimum(got["n_sources"], k)
            physical[rows] = part["protocol"] == "physical"
        return {"blend": torch.from_numpy(blend), "truth": torch.from_numpy(truth),
                "centers": torch.from_numpy(centers), "n_sources": torch.from_numpy(n_src),
                "physical": torch.from_numpy(physical)}


def load_scenes(data, split="train", *, max_scenes=None):
    """Read scenes of a training-set split into model space (for inspection and tests).

    Parameters
    ----------
    data : str, path or list of them
        Training-set HDF5 file(s).
    split : str, optional
        ``'train'``, ``'validation'`` or ``'test'``.
    max_scenes : int, optional
        Read at most this many scenes.

    Returns
    -------
    dict of `torch.Tensor`
        ``blend (N, C, H, W)``, ``truth (N, K, C, H, W)``, ``centers (N, K, 2)``,
        ``n_sources (N,)``, ``physical (N,)`` with physical scenes stretched
        to model space.

    Raises
    ------
    DatasetError
        If a file is missing, not HDF5, or lacks the split or its arrays.
    """
    scenes = _SceneSet(data, split, max_scenes=max_scenes)
    try:
        batch = scenes.batch(np.arange(len(scenes)))
    finally:
        scenes.close()
    return _to_model_space(batch)


def _to_model_space(batch):
    """Stretch the physical scenes of a batch in place: ``stretch(x / robust_peak(blend))``."""
    phys = batch["physical"]
    if bool(phys.any()):
        blend = batch["blend"][phys]
        scale = robust_peak(blend)
        batch["blend"][phys] = stretch(blend / scale[:, None, None, None])
        batch["truth"][phys] = stretch(batch["truth"][phys] / scale[:, None, None, None, None])
    return batch


def _augment(batch, generator):
    """Random flips/transposes per scene, with the centres moved accordingly."""
    blend, truth, centers = batch["blend"], batch["truth"], batch["centers"]
    h, w = blend.shape[-2:]
    flags = torch.randint(0, 2, (blend.shape[0], 3), generator=generator)
    for i in range(blend.shape[0]):
        transpose, flip_x, flip_y = (bool(v) for v in flags[i])
        b, t, c = blend[i], truth[i], centers[i].clone()
        if transpose and h == w:
            b, t = b.transpose(-1, -2), t.transpose(-1, -2)
            c = c.flip(-1)
        if flip_x:
            b, t = b.flip(-1), t.flip(-1)
            c[:, 0] = (w - 1) - c[:, 0]
        if flip_y:
            b, t = b.flip(-2), t.flip(-2)
            c[:, 1] = (h - 1) - c[:, 1]
        blend[i], truth[i], centers[i] = b.clone(), t.clone(), c
    return batch


def _galaxies(batch, device, sigma):
    """Flatten a batch of scenes to one item per galaxy: blend, heatmap, truth, physical."""
    n = batch["n_sources"]
    k_max = batch["truth"].shape[1]
    mask = torch.arange(k_max)[None, :] < n[:, None]
    scene_idx, k_idx = torch.nonzero(mask, as_tuple=True)
    blend = batch["blend"][scene_idx].to(device)
    truth = batch["truth"][scene_idx, k_idx].to(device)
    centers = batch["centers"][scene_idx, k_idx].to(device)
    heat = make_heatmap(centers, blend.shape[-2:], sigma=sigma, dtype=blend.dtype)
    return {"blend": blend, "truth": truth, "heat": heat, "centers": centers,
            "physical": batch["physical"][scene_idx].to(device), "scene": scene_idx}


def _center_targets(batch, device, sigma):
    n = batch["n_sources"]
    b, k_max = batch["centers"].shape[:2]
    h, w = batch["blend"].shape[-2:]
    heat = make_heatmap(batch["centers"].reshape(-1, 2), (h, w), sigma=sigma)
    heat = heat.reshape(b, k_max, h, w)
    mask = (torch.arange(k_max)[None, :] < n[:, None]).to(heat.dtype)
    return (heat * mask[:, :, None, None]).amax(dim=1, keepdim=True).to(device)


# ------------------------------------------------------------------------ losses
def _scaled_l1(out, truth, eps):
    """Per galaxy mean |out - truth| / (mean |truth| + eps), averaged."""
    num = (out - truth).abs().flatten(1).mean(1)
    den = truth.abs().flatten(1).mean(1) + eps
    return (num / den).mean()


def _flux_loss(out, truth, physical):
    """Per-galaxy relative error of the linear flux, physical scenes only."""
    if not bool(physical.any()):
        return out.new_zeros(())
    lin_out = _unstretch(out[physical].float()).flatten(1).sum(1)
    lin_true = _unstretch(truth[physical].float())
    scale = lin_true.abs().flatten(1).sum(1) + 1e-3
    return ((lin_out - lin_true.flatten(1).sum(1)).abs() / scale).mean()


# -------------------------------------------------------------------- rng states
def _rng_state():
    py = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global state
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [str(np_state[0]), [int(v) for v in np_state[1]], int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [int(py[0]), [int(v) for v in py[1]],
                   None if py[2] is None else float(py[2])],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    legacy = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    np.random.set_state(legacy)  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _epoch_generator(seed, epoch, rank, salt):
    state = np.random.SeedSequence([int(seed), int(epoch), int(rank), salt]).generate_state(2)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


# ------------------------------------------------------------------- distributed
def _init_distributed(device):
    """Set up torch.distributed from RANK / WORLD_SIZE / LOCAL_RANK (torchrun)."""
    import torch.distributed as dist

    if not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return 0, 1, device, False
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if world <= 1:
        return 0, 1, device, False
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK {local} has no GPU: only "
                              f"{torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                init_method="env://", world_size=world, rank=rank)
        created = True
    else:
        created = False
    return rank, world, device, created


def _ddp(module, device, world):
    if world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def _all_reduce_mean(values, device, world):
    if world <= 1:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


# ---------------------------------------------------------------------- training
def _write_text(path, text):
    from .io import atomic_write

    with atomic_write(path, overwrite=True) as tmp:
        Path(tmp).write_text(text)


def _write_history(path, history):
    keys = list(_HISTORY_KEYS) + sorted({k for row in history for k in row} - set(_HISTORY_KEYS))
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in keys})
    _write_text(path, buf.getvalue())


def _prepare_run(data, out, *, config, overrides, resume):
    """Work out the config and the checkpoint to resume from."""
    out = Path(out)
    last = out / "checkpoint_last.pt"
    if isinstance(config, TrainConfig):
        base = config.to_dict()
    elif isinstance(config, dict):
        base = dict(config)
    elif config is None:
        base = {}
    else:
        base = _read_config_file(config)
    payload = None
    if resume:
        if not last.exists():
            raise CheckpointError(f"cannot resume: {last} does not exist")
        payload = load_checkpoint(last)
        if payload.get("format") != CHECKPOINT_FORMAT or "train_config" not in payload:
            raise CheckpointError(f"checkpoint {last} is not an astrodeblend training checkpoint")
        settings = _merge_config(payload["train_config"], base)
    else:
        if last.exists():
            raise OutputExistsError(f"run folder {out} already holds {last.name}; use "
                                    "resume=True (--resume) to continue it or choose another out")
        settings = _merge_config(TrainConfig().to_dict(), base)
    settings = _merge_config(settings, {k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(settings), payload


def train(data, out, *, config=None, epochs=None, batch_size=None, lr=None, device="auto",
          seed=None, resume=False, progress=True):
    """Train the deblending GAN (and detector) on training-set files.

    Launched normally it trains on one device; launched by ``torchrun
    --nproc_per_node N`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) it trains
    with DistributedDataParallel (nccl on CUDA, gloo on the CPU) and only
    rank 0 writes files.

    Parameters
    ----------
    data : str, path or list of them
        HDF5 training-set file(s) from ``astrodeblend make-dataset``; files
        of different protocols may be mixed if their scenes have the same
        bands and size.
    out : str or path
        Run folder (created).  It must not hold a checkpoint unless
        ``resume``.
    config : `TrainConfig`, dict or path of a JSON file, optional
        Settings; keys not given keep their defaults (or, when resuming,
        the values of the run).
    epochs, batch_size, lr, seed : optional
        Override the config (``epochs`` may extend a resumed run).
    device : str, optional
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    resume : bool, optional
        Continue from ``out/checkpoint_last.pt`` exactly where it stopped.
    progress : bool, optional
        Show a progress bar per epoch.

    Returns
    -------
    TrainResult

    Raises
    ------
    DatasetError
        If a data file is missing, not HDF5 or malformed, or a split is
        empty.
    DeviceError
        If CUDA is requested but unavailable.
    CheckpointError
        If resuming fails: no checkpoint, or one of another architecture.
    OutputExistsError
        If ``out`` already holds a run and ``resume`` is False.

    Examples
    --------
    >>> train("missing.h5", "runs/x")  # doctest: +SKIP
    """
    dev = resolve_device(device)
    rank, world, dev, created_group = _init_distributed(dev)
    try:
        return _train(data, out, config=config, device=dev, rank=rank, world=world,
                      resume=resume, progress=progress,
                      overrides={"epochs": epochs, "batch_size": batch_size, "lr": lr,
                                 "seed": seed})
    finally:
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(data, out, *, config, device, rank, world, resume, progress, overrides):
    from torch.utils.data import DistributedSampler

    from .utils import progress as progress_bar

    out = Path(out)
    cfg, payload = _prepare_run(data, out, config=config, overrides=overrides, resume=resume)
    main = rank == 0
    if main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from .errors import WriteError

            raise WriteError(f"cannot create run folder {out}: {exc.strerror or exc}") from None
    train_set = _SceneSet(data, "train", max_memory_gb=cfg.max_memory_gb)
    val_set = _SceneSet(data, "validation", max_scenes=cfg.val_max_scenes)
    try:
        if len(train_set) == 0:
            raise DatasetError(f"the 'train' split of {', '.join(map(str, train_set.paths))} "
                               "is empty")
        mcfg = ModelConfig.from_dict(cfg.model)
        if train_set.shape[0] != mcfg.n_bands:
            if payload is not None or mcfg.n_bands != ModelConfig().n_bands:
                raise DatasetError(f"the data have {train_set.shape[0]} bands but the model "
                                   f"expects {mcfg.n_bands}")
            mcfg.n_bands = train_set.shape[0]   # a new run adopts the bands of the data
        mcfg.image_size = train_set.shape[1]
        cfg.model = mcfg.to_dict()

        torch.manual_seed(cfg.seed)
        models = {k: m.to(device) for k, m in build_models(mcfg).items()}
        params = {"generator": ["generator"], "discriminator": ["discriminator"],
                  "detector": ["detector"]}
        if mcfg.with_sampler:
            params.update(sample_generator=["sample_generator"],
                          sample_discriminator=["sample_discriminator"])
        optims = {name: torch.optim.Adam([p for m in mods for p in models[m].parameters()],
                                         lr=cfg.lr, betas=tuple(cfg.betas))
                  for name, mods in params.items()}
        amp_dtype = None
        if device.type == "cuda" and cfg.amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)

        start_epoch, step, history, best_psnr, best_epoch = 0, 0, [], -math.inf, None
        where = out / "checkpoint_last.pt"
        if payload is not None:
            stored = payload.get("models", {})
            for name, module in models.items():
                if name not in stored:
                    raise CheckpointError(f"checkpoint {where} does not match the model: it has "
                                          f"no {name} weights")
                load_state(module, stored[name], where=where, name=name)
            for name, opt in optims.items():
                try:
                    opt.load_state_dict(payload["optimizers"][name])
                except (KeyError, ValueError, RuntimeError) as exc:
                    raise CheckpointError(f"checkpoint {where} does not match the model: "
                                          f"optimiser {name}: {exc}") from None
            if payload.get("scaler"):
                scaler.load_state_dict(payload["scaler"])
            start_epoch = int(payload["epoch"])
            step = int(payload.get("step", 0))
            history = list(payload.get("history", []))
            best_psnr = float(payload.get("best_psnr", -math.inf))
            best_epoch = payload.get("best_epoch")
            _set_rng_state(payload["rng"])

        if main:
            _write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        wrapped = {k: _ddp(m, device, world) for k, m in models.items()}
        sampler = DistributedSampler(range(len(train_set)), num_replicas=world, rank=rank,
                                     shuffle=True, seed=cfg.seed, drop_last=False)
        sigma = mcfg.heatmap_sigma
        bce = torch.nn.functional.binary_cross_entropy_with_logits

        def autocast():
            return torch.autocast(device_type=device.type, dtype=amp_dtype,
                                  enabled=amp_dtype is not None)

        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            lr = cfg.lr_at(epoch)
            for opt in optims.values():
                for group in opt.param_groups:
                    group["lr"] = lr
            w_adv = cfg.adv_weight(epoch)
            sampler.set_epoch(epoch)
            order = list(sampler)
            batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            aug_gen = _epoch_generator(cfg.seed, epoch, rank, 1)
            noise_gen = _epoch_generator(cfg.seed, epoch, rank, 2)
            sums = {"loss_g_l1": 0.0, "loss_g_adv": 0.0, "loss_g_flux": 0.0, "loss_d": 0.0,
                    "loss_det": 0.0, "loss_sg": 0.0, "loss_sd": 0.0}
            for m in models.values():
                m.train()
            bar = progress_bar(batches, enable=progress and main,
                               desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
            for idx in bar:
                batch = _to_model_space(train_set.batch(idx))
                if cfg.augment:
                    batch = _augment(batch, aug_gen)
                gal = _galaxies(batch, device, sigma)
                if not cfg.sampler_only:
                    with autocast():
                        fake = wrapped["generator"](gal["blend"], gal["heat"])
                    if w_adv > 0:
                        optims["discriminator"].zero_grad(set_to_none=True)
                        with autocast():
                            logits = wrapped["discriminator"](
                                torch.cat([gal["blend"], gal["blend"]]),
                                torch.cat([gal["heat"], gal["heat"]]),
                                torch.cat([gal["truth"], fake.detach()]))
                            n_real = gal["blend"].shape[0]
                            target = torch.cat([torch.full_like(logits[:n_real], cfg.real_label),
                                                torch.zeros_like(logits[n_real:])])
                            loss_d = bce(logits.float(), target.float())
                        scaler.scale(loss_d).backward()
                        scaler.step(optims["discriminator"])
                        sums["loss_d"] += float(loss_d.detach())
                    optims["generator"].zero_grad(set_to_none=True)
                    with autocast():
                        loss_l1 = _scaled_l1(fake.float(), gal["truth"], cfg.l1_eps)
                        loss_flux = _flux_loss(fake, gal["truth"], gal["physical"])
                        loss_g = cfg.w_l1 * loss_l1 + cfg.w_flux * loss_flux
                        if w_adv > 0:
                            adv_logits = wrapped["discriminator"](gal["blend"], gal["heat"], fake)
                            loss_adv = bce(adv_logits.float(), torch.ones_like(adv_logits.float()))
                            loss_g = loss_g + w_adv * loss_adv
                            sums["loss_g_adv"] += float(loss_adv.detach())
                    scaler.scale(loss_g).backward()
                    scaler.step(optims["generator"])
                    sums["loss_g_l1"] += float(loss_l1.detach())
                    sums["loss_g_flux"] += float(loss_flux.detach())
                    if cfg.train_detector:
                        optims["detector"].zero_grad(set_to_none=True)
                        target = _center_targets(batch, device, sigma)
                        with autocast():
                            det_logits = wrapped["detector"](batch["blend"].to(device))
                            # centre pixels are rare: weight them up so that the
                            # heatmap's peaks rise above the detection threshold
                            loss_det = cfg.w_det * bce(det_logits.float(), target,
                                                       weight=1 + cfg.det_pos_weight * target)
                        scaler.scale(loss_det).backward()
                        scaler.step(optims["detector"])
                        sums["loss_det"] += float(loss_det.detach())
                if mcfg.with_sampler and (cfg.train_sampler or cfg.sampler_only):
                    lsg, lsd = _sampler_step(wrapped, optims, gal["truth"], mcfg, noise_gen,
                                             device, scaler, autocast, cfg.real_label)
                    sums["loss_sg"] += lsg
                    sums["loss_sd"] += lsd
                scaler.update()
                step += 1
                if hasattr(bar, "set_postfix") and main and not cfg.sampler_only:
                    bar.set_postfix(l1=f"{float(loss_l1.detach()):.3f}")
            n_batches = max(1, len(batches))
            means = _all_reduce_mean({k: v / n_batches for k, v in sums.items()}, device, world)
            elapsed = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "step": step, "lr": lr, "w_adv": w_adv, **means,
                   "scenes_per_s": len(order) * world / elapsed if elapsed > 0 else math.nan}
            if main:
                row.update(_validate(models, val_set, device, sigma, cfg))
                row["time_s"] = time.perf_counter() - t0
                history.append(row)
                psnr = row.get("val_psnr", math.nan)
                is_best = math.isfinite(psnr) and psnr > best_psnr
                if is_best:
                    best_psnr, best_epoch = psnr, epoch + 1
                _write_epoch_outputs(out, cfg, models, val_set, device, sigma, history, epoch)
                ck = {
                    "format": CHECKPOINT_FORMAT, "version": 1,
                    "model_config": mcfg.to_dict(), "train_config": cfg.to_dict(),
                    "models": {k: m.state_dict() for k, m in models.items()},
                    "optimizers": {k: o.state_dict() for k, o in optims.items()},
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "epoch": epoch + 1, "step": step, "history": history,
                    "best_psnr": best_psnr, "best_epoch": best_epoch, "rng": _rng_state(),
                    "generator_sha256": weights_hash(models["generator"].state_dict()),
                }
                save_checkpoint(out / "checkpoint_last.pt", ck)
                _write_text(out / "checkpoint_last.sha256",
                            f"{ck['generator_sha256']}  generator\n")
                if is_best:
                    save_checkpoint(out / "checkpoint_best.pt", ck)
            if world > 1:
                import torch.distributed as dist

                dist.barrier()
    finally:
        train_set.close()
        val_set.close()
    best_path = out / "checkpoint_best.pt"
    return TrainResult(run_dir=out, history=history, best_epoch=best_epoch,
                       best_psnr=best_psnr if math.isfinite(best_psnr) else math.nan,
                       checkpoint=best_path if best_path.exists() else out / "checkpoint_last.pt",
                       last_checkpoint=out / "checkpoint_last.pt",
                       generator_sha256=weights_hash(models["generator"].state_dict()))


def _sampler_step(wrapped, optims, truths, mcfg, generator, device, scaler, autocast,
                  real_label):
    """One step of the unconditional GAN on isolated truth galaxies."""
    size = mcfg.sampler_size
    real = truths.float().clamp(0, 1)
    if real.shape[-1] != size or real.shape[-2] != size:
        real = F.interpolate(real, size=(size, size), mode="area")
    z = torch.randn(real.shape[0], mcfg.latent_dim, generator=generator).to(device)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    with autocast():
        fake = wrapped["sample_generator"](z)
    optims["sample_discriminator"].zero_grad(set_to_none=True)
    with autocast():
        logits = wrapped["sample_discriminator"](torch.cat([real, fake.detach()])).float()
        n = real.shape[0]
        target = torch.cat([torch.full_like(logits[:n], real_label), torch.zeros_like(logits[n:])])
        loss_d = bce(logits, target)
    scaler.scale(loss_d).backward()
    scaler.step(optims["sample_discriminator"])
    optims["sample_generator"].zero_grad(set_to_none=True)
    with autocast():
        logits = wrapped["sample_discriminator"](fake).float()
        loss_g = bce(logits, torch.ones_like(logits))
    scaler.scale(loss_g).backward()
    scaler.step(optims["sample_generator"])
    return float(loss_g.detach()), float(loss_d.detach())


@torch.no_grad()
def _validate(models, val_set, device, sigma, cfg, *, batch_size=32, radius=3.0):
    """L1, PSNR and SSIM of the generator and the detector's recall on the validation split."""
    from skimage.metrics import structural_similarity

    n = min(len(val_set), cfg.val_max_scenes)
    if n == 0 or cfg.sampler_only:
        return {}
    gen, det = models["generator"], models["detector"]
    gen.eval()
    det.eval()
    l1, psnr, psnr_blend, ssim = [], [], [], []
    side = min(val_set.shape[1:])
    win = 7 if side >= 7 else max(1, side - 1 + side % 2)
    found = total = 0
    for start in range(0, n, batch_size):
        batch = _to_model_space(val_set.batch(np.arange(start, min(n, start + batch_size))))
        gal = _galaxies(batch, device, sigma)
        out = gen(gal["blend"], gal["heat"]).float()
        truth = gal["truth"].float()
        l1.extend((out - truth).abs().flatten(1).mean(1).tolist())
        for pred, store in ((out, psnr), (gal["blend"].float(), psnr_blend)):
            mse = (pred.clamp(0, 1) - truth.clamp(0, 1)).pow(2).flatten(1).mean(1)
            store.extend((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).tolist())
        o = out.clamp(0, 1).cpu().numpy()
        t = truth.clamp(0, 1).cpu().numpy()
        for a, b in zip(o, t, strict=True):
            ssim.append(structural_similarity(a, b, channel_axis=0, data_range=1.0,
                                              win_size=win))
        if cfg.train_detector:
            peaks = find_peaks(det(batch["blend"].to(device)), min_distance=2)
            for i, p in enumerate(peaks):
                true = batch["centers"][i, : int(batch["n_sources"][i])]
                total += len(true)
                if len(p) and len(true):
                    d = torch.cdist(true.float(), p.float().cpu())
                    found += int((d.min(dim=1).values <= radius).sum())
    gen.train()
    det.train()
    row = {"val_l1": float(np.mean(l1)), "val_psnr": float(np.mean(psnr)),
           "val_ssim": float(np.mean(ssim)), "val_psnr_blend": float(np.mean(psnr_blend))}
    if cfg.train_detector and total:
        row["det_recall"] = found / total
    return row


@torch.no_grad()
def _write_epoch_outputs(out, cfg, models, val_set, device, sigma, history, epoch):
    from .plotting import plot_sample_grid, plot_training_history

    _write_history(out / "history.csv", history)
    plot_training_history(history, out / "loss.png", overwrite=True)
    if (cfg.sample_every and (epoch + 1) % cfg.sample_every == 0 and len(val_set)
            and not cfg.sampler_only):
        n = min(cfg.n_sample_scenes, len(val_set))
        batch = _to_model_space(val_set.batch(np.arange(n)))
        gal = _galaxies(batch, device, sigma)
        gen = models["generator"]
        gen.eval()
        output = gen(gal["blend"], gal["heat"]).float().cpu().numpy()
        gen.train()
        plot_sample_grid(gal["blend"].cpu().numpy(), output, gal["truth"].cpu().numpy(),
                         out / f"samples_epoch{epoch + 1:03d}.png",
                         title=f"epoch {epoch + 1}", overwrite=True)


# --------------------------------------------------------------------------- CLI
def train_from_cli(args):
    """Run ``astrodeblend train`` from parsed arguments.

    Parameters
    ----------
    args : `argparse.Namespace`
        With ``data`` (one path or a list), ``out``, ``epochs``,
        ``batch_size``, ``lr``, ``device``, ``seed``, ``config``, ``resume``
        and ``no_progress``.

    Returns
    -------
    int
        Exit status 0.
    """
    result = train(args.data, args.out, config=args.config, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, device=args.device,
                   seed=args.seed, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result.history[-1] if result.history else {}
        psnr = last.get("val_psnr", math.nan)
        print(f"trained {len(result.history)} epoch(s) in {result.run_dir}: "
              f"val PSNR {psnr:.2f} dB (best {result.best_psnr:.2f} dB at epoch "
              f"{result.best_epoch}); checkpoint {result.checkpoint}")
    return 0


def sample(n, *, checkpoint=None, seed=0, device="auto"):
    """Draw galaxy images from the unconditional generator of a checkpoint.

    Parameters
    ----------
    n : int
        Number of images.
    checkpoint : str or path, optional
        Checkpoint with a sample generator (default: the shipped model).
    seed : int, optional
        Seed of the latent noise.
    device : str, optional
        ``'auto'``, ``'cpu'`` or ``'cuda'``.

    Returns
    -------
    `numpy.ndarray`
        ``(n, C, S, S)`` float32 images in model space ([0, 1]).

    Raises
    ------
    CheckpointError
        If the checkpoint is missing or has no sample generator.

    Examples
    --------
    >>> sample(4, checkpoint="no-such.pt")
    Traceback (most recent call last):
    ...
    astrodeblend.errors.CheckpointError: checkpoint no-such.pt does not exist
    """
    if int(n) < 1:
        raise InvalidInputError(f"n must be a positive integer, not {n!r}")
    path = Path(checkpoint) if checkpoint is not None else default_model_path()
    dev = resolve_device(device)
    payload = load_checkpoint(path)
    if "sample_generator" not in payload.get("models", {}):
        raise CheckpointError(f"checkpoint {path} has no unconditional sample generator "
                              "(train one with TrainConfig(train_sampler=True))")
    models, mcfg = load_models(payload, device=dev, names=["sample_generator"])
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(int(n), mcfg.latent_dim, generator=g).to(dev)
    with torch.no_grad():
        return models["sample_generator"](z).float().cpu().numpy()


def sample_from_cli(args):
    """Run ``astrodeblend sample``: write a PNG grid or a FITS cube of samples.

    Parameters
    ----------
    args : `argparse.Namespace`
        With ``model``, ``n``, ``seed``, ``out``, ``device``, ``overwrite``.

    Returns
    -------
    int
        Exit status 0.
    """
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".fits", ".fit", ".fts"):
        raise InvalidInputError(f"--out {out} must end in .png or .fits")
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out} exists (use --overwrite to replace it)")
    images = sample(args.n, checkpoint=args.model, seed=args.seed, device=args.device)
    if suffix == ".png":
        from .plotting import plot_image_grid

        plot_image_grid(images, out, overwrite=args.overwrite)
    else:
        from astropy.io import fits

        from .io import atomic_write

        hdu = fits.PrimaryHDU(images)
        hdu.header["ADBSEED"] = (int(args.seed), "seed of the latent noise")
        hdu.header["ADBDISP"] = (True, "values are display-stretched (model space)")
        hdu.header.add_history(f"astrodeblend sample --n {args.n} --seed {args.seed}")
        with atomic_write(out, overwrite=args.overwrite) as tmp:
            hdu.writeto(tmp)
    print(f"wrote {len(images)} samples to {out}")
    return 0
