"""The training loop: one step per network, epochs, validation, checkpoints, DDP and AMP.

`train` sets up ``torch.distributed`` when launched by ``torchrun`` and
runs a `_Trainer`; see `astrodeblend.train` for the losses, the schedule
and the run folder.
"""

from __future__ import annotations

import contextlib
import csv
import io as _stdio
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_state,
    make_split_record,
    merge_split_records,
    save_checkpoint,
    set_cuda_rng_states,
    weights_hash,
)
from ..errors import CheckpointError, DatasetError, DeviceError, InvalidInputError
from ..models import ModelConfig, build_models, find_peaks, narrowed
from ..utils import resolve_device
from .batches import TrainingScenes, augment, galaxies
from .config import NARROWABLE, TrainResult, prepare_run
from .losses import center_targets, flux_loss, scaled_l1, secondary_peaks

__all__ = ["train"]

_HISTORY_KEYS = ["epoch", "step", "lr", "w_adv", "loss_g_l1", "loss_g_adv", "loss_g_flux",
                 "loss_d", "loss_det", "loss_sg", "loss_sd", "val_l1", "val_psnr", "val_ssim",
                 "val_psnr_blend", "det_recall", "det_precision", "val_d_accuracy", "scenes_per_s",
                 "time_s"]
_LOSS_KEYS = ("loss_g_l1", "loss_g_adv", "loss_g_flux", "loss_d", "loss_det", "loss_sg",
              "loss_sd")
_bce = F.binary_cross_entropy_with_logits


def train(data, out, *, config=None, epochs=None, batch_size=None, lr=None, device="auto",
          seed=None, init_from=None, resume=False, reschedule=False, progress=True):
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
        Override the config (``epochs`` may extend or shorten a resumed
        run; its schedule stays as the run fixed it, see ``reschedule``).
    device : str, optional
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    init_from : str or path, optional
        Fine-tune: a new run starts from the networks of this checkpoint
        (``'default'``: the shipped model); see `TrainConfig.init_from`.
    resume : bool, optional
        Continue from ``out/checkpoint_last.pt`` exactly where it stopped.
    reschedule : bool, optional
        With ``resume``: lay the learning-rate cosine and the default
        adversarial warm-up and ramp out again over the new ``epochs``
        (``TrainConfig.schedule_epochs``); without it the schedule fixed at the
        start of the run is kept.
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
    InvalidInputError
        If ``reschedule`` is given without ``resume``, ``init_from`` with
        it, or a setting is invalid.
    OutputExistsError
        If ``out`` already holds a run and ``resume`` is False.

    Examples
    --------
    >>> train("missing.h5", "runs/x")  # doctest: +SKIP
    """
    dev = resolve_device(device)
    rank, world, dev, created_group = _init_distributed(dev)
    try:
        out = Path(out)
        cfg, payload = prepare_run(out, config=config, resume=resume, reschedule=reschedule,
                                   overrides={"epochs": epochs, "batch_size": batch_size,
                                              "lr": lr, "seed": seed,
                                              "init_from": init_from})
        if rank == 0:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                from ..errors import WriteError

                raise WriteError(f"cannot create run folder {out}: {exc.strerror or exc}") \
                    from None
        train_set = TrainingScenes(data, "train", max_memory_gb=cfg.max_memory_gb)
        val_set = TrainingScenes(data, "validation", max_per_file=cfg.val_max_scenes)
        try:
            trainer = _Trainer(cfg, train_set, device=dev, rank=rank, world=world,
                               payload=payload, out=out)
            result = trainer.run(val_set, progress=progress)
        finally:
            train_set.close()
            val_set.close()
        if created_group:
            import torch.distributed as dist

            # every rank done before any tears the group down (a rank of the
            # two-process CPU test once aborted at teardown under load)
            dist.barrier()
        return result
    finally:
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


class _Trainer:
    """The networks, optimisers and state of one run, and its steps."""

    def __init__(self, cfg, train_set, *, device, rank, world, payload, out):
        if len(train_set) == 0:
            raise DatasetError(f"the 'train' split of {', '.join(map(str, train_set.paths))} "
                               "is empty")
        self.cfg, self.train_set, self.device = cfg, train_set, device
        self.rank, self.world, self.out, self.main = rank, world, out, rank == 0
        init = _init_payload(cfg.init_from) if payload is None and cfg.init_from else None
        if cfg.init_narrow and payload is None and init is None:
            raise InvalidInputError("init_narrow narrows the networks of a checkpoint: give "
                                    "init_from too")
        if init is not None:
            # fine-tuning: the networks of the checkpoint, so its settings (narrowed)
            model = dict(init["model_config"])
            model["with_sampler"] = bool(model.get("with_sampler") or cfg.model["with_sampler"])
            model.update(cfg.init_narrow or {})
            cfg.model = ModelConfig.from_dict(model).to_dict()
        mcfg = ModelConfig.from_dict(cfg.model)
        n_bands, size = train_set.shape[0], train_set.shape[1]
        if n_bands != mcfg.n_bands:
            if payload is not None or mcfg.n_bands != ModelConfig().n_bands:
                raise DatasetError(f"the data have {n_bands} bands but the model "
                                   f"expects {mcfg.n_bands}")
            mcfg.n_bands = n_bands   # a new run adopts the bands of the data
        mcfg.image_size = size
        cfg.model = mcfg.to_dict()
        self.mcfg, self.sigma = mcfg, mcfg.heatmap_sigma

        torch.manual_seed(cfg.seed)
        self.models = {k: m.to(device) for k, m in build_models(mcfg).items()}
        groups = ["generator", "discriminator", "detector"]
        if mcfg.with_sampler:
            groups += ["sample_generator", "sample_discriminator"]
        self.optims = {name: torch.optim.Adam(self.models[name].parameters(), lr=cfg.lr,
                                              betas=tuple(cfg.betas)) for name in groups}
        self.amp_dtype = None
        if device.type == "cuda" and cfg.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.epoch, self.step, self.history = 0, 0, []
        self._stepped = False
        self.best_psnr, self.best_epoch = -math.inf, None
        if payload is not None:
            self._restore(payload, out / "checkpoint_last.pt")
        elif init is not None:
            narrow = {NARROWABLE[k]: v for k, v in (cfg.init_narrow or {}).items()}
            wide_models = build_models(init["model_config"]) if narrow else {}
            for name, state in init["models"].items():
                if name in narrow:
                    wide = wide_models[name]
                    load_state(wide, state, where=cfg.init_from, name=name)
                    state = narrowed(wide, narrow[name]).state_dict()
                if name in self.models:
                    load_state(self.models[name], state, where=cfg.init_from, name=name)
        # the galaxies of the training scenes (of every run segment, and of
        # the checkpoint a fine-tuning started from): evaluate refuses them
        self.split_record = None
        if self.main:
            earlier = payload if payload is not None else init
            self.split_record = merge_split_records(
                earlier.get("galaxy_split") if earlier is not None else None,
                _split_record(train_set))
        self.wrapped = {k: _ddp(m, device, world) for k, m in self.models.items()}

    def _restore(self, payload, where):
        stored = payload.get("models", {})
        for name, module in self.models.items():
            if name not in stored:
                raise CheckpointError(f"checkpoint {where} does not match the model: it has "
                                      f"no {name} weights")
            load_state(module, stored[name], where=where, name=name)
        for name, opt in self.optims.items():
            try:
                opt.load_state_dict(payload["optimizers"][name])
            except (KeyError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"checkpoint {where} does not match the model: "
                                      f"optimiser {name}: {exc}") from None
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.epoch = int(payload["epoch"])
        self.step = int(payload.get("step", 0))
        self.history = list(payload.get("history", []))
        self.best_psnr = float(payload.get("best_psnr", -math.inf))
        self.best_epoch = payload.get("best_epoch")
        _set_rng_state(payload["rng"])

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype,
                              enabled=self.amp_dtype is not None)

    # ------------------------------------------------------------------ run
    def run(self, val_set, *, progress):
        from torch.utils.data import DistributedSampler

        cfg, out = self.cfg, self.out
        if self.main:
            _write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        sampler = DistributedSampler(range(len(self.train_set)), num_replicas=self.world,
                                     rank=self.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=False)
        loader = self.train_set.loader(batch_size=cfg.batch_size, sampler=sampler,
                                       num_workers=cfg.num_workers,
                                       pin_memory=self.device.type == "cuda")
        for epoch in range(self.epoch, cfg.epochs):
            t0 = time.perf_counter()
            sampler.set_epoch(epoch)
            row = self._train_epoch(epoch, loader, progress=progress and self.main)
            elapsed = time.perf_counter() - t0
            row["scenes_per_s"] = len(sampler) * self.world / elapsed if elapsed > 0 else math.nan
            if self.main:
                row.update(_validate(self.models, val_set, self.device, self.sigma, cfg))
                row["time_s"] = time.perf_counter() - t0
                self._end_epoch(epoch, row, val_set)
            if self.world > 1:
                import torch.distributed as dist

                dist.barrier()
        best = out / "checkpoint_best.pt"
        return TrainResult(run_dir=out, history=self.history, best_epoch=self.best_epoch,
                           best_psnr=self.best_psnr if math.isfinite(self.best_psnr)
                           else math.nan,
                           checkpoint=best if best.exists() else out / "checkpoint_last.pt",
                           last_checkpoint=out / "checkpoint_last.pt",
                           generator_sha256=weights_hash(self.models["generator"].state_dict()),
                           config=cfg)

    def _train_epoch(self, epoch, loader, *, progress):
        from ..utils import progress as progress_bar

        cfg = self.cfg
        lr = cfg.lr_at(epoch)
        for opt in self.optims.values():
            for group in opt.param_groups:
                group["lr"] = lr
        # the adversarial term acts on the generator: none when only the discriminator learns
        w_adv = 0.0 if cfg.discriminator_only else cfg.adv_weight(epoch)
        h, w = self.train_set.shape[1:]
        max_shift = int(round(cfg.shift_fraction * min(h, w)))
        aug_gen = _epoch_generator(cfg.seed, epoch, self.rank, 1)
        noise_gen = _epoch_generator(cfg.seed, epoch, self.rank, 2)
        sums = dict.fromkeys(_LOSS_KEYS, 0.0)
        for m in self.models.values():
            m.train()
        if cfg.discriminator_only:
            self.models["generator"].eval()   # frozen: it runs as it deblends
        bar = progress_bar(loader, enable=progress, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           unit="batch")
        losses = {}
        for batch in bar:
            if cfg.augment:
                batch = augment(batch, aug_gen, max_shift=max_shift)
            gal = galaxies(batch, self.device, self.sigma)
            # a batch may hold no source at all (survey scenes of 0 sources): then no
            # generator step, on every rank at once (DDP all-reduces in lockstep)
            any_source = _on_all_ranks(gal["blend"].shape[0] > 0, self.device, self.world)
            if not cfg.sampler_only:
                losses = self._deblender_steps(batch, gal, w_adv, generator=any_source)
                for key, value in losses.items():
                    sums[key] += value
            if (self.mcfg.with_sampler and (cfg.train_sampler or cfg.sampler_only)
                    and any_source):
                loss_sg, loss_sd = self._sampler_step(gal["truth"], noise_gen)
                sums["loss_sg"] += loss_sg
                sums["loss_sd"] += loss_sd
            if self._stepped:      # a scaler with no step this batch must not update
                self.scaler.update()
                self._stepped = False
            self.step += 1
            if hasattr(bar, "set_postfix") and progress and "loss_g_l1" in losses:
                bar.set_postfix(l1=f"{losses['loss_g_l1']:.3f}")
        n_batches = max(1, len(loader))
        means = _all_reduce_mean({k: v / n_batches for k, v in sums.items()}, self.device,
                                 self.world)
        return {"epoch": epoch + 1, "step": self.step, "lr": lr, "w_adv": w_adv, **means}

    # ---------------------------------------------------------------- steps
    def _deblender_steps(self, batch, gal, w_adv, *, generator=True):
        """Discriminator, generator and detector steps on one batch; their losses.

        ``generator`` False (no source in the batch on some rank), or
        ``train_generator`` off: the detector step only.  ``discriminator_only``:
        the discriminator step alone, on the frozen generator's outputs.
        """
        cfg, losses = self.cfg, dict.fromkeys(("loss_g_adv", "loss_d", "loss_det", "loss_g_l1",
                                               "loss_g_flux"), 0.0)
        if cfg.discriminator_only:
            if generator:
                with torch.no_grad(), self.autocast():
                    fake = self.models["generator"](gal["blend"], gal["heat"])
                self._discriminator_step(gal, fake, losses)
            return losses
        if generator and cfg.train_generator:
            self._generator_steps(gal, w_adv, losses)
        if cfg.train_detector:
            self.optims["detector"].zero_grad(set_to_none=True)
            target = center_targets(batch, self.device, self.sigma,
                                    size_sigma=cfg.det_size_sigma, max_sigma=cfg.det_sigma_max)
            weight = 1 + cfg.det_pos_weight * target
            if cfg.det_ignore_secondary > 0:
                ignored = secondary_peaks(batch, cfg.det_ignore_secondary).to(self.device)
                weight = weight * (1 - ignored * (target < 0.05))
            with self.autocast():
                det_logits = self.wrapped["detector"](batch["blend"].to(self.device))
                # centre pixels are rare: weight them up so that the
                # heatmap's peaks rise above the detection threshold
                loss_det = cfg.w_det * _bce(det_logits.float(), target, weight=weight)
            self._backward_step(loss_det, "detector")
            losses["loss_det"] = float(loss_det.detach())
        return losses

    def _discriminator_step(self, gal, fake, losses):
        """One discriminator step: the truths of ``gal`` against ``fake`` (``losses`` updated)."""
        self.optims["discriminator"].zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.wrapped["discriminator"](
                torch.cat([gal["blend"], gal["blend"]]), torch.cat([gal["heat"], gal["heat"]]),
                torch.cat([gal["truth"], fake.detach()]))
            loss_d = _bce(logits.float(), _targets(logits, gal["blend"].shape[0],
                                                   self.cfg.real_label))
        self._backward_step(loss_d, "discriminator")
        losses["loss_d"] = float(loss_d.detach())

    def _generator_steps(self, gal, w_adv, losses):
        """Discriminator and generator steps on the sources of a batch (``losses`` updated)."""
        cfg = self.cfg
        with self.autocast():
            fake = self.wrapped["generator"](gal["blend"], gal["heat"])
        if w_adv > 0:
            self._discriminator_step(gal, fake, losses)
        self.optims["generator"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_l1 = scaled_l1(fake.float(), gal["truth"], cfg.l1_eps)
            loss_flux = flux_loss(fake, gal["truth"], gal["linear"])
            loss_g = cfg.w_l1 * loss_l1 + cfg.w_flux * loss_flux
            if w_adv > 0:
                # the discriminator only judges here: no gradients of its own, and no
                # DDP all-reduce (its weights are the same on every rank)
                with _frozen(self.models["discriminator"]) as disc:
                    adv_logits = disc(gal["blend"], gal["heat"], fake).float()
                loss_adv = _bce(adv_logits, torch.ones_like(adv_logits))
                loss_g = loss_g + w_adv * loss_adv
                losses["loss_g_adv"] = float(loss_adv.detach())
        self._backward_step(loss_g, "generator")
        losses["loss_g_l1"] = float(loss_l1.detach())
        losses["loss_g_flux"] = float(loss_flux.detach())

    def _sampler_step(self, truths, generator):
        """One step of the unconditional GAN on isolated truth galaxies; its two losses."""
        size, real_label = self.mcfg.sampler_size, self.cfg.real_label
        real = truths.float().clamp(0, 1)
        if real.shape[-1] != size or real.shape[-2] != size:
            real = F.interpolate(real, size=(size, size), mode="area")
        z = torch.randn(real.shape[0], self.mcfg.latent_dim, generator=generator).to(self.device)
        with self.autocast():
            fake = self.wrapped["sample_generator"](z)
        self.optims["sample_discriminator"].zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.wrapped["sample_discriminator"](torch.cat([real, fake.detach()])).float()
            loss_d = _bce(logits, _targets(logits, real.shape[0], real_label))
        self._backward_step(loss_d, "sample_discriminator")
        self.optims["sample_generator"].zero_grad(set_to_none=True)
        with self.autocast(), _frozen(self.models["sample_discriminator"]) as disc:
            logits = disc(fake).float()
            loss_g = _bce(logits, torch.ones_like(logits))
        self._backward_step(loss_g, "sample_generator")
        return float(loss_g.detach()), float(loss_d.detach())

    def _backward_step(self, loss, name):
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optims[name])
        self._stepped = True

    # ------------------------------------------------------------ end of epoch
    def _end_epoch(self, epoch, row, val_set):
        cfg, out, models = self.cfg, self.out, self.models
        self.history.append(row)
        psnr = row.get("val_psnr", math.nan)
        is_best = math.isfinite(psnr) and psnr > self.best_psnr
        if is_best:
            self.best_psnr, self.best_epoch = psnr, epoch + 1
        _write_epoch_outputs(out, cfg, models, val_set, self.device, self.sigma, self.history,
                             epoch)
        ck = {
            "format": CHECKPOINT_FORMAT, "version": 1,
            "model_config": self.mcfg.to_dict(), "train_config": cfg.to_dict(),
            "models": {k: m.state_dict() for k, m in models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optims.items()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": epoch + 1, "step": self.step, "history": self.history,
            "best_psnr": self.best_psnr, "best_epoch": self.best_epoch, "rng": _rng_state(),
            "generator_sha256": weights_hash(models["generator"].state_dict()),
            "galaxy_split": self.split_record,
        }
        save_checkpoint(out / "checkpoint_last.pt", ck)
        _write_text(out / "checkpoint_last.sha256", f"{ck['generator_sha256']}  generator\n")
        if is_best:
            save_checkpoint(out / "checkpoint_best.pt", ck)


def _targets(logits, n_real, real_label):
    """Discriminator targets: ``real_label`` for the first ``n_real`` rows, 0 for the rest."""
    return torch.cat([torch.full_like(logits[:n_real], real_label),
                      torch.zeros_like(logits[n_real:])]).float()


@contextlib.contextmanager
def _frozen(module):
    """Yield ``module`` with its parameters out of autograd (the other network's step)."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


# ------------------------------------------------------------------- validation
@torch.no_grad()
def _validate(models, val_set, device, sigma, cfg, *, batch_size=32, radius=3.0):
    """Return the validation scores of every file of ``val_set``, per protocol and overall.

    Per protocol ``p`` (files of one protocol pooled): ``val_l1_p``,
    ``val_psnr_p``, ``val_ssim_p``, ``val_psnr_blend_p`` (the generator on
    every listed source, in model space clipped to [0, 1]),
    ``val_det_recall_p`` (true centres with a detector peak within
    ``radius`` px), ``val_det_precision_p`` (peaks with a true centre
    within ``radius``; NaN when the detector found no peak) and
    ``val_det_single_p`` (scenes of one source answered by exactly one
    peak, where there are such scenes) and, when the run trains the
    discriminator (``w_adv > 0`` or ``discriminator_only``),
    ``val_d_accuracy_p``: the fraction of sources whose truth the
    discriminator scores above the generator's output (mean logit; 0.5: it
    cannot tell them apart).  The overall ``val_l1``, ``val_psnr``,
    ``val_ssim``, ``val_psnr_blend``, ``det_recall``, ``det_precision`` and
    ``val_d_accuracy`` are the means over the protocols (the finite ones),
    each protocol counting once.
    """
    from ..metrics import PSNR_CAP, psnr, ssim

    if len(val_set) == 0 or cfg.sampler_only:
        return {}
    gen, det = models["generator"], models["detector"]
    disc = models.get("discriminator") if cfg.discriminator_only or cfg.w_adv > 0 else None
    for module in (gen, det, disc):
        if module is not None:
            module.eval()
    stats = {}
    for part, protocol in enumerate(val_set.protocols):
        st = stats.setdefault(protocol, {"l1": [], "psnr": [], "psnr_blend": [], "ssim": [],
                                         "found": 0, "total": 0, "peaks": 0, "true_peaks": 0,
                                         "single": [], "judged": []})
        scenes = val_set.file_indices(part)
        for start in range(scenes.start, scenes.stop, batch_size):
            batch = val_set.batch(range(start, min(scenes.stop, start + batch_size)))
            gal = galaxies(batch, device, sigma)
            if gal["blend"].shape[0]:
                out = gen(gal["blend"], gal["heat"]).float()
                truth = gal["truth"].float()
                st["l1"].extend((out - truth).abs().flatten(1).mean(1).tolist())
                o, b, t = (x.clamp(0, 1).cpu().numpy() for x in (out, gal["blend"].float(),
                                                                  truth))
                for pred, blend, true in zip(o, b, t, strict=True):
                    st["psnr"].append(min(psnr(pred, true, data_range=1.0), PSNR_CAP))
                    st["psnr_blend"].append(min(psnr(blend, true, data_range=1.0), PSNR_CAP))
                    st["ssim"].append(ssim(pred, true, data_range=1.0))
                if disc is not None:
                    real = disc(gal["blend"], gal["heat"], truth).float().flatten(1).mean(1)
                    fake = disc(gal["blend"], gal["heat"], out).float().flatten(1).mean(1)
                    st["judged"].extend((real > fake).tolist())
            if cfg.train_detector:
                peaks = find_peaks(det(batch["blend"].to(device)), min_distance=2)
                for i, p in enumerate(peaks):
                    true = batch["centers"][i, : int(batch["n_sources"][i])].float()
                    p = p.float().cpu()
                    st["total"] += len(true)
                    st["peaks"] += len(p)
                    if len(true) == 1:
                        st["single"].append(len(p) == 1)
                    if len(p) and len(true):
                        d = torch.cdist(true, p)
                        st["found"] += int((d.min(dim=1).values <= radius).sum())
                        st["true_peaks"] += int((d.min(dim=0).values <= radius).sum())
    for module in (gen, det, disc):
        if module is not None:
            module.train()
    row = {}
    for protocol, st in stats.items():
        if st["psnr"]:
            row[f"val_l1_{protocol}"] = float(np.mean(st["l1"]))
            row[f"val_psnr_{protocol}"] = float(np.mean(st["psnr"]))
            row[f"val_ssim_{protocol}"] = float(np.mean(st["ssim"]))
            row[f"val_psnr_blend_{protocol}"] = float(np.mean(st["psnr_blend"]))
        if st["judged"]:
            row[f"val_d_accuracy_{protocol}"] = float(np.mean(st["judged"]))
        if cfg.train_detector:
            if st["total"]:
                row[f"val_det_recall_{protocol}"] = st["found"] / st["total"]
            # no peak at all: precision undefined (NaN), unless there was nothing to find
            row[f"val_det_precision_{protocol}"] = (st["true_peaks"] / st["peaks"] if st["peaks"]
                                                    else 1.0 if st["total"] == 0 else math.nan)
            if st["single"]:
                row[f"val_det_single_{protocol}"] = float(np.mean(st["single"]))
    for key, overall in (("l1", "val_l1"), ("psnr", "val_psnr"), ("ssim", "val_ssim"),
                         ("psnr_blend", "val_psnr_blend"), ("det_recall", "det_recall"),
                         ("det_precision", "det_precision"), ("d_accuracy", "val_d_accuracy")):
        values = [row[f"val_{key}_{p}"] for p in stats
                  if math.isfinite(row.get(f"val_{key}_{p}", math.nan))]
        if values:
            row[overall] = float(np.mean(values))
    return row


def _sample_indices(val_set, n):
    """Up to ``n`` validation scenes taken from every file in turn (the first of each)."""
    per_file = [list(val_set.file_indices(part)) for part in range(len(val_set.files))]
    chosen = []
    for depth in range(max((len(f) for f in per_file), default=0)):
        for scenes in per_file:
            if depth < len(scenes) and len(chosen) < n:
                chosen.append(scenes[depth])
    return chosen


@torch.no_grad()
def _write_epoch_outputs(out, cfg, models, val_set, device, sigma, history, epoch):
    from ..plotting import plot_sample_grid, plot_training_history

    _write_history(out / "history.csv", history)
    plot_training_history(history, out / "loss.png", overwrite=True)
    if (cfg.sample_every and (epoch + 1) % cfg.sample_every == 0 and len(val_set)
            and not cfg.sampler_only):
        gal = galaxies(val_set.batch(_sample_indices(val_set, cfg.n_sample_scenes)), device,
                       sigma)
        if not gal["blend"].shape[0]:
            return
        gen = models["generator"]
        gen.eval()
        output = gen(gal["blend"], gal["heat"]).float().cpu().numpy()
        gen.train()
        plot_sample_grid(gal["blend"].cpu().numpy(), output, gal["truth"].cpu().numpy(),
                         out / f"samples_epoch{epoch + 1:03d}.png",
                         title=f"epoch {epoch + 1}", overwrite=True)


def _init_payload(source):
    """Return the checkpoint a fine-tuning starts from (``'default'``: the shipped model)."""
    from ..weights import model_path

    path = model_path(source)
    payload = load_checkpoint(path)
    if not isinstance(payload.get("models"), dict) or "model_config" not in payload:
        raise CheckpointError(f"init_from {path} is not an astrodeblend model or training "
                              "checkpoint")
    return payload


def _split_record(train_set):
    """Return the ``galaxy_split`` record of the training files (`make_split_record`)."""
    files = [{"name": Path(scenes.path).name, "protocol": scenes.protocol, "split": split,
              "images_ids_sha256": scenes.params.get("ids_sha256")}
             for scenes, split in zip(train_set.files, train_set.split_fractions(), strict=True)]
    return make_split_record(train_set.galaxy_ids(), files=files)


def _write_text(path, text):
    from ..io import atomic_write

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
    if "cuda" in state:  # the GPUs visible now; a resumed run may see fewer
        set_cuda_rng_states(state["cuda"])


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


def _on_all_ranks(flag, device, world):
    """Return True when ``flag`` is true on every rank (one all-reduce under DDP)."""
    if world <= 1:
        return bool(flag)
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _all_reduce_mean(values, device, world):
    if world <= 1:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}
