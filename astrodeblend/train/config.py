"""The settings of a training run: `TrainConfig`, config files, resumed runs."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .._checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from ..errors import CheckpointError, InvalidInputError, OutputExistsError
from ..models import ModelConfig

__all__ = ["TrainConfig", "TrainResult"]


#: ``init_narrow`` keys and the network each narrows
NARROWABLE = {"generator_channels": "generator", "detector_channels": "detector"}


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
        ``lr * lr_min_factor`` at the end of the schedule
        (``schedule_epochs``), and keep it there after.
    lr_min_factor : float
        Final learning rate as a fraction of ``lr``.
    seed : int
        Seed of the weights, the shuffling and the augmentation.
    w_l1, w_adv, w_flux, w_det : float
        Loss weights (content, adversarial, flux, detector).
    det_pos_weight : float
        Extra weight of the detector's BCE at the centres: pixel weights are
        ``1 + det_pos_weight * target``.
    det_size_sigma : float
        Width of each source's peak in the detector's target as a fraction
        of its size: the radius of a disc of the area where its noiseless
        light exceeds half its peak, the width kept between the model's
        ``heatmap_sigma`` and ``det_sigma_max`` (a large galaxy gets a broad
        peak, so that its structure does not pass for two centres); 0 (the
        default): every peak ``heatmap_sigma`` wide.
    det_sigma_max : float
        Widest peak of the detector's target with ``det_size_sigma``
        (pixels); two sources twice as far apart keep two peaks.
    det_ignore_secondary : float
        Radius (pixels) around the second objects of each source's truth
        (``astrodeblend.train.losses.secondary_peaks``: a Galaxy Zoo image's
        neighbours and field stars) where the detector's loss is left out;
        0 (the default): the target's zeros there count as everywhere.
    adv_warmup_epochs : int or None
        Epochs without adversarial loss (None: half of ``schedule_epochs``).
    adv_ramp_epochs : int or None
        Epochs of the linear ramp of the adversarial weight (None: a quarter
        of ``schedule_epochs``, at least 1).
    schedule_epochs : int or None
        Length of the schedule: the cosine of the learning rate and the
        default adversarial warm-up and ramp are laid out over this many
        epochs.  A new run fixes it to ``epochs`` at its start (None) and the
        checkpoints keep it, so resuming with another ``epochs`` does not
        reshape the schedule: epochs past it run at the final learning rate
        and the full adversarial weight.  ``train(..., reschedule=True)``
        (``--reschedule``) lays it out again over the new ``epochs``.
    l1_eps : float
        Added to each galaxy's mean brightness in ``L1_scaled``.
    real_label : float
        Target of real pairs for the discriminator (one-sided label
        smoothing; 1 switches it off).
    augment : bool
        Random flips and transposes (all 8 symmetries of the square) and
        random integer shifts (``shift_fraction``) of each scene, centres
        transformed consistently.
    shift_fraction : float
        Largest random shift of a scene, along each axis, as a fraction of
        the frame side (0.25: up to 20 px of an 80 px frame; 0: no shift),
        so that no position in the frame is special.  Sources whose centre
        leaves the frame are no longer targets; the vacated border is filled
        with the per-band median of the image's outer ring
        (``astrodeblend.train.batches.shift_scene``).
    train_detector : bool
        Train the centre detector.
    train_generator : bool
        Train the generator and its discriminator (False: the detector
        alone, for example to continue a run's detector while keeping its
        generator).
    discriminator_only : bool
        Train only the conditional discriminator, against the outputs of the
        frozen generator (generator, detector and sampler kept as they are,
        ``w_adv`` and its schedule not used): it calibrates a discriminator
        for a generator trained without one (``init_from``), so that
        adversarial fine-tuning starts from a judge that knows the
        generator's outputs.  Validation then also scores
        ``val_d_accuracy``.
    init_from : str or None
        A new run starts from the network weights of this checkpoint (a
        training checkpoint, a model written by ``tools/make_default_model.py
        export``, ``'default'`` for the shipped model or ``'default_full'``
        for its full checkpoint, with a discriminator) instead of random
        ones: fine-tuning.  The run adopts the checkpoint's network settings
        (``model``); networks the file lacks (a stripped model has no
        discriminator) start at random; the optimisers, the schedule and the
        epoch count start afresh; the galaxies the checkpoint was trained on
        join the run's training galaxies, so ``evaluate`` still refuses them.
        Ignored when a run is resumed (its own checkpoint holds the weights).
    init_narrow : dict or None
        With ``init_from``: networks to start narrower than the checkpoint's,
        ``{"generator_channels": 12}`` and/or ``{"detector_channels": n}``
        (first-level channels, at most the checkpoint's): the network
        starts from the checkpoint's filters of largest weight
        (`astrodeblend.models.narrowed`) and trains on from there, a faster
        network that keeps much of what the wider one learned.
    train_sampler : bool
        Also train the unconditional sample GAN.
    sampler_only : bool
        Train only the unconditional sample GAN (on the isolated truths).
    val_max_scenes : int
        Validation scenes scored per epoch and per training file (the first
        ones of each file's validation split); the history gets the scores
        of each protocol and their mean.
    sample_every : int
        Write ``samples_epochNNN.png`` every this many epochs (0: never).
    n_sample_scenes : int
        Validation scenes shown in the sample grids.
    amp : bool
        Mixed precision on CUDA (bf16 where supported, else fp16 with a
        gradient scaler); ignored on the CPU.
    max_memory_gb : float
        Training files smaller than this are read into memory; larger ones
        are read scene by scene by the loader's workers.
    num_workers : int or None
        Worker processes of the `torch.utils.data.DataLoader` that reads
        the training scenes (None: 2 when a file is read from disk, 0 when
        every file is in memory).
    model : dict
        `~astrodeblend.models.ModelConfig` settings.

    Examples
    --------
    >>> cfg = TrainConfig(epochs=4)
    >>> cfg.warmup_epochs, cfg.adv_weight(1), cfg.adv_weight(2), cfg.adv_weight(3)
    (2, 0.0, 0.01, 0.01)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True

    A run of 4 epochs extended to 6 keeps its schedule:

    >>> longer = TrainConfig(epochs=6, schedule_epochs=4)
    >>> longer.warmup_epochs, longer.lr_at(5) == longer.lr_at(4) == cfg.lr * cfg.lr_min_factor
    (2, True)
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
    det_size_sigma: float = 0.0
    det_sigma_max: float = 3.0
    det_ignore_secondary: float = 0.0
    adv_warmup_epochs: int | None = None
    adv_ramp_epochs: int | None = None
    schedule_epochs: int | None = None
    l1_eps: float = 1e-2
    real_label: float = 0.9
    augment: bool = True
    shift_fraction: float = 0.25
    train_detector: bool = True
    train_generator: bool = True
    discriminator_only: bool = False
    init_from: str | None = None
    init_narrow: dict | None = None
    train_sampler: bool = False
    sampler_only: bool = False
    val_max_scenes: int = 128
    sample_every: int = 1
    n_sample_scenes: int = 4
    amp: bool = True
    max_memory_gb: float = 4.0
    num_workers: int | None = None
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
        if self.schedule_epochs is not None and (
                isinstance(self.schedule_epochs, bool) or int(self.schedule_epochs) < 1
                or int(self.schedule_epochs) != self.schedule_epochs):
            raise InvalidInputError(f"schedule_epochs must be a positive integer or None, "
                                    f"not {self.schedule_epochs!r}")
        if not 0 <= float(self.shift_fraction) < 0.5:
            raise InvalidInputError(f"shift_fraction must be in [0, 0.5), not "
                                    f"{self.shift_fraction!r}")
        if self.init_from is not None and not isinstance(self.init_from, str):
            self.init_from = str(self.init_from)
        if self.init_narrow is not None:
            narrow = self.init_narrow
            valid = (isinstance(narrow, dict) and set(narrow) <= set(NARROWABLE)
                     and all(type(v) is int and v >= 1 for v in narrow.values()))
            if not valid:
                raise InvalidInputError(
                    f"init_narrow must map {' and/or '.join(NARROWABLE)} to a positive number "
                    f"of channels, not {self.init_narrow!r}")
            self.init_narrow = dict(self.init_narrow)
        if self.discriminator_only and self.sampler_only:
            raise InvalidInputError("discriminator_only and sampler_only exclude each other")
        if float(self.w_adv) < 0:
            raise InvalidInputError(f"w_adv must be >= 0, not {self.w_adv!r}")
        if not float(self.det_size_sigma) >= 0:
            raise InvalidInputError(f"det_size_sigma must be >= 0, not {self.det_size_sigma!r}")
        if not float(self.det_ignore_secondary) >= 0:
            raise InvalidInputError(f"det_ignore_secondary must be >= 0, not "
                                    f"{self.det_ignore_secondary!r}")
        if not float(self.det_sigma_max) > 0:
            raise InvalidInputError(f"det_sigma_max must be positive, not "
                                    f"{self.det_sigma_max!r}")
        self.betas = [float(b) for b in self.betas]

    @property
    def schedule_length(self):
        """Epochs the schedule is laid out over: ``schedule_epochs``, else ``epochs``."""
        return int(self.schedule_epochs if self.schedule_epochs is not None else self.epochs)

    @property
    def warmup_epochs(self):
        """Epochs without adversarial loss."""
        if self.adv_warmup_epochs is not None:
            return int(self.adv_warmup_epochs)
        return self.schedule_length // 2

    @property
    def ramp_epochs(self):
        """Epochs of the ramp of the adversarial weight."""
        if self.adv_ramp_epochs is not None:
            return max(1, int(self.adv_ramp_epochs))
        return max(1, self.schedule_length // 4)

    def adv_weight(self, epoch):
        """Adversarial weight of 0-based ``epoch`` (0 during the warm-up, then a ramp)."""
        warm = self.warmup_epochs
        if epoch < warm or self.w_adv <= 0:
            return 0.0
        return float(self.w_adv * min(1.0, (epoch - warm + 1) / self.ramp_epochs))

    def lr_at(self, epoch):
        """Learning rate of 0-based ``epoch`` (the final one after the schedule's end)."""
        length = self.schedule_length
        if not self.cosine_lr or length <= 1:
            return float(self.lr)
        low = self.lr * self.lr_min_factor
        t = min(epoch, length) / length
        return float(low + 0.5 * (self.lr - low) * (1 + math.cos(math.pi * t)))

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
        from ..models.config import check_settings

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
    config : `TrainConfig` or None
        The settings of the run (``schedule_epochs`` fixed).
    """

    run_dir: Path
    history: list
    best_epoch: int | None
    best_psnr: float
    checkpoint: Path
    last_checkpoint: Path
    generator_sha256: str
    config: TrainConfig | None = None


def prepare_run(out, *, config, overrides, resume, reschedule=False):
    """Return the `TrainConfig` of a run in ``out`` and the checkpoint to resume (or None).

    A new run fixes ``schedule_epochs`` to its ``epochs``; a resumed run
    keeps the schedule of its checkpoint (a checkpoint written before
    ``schedule_epochs`` existed was laid out over its own ``epochs``), unless
    ``reschedule`` lays it out over the new ``epochs``.
    """
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
        stored = dict(payload["train_config"])
        if stored.get("schedule_epochs") is None:   # older checkpoints: laid out over epochs
            stored["schedule_epochs"] = stored.get("epochs")
        settings = _merge_config(stored, base)
    else:
        if reschedule:
            raise InvalidInputError("reschedule applies to a resumed run only (a new run lays "
                                    "its schedule out over its own epochs)")
        if last.exists():
            raise OutputExistsError(f"run folder {out} already holds {last.name}; use "
                                    "resume=True (--resume) to continue it or choose another out")
        settings = _merge_config(TrainConfig().to_dict(), base)
    if resume and overrides.get("init_from") is not None:
        raise InvalidInputError("init_from applies to a new run only (a resumed run continues "
                                "from its own checkpoint)")
    settings = _merge_config(settings, {k: v for k, v in overrides.items() if v is not None})
    if reschedule or settings.get("schedule_epochs") is None:
        settings["schedule_epochs"] = settings.get("epochs", TrainConfig().epochs)
    return TrainConfig.from_dict(settings), payload
