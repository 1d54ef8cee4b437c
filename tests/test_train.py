"""Tests of astrodeblend.train: the training loop, resume, reproducibility, DDP, CLI."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from astrodeblend import (
    CheckpointError,
    DatasetError,
    DeviceError,
    InvalidInputError,
    OutputExistsError,
)
from astrodeblend._checkpoint import load_checkpoint, load_models, weights_hash
from astrodeblend.cli import build_parser, main
from astrodeblend.data import build_dataset
from astrodeblend.train import (
    TrainConfig,
    load_scenes,
    sample,
    sample_from_cli,
    train,
)
from astrodeblend.utils import resolve_device

# A tiny architecture so that a 2-epoch run takes seconds on one CPU core.
TINY = {"model": {"generator_channels": 8, "generator_depth": 2, "detector_channels": 4,
                  "detector_depth": 2, "discriminator_channels": 8, "discriminator_layers": 2},
        "lr": 2e-3, "batch_size": 8, "sample_every": 1, "n_sample_scenes": 2}
LOSS_KEYS = ["loss_g_l1", "loss_g_adv", "loss_g_flux", "loss_d", "loss_det", "val_l1",
             "val_psnr", "val_ssim", "det_recall"]


def _galaxy(size, x, y, r, e, theta, amp):
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    dx, dy = xx - x, yy - y
    c, s = np.cos(theta), np.sin(theta)
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / (1 - e)
    return amp * np.exp(-(np.sqrt(u * u + v * v) / r) ** 0.8)


def make_dataset(path, *, n=(48, 8, 4), size=24, n_bands=3, protocol="reiman", seed=0,
                 pedestal=0.15):
    """Write a small training-set file with the layout of astrodeblend.data.

    Two exponential-like galaxies per scene.  ``reiman``: display values,
    blend = max of the components + a sky pedestal (quick to learn, so the
    validation PSNR rises within two tiny epochs); ``physical``: blend = sum
    + Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="astrodeblend-dataset", version=1, protocol=protocol, seed=seed,
                       params="{}")
        for split, count in zip(("train", "validation", "test"), n, strict=True):
            truth = np.zeros((count, 2, n_bands, size, size), np.float32)
            centers = np.zeros((count, 2, 2), np.float32)
            for i in range(count):
                for k in range(2):
                    x, y = rng.uniform(0.3 * size, 0.7 * size, 2)
                    amp = 1.0 if k == 0 else rng.uniform(0.3, 1.0)
                    g = _galaxy(size, x, y, rng.uniform(2, 4), rng.uniform(0, 0.5),
                                rng.uniform(0, 3), amp)
                    truth[i, k] = rng.uniform(0.7, 1.0, n_bands)[:, None, None] * g
                    centers[i, k] = x, y
            if protocol == "physical":
                blend = truth.sum(1) + rng.normal(0, 0.01, truth.shape[:1] + truth.shape[2:])
            else:
                truth = truth ** (1 / 2.2)
                blend = truth.max(1) + pedestal
            group = f.create_group(split)
            group["blend"] = blend.astype(np.float32)
            group["truth"] = truth
            group["centers"] = centers
            group["n_sources"] = np.full(count, 2)
            group["ids"] = np.arange(2 * count).reshape(count, 2)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "reiman.h5")


@pytest.fixture(scope="module")
def run_a(dataset, tmp_path_factory):
    """An uninterrupted 2-epoch run (adversarial term on in epoch 2)."""
    out = tmp_path_factory.mktemp("runs") / "a"
    result = train(dataset, out, config=TINY, epochs=2, seed=0, progress=False)
    return out, result


def _state(path):
    return load_checkpoint(path)["models"]


# ----------------------------------------------------------------------------- outputs
def test_two_epoch_run_writes_everything(run_a):
    out, result = run_a
    for name in ("config.json", "history.csv", "loss.png", "samples_epoch001.png",
                 "samples_epoch002.png", "checkpoint_last.pt", "checkpoint_best.pt",
                 "checkpoint_last.sha256"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    assert len(result.history) == 2
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,lr,w_adv,loss_g_l1")
    assert len(lines) == 3
    h1, h2 = result.history
    assert h1["w_adv"] == 0 and h2["w_adv"] > 0          # warm-up, then adversarial
    assert h1["loss_d"] == 0 and h2["loss_d"] > 0
    assert h2["val_psnr"] > h1["val_psnr"]                 # it learns
    assert h2["val_psnr"] > h2["val_psnr_blend"]           # and beats doing nothing
    assert 0 < h2["val_ssim"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["generator_channels"] == 8 and config["epochs"] == 2


def test_checkpoint_contents_and_hash(run_a):
    out, result = run_a
    payload = load_checkpoint(out / "checkpoint_last.pt")
    assert payload["format"] == "astrodeblend-checkpoint"
    assert payload["epoch"] == 2 and payload["step"] == 12
    digest = weights_hash(payload["models"]["generator"])
    assert digest == payload["generator_sha256"] == result.generator_sha256
    assert (out / "checkpoint_last.sha256").read_text().split()[0] == digest
    models, config = load_models(out / "checkpoint_best.pt")
    assert config.generator_channels == 8 and config.image_size == 24
    blend = torch.rand(1, 3, 24, 24)
    assert models["generator"](blend, torch.zeros(1, 1, 24, 24)).shape == blend.shape


# ------------------------------------------------------------ resume and reproducibility
class _Killed(Exception):
    pass


def test_resume_after_kill_mid_epoch_is_exact(dataset, run_a, tmp_path, monkeypatch):
    from astrodeblend.train import loop

    out = tmp_path / "b"
    real_augment = loop.augment
    calls = {"n": 0}

    def dying_augment(batch, generator, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:             # third batch of epoch 2 (6 batches per epoch)
            raise _Killed
        return real_augment(batch, generator, **kwargs)

    monkeypatch.setattr(loop, "augment", dying_augment)
    with pytest.raises(_Killed):
        train(dataset, out, config=TINY, epochs=2, seed=0, progress=False)
    monkeypatch.setattr(loop, "augment", real_augment)
    assert load_checkpoint(out / "checkpoint_last.pt")["epoch"] == 1
    with pytest.raises(OutputExistsError):
        train(dataset, out, config=TINY, epochs=2, seed=0, progress=False)

    result = train(dataset, out, epochs=2, resume=True, progress=False)
    a, b = _state(run_a[0] / "checkpoint_last.pt"), _state(out / "checkpoint_last.pt")
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
    assert result.generator_sha256 == run_a[1].generator_sha256
    # same seed and data: the same losses, epoch by epoch
    for row_a, row_b in zip(run_a[1].history, result.history, strict=True):
        assert [row_a[k] for k in LOSS_KEYS] == [row_b[k] for k in LOSS_KEYS]


def test_other_seed_gives_other_weights(dataset, run_a, tmp_path):
    result = train(dataset, tmp_path / "c", config={**TINY, "sample_every": 0}, epochs=1,
                   seed=1, progress=False)
    assert result.history[0]["loss_g_l1"] != run_a[1].history[0]["loss_g_l1"]


def test_resume_with_other_architecture_is_refused(run_a, dataset, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run_a[0], out)
    with pytest.raises(CheckpointError, match="does not match the model"):
        train(dataset, out, config={"model": {"generator_channels": 16}}, epochs=3,
              resume=True, progress=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        train(dataset, tmp_path / "empty", resume=True, progress=False)


# ------------------------------------------------------------------------- bad input
def test_bad_data_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        train(tmp_path / "missing.h5", tmp_path / "r1", progress=False)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        train(text, tmp_path / "r2", progress=False)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["protocol"] = "reiman"
        f.create_group("train")["blend"] = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(DatasetError, match="lacks truth, centers, n_sources"):
        train(bad, tmp_path / "r3", progress=False)
    with h5py.File(bad, "w") as f:
        f.create_group("train")
    with pytest.raises(DatasetError, match="protocol"):
        train(bad, tmp_path / "r4", progress=False)


def test_mixed_sizes_refused(dataset, tmp_path):
    other = make_dataset(tmp_path / "big.h5", n=(4, 2, 2), size=32)
    with pytest.raises(DatasetError, match="must share bands and size"):
        train([dataset, other], tmp_path / "r", progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(dataset, tmp_path):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        train(dataset, tmp_path / "r", device="cuda", progress=False)
    assert resolve_device("auto") == torch.device("cpu")


def test_config_validation():
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="unknown model setting"):
        TrainConfig.from_dict({"model": {"width": 3}})
    cfg = TrainConfig(epochs=10, adv_warmup_epochs=4, adv_ramp_epochs=2, w_adv=0.02)
    assert [cfg.adv_weight(e) for e in (3, 4, 5, 6)] == [0.0, 0.01, 0.02, 0.02]
    assert cfg.lr_at(0) == cfg.lr and cfg.lr_at(9) < cfg.lr
    for key, bad in (("det_size_sigma", -0.1), ("det_sigma_max", 0.0)):
        with pytest.raises(ValueError, match=key):
            TrainConfig(**{key: bad})


def test_secondary_peaks_mark_a_truths_second_object_not_its_knots():
    """det_ignore_secondary: a neighbour inside a source's truth (a dip between it and
    the centre) is left out of the detector's loss within the radius; a knot on the
    galaxy's body (no dip), the centres and unlisted truths are not."""
    from astrodeblend.train.losses import secondary_peaks

    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    def blob(x, y, s, a):
        return a * torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))

    truth = torch.zeros(2, 2, 1, 40, 40)
    truth[0, 0, 0] = blob(20, 20, 3, 1.0) + blob(30, 12, 1.5, 0.5)  # a neighbour
    truth[0, 1, 0] = blob(8, 30, 2, 1.0)
    truth[1, 0, 0] = blob(20, 20, 4, 1.0) + blob(24, 20, 3, 0.3)   # a knot, no dip
    truth[1, 1, 0] = blob(20, 20, 3, 1.0) + blob(30, 30, 1.5, 0.5)  # not listed
    batch = {"truth": truth, "n_sources": torch.tensor([2, 1]),
             "centers": torch.tensor([[[20.0, 20.0], [8.0, 30.0]],
                                      [[20.0, 20.0], [float("nan"), 0.0]]])}
    mask = secondary_peaks(batch, 3.0)
    assert mask.shape == (2, 1, 40, 40)
    assert float(mask[0, 0, 12, 30]) == 1.0 and float(mask[0, 0, 12, 33]) == 1.0
    assert float(mask[0, 0, 12, 34]) == 0.0            # beyond the radius
    assert int(mask[0].sum()) == 29                    # one disc of radius 3
    assert float(mask[1].sum()) == 0.0                 # the knot and the unlisted truth
    assert float(mask[0, 0, 20, 20]) == 0.0 and float(mask[0, 0, 30, 8]) == 0.0  # centres
    with pytest.raises(ValueError, match="det_ignore_secondary"):
        TrainConfig(det_ignore_secondary=-1.0)


def test_sized_targets_widen_large_sources_and_keep_two_peaks():
    """det_size_sigma: a large source's peak is broad, a small one's stays heatmap_sigma
    wide, peaks stay at the centres with height 1, and a pair 2 * det_sigma_max apart
    keeps two peaks."""
    from astrodeblend.train.losses import center_targets

    yy, xx = np.mgrid[:48, :48]
    def disc(x, y, r):
        return torch.from_numpy(((xx - x) ** 2 + (yy - y) ** 2 <= r * r).astype(np.float32))

    truth = torch.zeros(2, 3, 1, 48, 48)
    truth[0, 0, 0] = disc(12, 20, 8)       # large: half-maximum radius 8
    truth[0, 1, 0] = disc(36, 30, 1.5)     # small
    truth[1, 0, 0] = disc(18, 24, 6)       # a pair 2 * 3 px apart
    truth[1, 1, 0] = disc(24, 24, 6)
    batch = {"truth": truth, "blend": truth.sum(1), "n_sources": torch.tensor([2, 2]),
             "centers": torch.tensor([[[12.0, 20.0], [36.0, 30.0], [0.0, 0.0]],
                                      [[18.0, 24.0], [24.0, 24.0], [0.0, 0.0]]])}
    fixed = center_targets(batch, "cpu", 1.5)
    sized = center_targets(batch, "cpu", 1.5, size_sigma=0.35, max_sigma=3.0)
    for x, y in ((12, 20), (36, 30)):
        assert float(sized[0, 0, y, x]) == pytest.approx(1.0)
    # 2 px from the large source's centre: width 0.35 * 8.0 = 2.8 (not 1.5) ...
    assert float(sized[0, 0, 20, 14]) == pytest.approx(np.exp(-2 / 2.8 ** 2), rel=0.02)
    assert float(fixed[0, 0, 20, 14]) == pytest.approx(np.exp(-2 / 1.5 ** 2), rel=1e-4)
    # ... the small one's as before; the third (unlisted) centre gives nothing
    np.testing.assert_allclose(sized[0, 0, 26:35, 32:41], fixed[0, 0, 26:35, 32:41], rtol=1e-5)
    assert float(sized[0, 0, 0, 0]) < 1e-6
    # the pair at the widest peaks (3 px): still two maxima, a dip between them
    row = sized[1, 0, 24]
    assert float(row[21]) < float(row[18]) and float(row[21]) < float(row[24])
    # without the option, the targets are those of earlier versions
    np.testing.assert_array_equal(center_targets(batch, "cpu", 1.5, size_sigma=0.0), fixed)


# ---------------------------------------------------------------- physical scenes, CLI
def test_cli_mixed_protocols(dataset, tmp_path, capsys):
    phys = make_dataset(tmp_path / "physical.h5", n=(16, 4, 2), protocol="physical", seed=3)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY, "sample_every": 0, "val_max_scenes": 4,
                               "adv_warmup_epochs": 0}))
    args = ["train", "--data", str(dataset), str(phys), "--out", str(tmp_path / "run"),
            "--epochs", "1", "--config", str(cfg), "--no-progress"]
    assert build_parser().parse_args(args).data == [str(dataset), str(phys)]
    assert main(args) == 0
    assert "trained 1 epoch(s)" in capsys.readouterr().out
    row = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["history"][0]
    assert row["loss_g_flux"] > 0 and row["loss_d"] > 0
    scenes = load_scenes(phys, "train", max_scenes=3)
    assert scenes["linear"].all() and 0.5 < float(scenes["blend"].amax()) < 2
    # errors are one line, exit status 2
    assert main(["train", "--data", str(tmp_path / "nope.h5"), "--out",
                 str(tmp_path / "r2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fine_tuning_starts_from_a_checkpoints_networks(dataset, run_a, tmp_path):
    """init_from: a new run with the networks (and their settings) of a
    checkpoint; optimisers, schedule and epochs start afresh; a stripped
    model without a discriminator is accepted; not with resume."""
    from astrodeblend._checkpoint import save_checkpoint

    source = run_a[0] / "checkpoint_last.pt"
    before = _state(source)
    # default model settings in the config: the checkpoint's TINY networks win
    result = train(dataset, tmp_path / "ft", config={"train_generator": False,
                                                      "sample_every": 0},
                   init_from=source, epochs=1, progress=False)
    payload = load_checkpoint(result.last_checkpoint)
    after = payload["models"]
    assert payload["train_config"]["model"]["generator_channels"] == \
        TINY["model"]["generator_channels"]
    assert payload["train_config"]["init_from"] == str(source)
    for name in ("generator", "discriminator"):
        for key, value in before[name].items():
            assert torch.equal(after[name][key], value), (name, key)
    assert any(not torch.equal(after["detector"][k], v) for k, v in before["detector"].items())
    assert len(result.history) == 1 and payload["epoch"] == 1
    # the galaxies of the run it started from are still training galaxies
    assert payload["galaxy_split"]["train_ids_sha256"] == \
        load_checkpoint(source)["galaxy_split"]["train_ids_sha256"]

    stripped = load_checkpoint(source)
    del stripped["models"]["discriminator"], stripped["optimizers"]
    save_checkpoint(tmp_path / "stripped.pt", stripped)
    result = train(dataset, tmp_path / "ft2", config={"sample_every": 0, "adv_warmup_epochs": 0},
                   init_from=tmp_path / "stripped.pt", epochs=1, progress=False)
    assert np.isfinite(result.history[0]["loss_d"]) and result.history[0]["loss_d"] > 0

    from astrodeblend import InvalidInputError

    with pytest.raises(InvalidInputError, match="new run only"):
        train(dataset, tmp_path / "ft", init_from=source, epochs=2, resume=True,
              progress=False)
    with pytest.raises(CheckpointError):
        train(dataset, tmp_path / "ft3", init_from=tmp_path / "missing.pt", progress=False)


def test_fine_tuning_a_narrower_generator(dataset, run_a, tmp_path):
    """init_narrow: the generator starts at half its checkpoint's width from the
    checkpoint's strongest filters (models.narrowed) and trains; the detector is
    the checkpoint's; the run's model settings record the new width."""
    from astrodeblend.models import DeblendGenerator, narrowed

    source = run_a[0] / "checkpoint_last.pt"
    before = _state(source)
    result = train(dataset, tmp_path / "narrow", init_from=source, epochs=1, progress=False,
                   config={"train_detector": False, "sample_every": 0, "w_adv": 0.0,
                           "init_narrow": {"generator_channels": 4}})
    payload = load_checkpoint(result.last_checkpoint)
    assert payload["train_config"]["model"]["generator_channels"] == 4
    after = payload["models"]
    assert after["generator"]["net.head.weight"].shape[1] == 4
    for key, value in before["detector"].items():
        assert torch.equal(after["detector"][key], value)
    wide = DeblendGenerator(3, 8, 2)
    wide.load_state_dict(before["generator"])
    start = narrowed(wide, 4).state_dict()
    assert any(not torch.equal(after["generator"][k], v) for k, v in start.items())
    assert np.isfinite(result.history[0]["val_psnr"])
    with pytest.raises(InvalidInputError, match="init_from too"):
        train(dataset, tmp_path / "n2", config={"init_narrow": {"generator_channels": 4}},
              epochs=1, progress=False)
    with pytest.raises(InvalidInputError, match=r"\[1, 8\]"):
        train(dataset, tmp_path / "n3", init_from=source, epochs=1, progress=False,
              config={"init_narrow": {"generator_channels": 16}})
    for bad in ({"generator_depth": 1}, {"generator_channels": 0}, [4]):
        with pytest.raises(InvalidInputError, match="init_narrow"):
            TrainConfig(init_narrow=bad)


def test_narrowed_keeps_the_strongest_filters_and_their_wiring():
    """models.narrowed: at full width the same network; at half width each
    convolution holds the original's filters of largest |weight| on the input
    channels kept upstream (the skips' channels in the decoder's concatenation);
    a network whose weak filters are zero computes what the original does."""
    from astrodeblend.models import CenterDetector, DeblendGenerator, narrowed

    torch.manual_seed(0)
    gen = DeblendGenerator(3, 8, 2)
    for module in gen.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(module.weight, std=0.1)
    blend, heat = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        same = narrowed(gen, 8)
        assert torch.equal(same(blend, heat), gen(blend, heat))
        # zero every second filter (and its bias) of each level: half width loses nothing
        for module in gen.net.modules():
            if isinstance(module, torch.nn.Conv2d) and module is not gen.net.head:
                module.weight[1::2] = 0
                module.bias[1::2] = 0
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight[:, 1::2] = 0
                module.bias[1::2] = 0
        half = narrowed(gen, 4)
        assert half.net.stem[0].out_channels == 4 and half.net.dec[0][2].out_channels == 4
        torch.testing.assert_close(half(blend, heat), gen(blend, heat))
    assert narrowed(CenterDetector(5, 4, 2), 2)(torch.zeros(1, 5, 16, 16)).shape == \
        (1, 1, 16, 16)
    with pytest.raises(InvalidInputError, match="base_channels"):
        narrowed(gen, 9)


# -------------------------------------------------------------------- sample GAN
def test_detector_alone_continues_a_run(dataset, run_a, tmp_path):
    """train_generator=False: a resumed run trains its detector, generator and
    discriminator stay as they were."""
    out = tmp_path / "det"
    shutil.copytree(run_a[0], out)
    before = _state(out / "checkpoint_last.pt")
    result = train(dataset, out, config={"train_generator": False}, epochs=3, resume=True,
                   progress=False)
    after = _state(result.last_checkpoint)
    for name in ("generator", "discriminator"):
        for key, value in before[name].items():
            assert torch.equal(after[name][key], value), (name, key)
    assert any(not torch.equal(after["detector"][k], v) for k, v in before["detector"].items())
    row = result.history[-1]
    assert row["loss_det"] > 0 and row["loss_g_l1"] == row["loss_d"] == 0.0


def test_discriminator_alone_learns_a_frozen_generator(dataset, run_a, tmp_path):
    """discriminator_only: a discriminator trained against a generator that
    stays as it is (detector and generator unchanged); validation scores how
    often it ranks the truth above the generator's output."""
    source = run_a[0] / "checkpoint_last.pt"
    before = _state(source)
    result = train(dataset, tmp_path / "judge", config={"discriminator_only": True,
                                                         "sample_every": 0, "lr": 2e-3},
                   init_from=source, epochs=2, progress=False)
    after = _state(result.last_checkpoint)
    for name in ("generator", "detector"):
        for key, value in before[name].items():
            assert torch.equal(after[name][key], value), (name, key)
    assert any(not torch.equal(after["discriminator"][k], v)
               for k, v in before["discriminator"].items())
    assert result.generator_sha256 == load_checkpoint(source)["generator_sha256"]
    for row in result.history:
        assert row["loss_d"] > 0 and row["loss_g_l1"] == row["loss_det"] == row["w_adv"] == 0.0
        assert 0.0 <= row["val_d_accuracy"] <= 1.0
        assert row["val_d_accuracy"] == row["val_d_accuracy_reiman"]
    # it learns: the loss falls, and it tells the truth from the generator's output
    assert result.history[1]["loss_d"] < result.history[0]["loss_d"]
    assert result.history[1]["val_d_accuracy"] > 0.5
    # runs that never train the discriminator do not score it
    assert "val_d_accuracy" not in train(
        dataset, tmp_path / "noadv", config={**TINY, "w_adv": 0.0, "sample_every": 0},
        epochs=1, progress=False).history[0]
    with pytest.raises(ValueError, match="exclude each other"):
        TrainConfig(discriminator_only=True, sampler_only=True)


def test_sampler_only_and_sample(dataset, run_a, tmp_path):
    cfg = {**TINY, "sampler_only": True, "sample_every": 0,
           "model": {**TINY["model"], "sampler_size": 16, "sampler_channels": 4,
                     "latent_dim": 8}}
    result = train(dataset, tmp_path / "s", config=cfg, epochs=1, progress=False)
    assert result.history[0]["loss_sg"] > 0 and result.history[0]["loss_sd"] > 0
    images = sample(3, checkpoint=result.last_checkpoint, seed=5, device="cpu")
    assert images.shape == (3, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    np.testing.assert_array_equal(images, sample(3, checkpoint=result.last_checkpoint, seed=5))
    with pytest.raises(CheckpointError, match="no unconditional sample generator"):
        sample(2, checkpoint=run_a[0] / "checkpoint_last.pt")

    from argparse import Namespace

    from astropy.io import fits

    for name in ("grid.png", "cube.fits"):
        args = Namespace(model=str(result.last_checkpoint), n=4, seed=0, out=str(tmp_path / name),
                         device="cpu", overwrite=False)
        assert sample_from_cli(args) == 0
        with pytest.raises(OutputExistsError):
            sample_from_cli(args)
    assert fits.getdata(tmp_path / "cube.fits").shape == (4, 3, 16, 16)


# ------------------------------------------------------------------------------ DDP
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes(dataset, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY, "sample_every": 1, "adv_warmup_epochs": 0}))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m",
           "astrodeblend", "train", "--data", str(dataset), "--out", str(out), "--epochs", "1",
           "--config", str(cfg), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 1 epoch(s)") == 1     # only rank 0 reports
    payload = load_checkpoint(out / "checkpoint_last.pt")
    assert payload["step"] == 3                # 48 scenes / 2 ranks / batch 8
    assert payload["history"][0]["loss_d"] > 0
    assert (out / "samples_epoch001.png").is_file() and (out / "loss.png").is_file()
    assert not any(k.startswith("module.") for k in payload["models"]["generator"])


# ------------------------------------------------------------------- real data (slow)
@pytest.mark.slow
def test_real_galaxy_zoo_run(galaxy_zoo_dir, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(galaxy_zoo_dir.glob("*.jpg"))[:1000]:
        os.symlink(path, folder / path.name)
    h5 = tmp_path / "gz.h5"
    build_dataset(folder, h5, protocol="reiman", n=640, seed=0, progress=False)
    result = train(h5, tmp_path / "run", config={"batch_size": 8, "lr": 5e-4,
                                                 "val_max_scenes": 64, "n_sample_scenes": 2,
                                                 "model": {"generator_channels": 16}},
                   epochs=2, progress=False)
    h1, h2 = result.history
    assert h2["val_psnr"] > h1["val_psnr"]
    assert h2["val_psnr"] > h2["val_psnr_blend"]
    assert (tmp_path / "run" / "samples_epoch002.png").is_file()


# --------------------------------------------------------- survey scenes (issue 13)
@pytest.fixture(scope="module")
def survey_file(tmp_path_factory):
    """A real ``survey`` training-set file of 24 px scenes (0-5 sources, stars, NaN padding)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("survey_images")
    yy, xx = np.mgrid[:48, :48]
    for gid in range(100000, 100040):
        g = np.exp(-((xx - 23.5) ** 2 + (yy - 23.5) ** 2) / (20 + gid % 7))
        rgb = np.repeat((255 * g ** 0.45)[..., None], 3, axis=2).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{gid}.jpg")
    path = folder / "survey.h5"
    build_dataset(folder, path, protocol="survey", n=30, seed=1, size=24, progress=False)
    return path


def _peaks(target, level=0.5):
    """Local maxima of a (H, W) map above ``level`` (3x3 neighbourhood)."""
    padded = torch.nn.functional.pad(target[None, None], (1, 1, 1, 1), value=-1.0)
    local = torch.nn.functional.max_pool2d(padded, 3, stride=1)[0, 0]
    return torch.nonzero((target >= local) & (target > level))


def test_survey_scenes_in_model_space_and_every_source_a_target(survey_file):
    from astrodeblend.data import open_split
    from astrodeblend.models import robust_peak, stretch
    from astrodeblend.train.batches import TrainingScenes
    from astrodeblend.train.losses import center_targets

    scenes = load_scenes(survey_file, "train")
    n = scenes["n_sources"]
    assert scenes["linear"].all() and bool(torch.isfinite(scenes["centers"]).all())
    assert {0, 1} <= set(n.tolist()) and int(n.max()) >= 3   # empty, isolated and crowded
    # linear flux mapped like physical scenes: stretch(x / robust_peak(blend))
    with open_split(survey_file, "train") as raw:
        first = raw[0]
    scale = robust_peak(torch.from_numpy(first["blend"]))
    np.testing.assert_allclose(scenes["blend"][0], stretch(first["blend"] / float(scale)),
                               rtol=1e-5, atol=1e-6)
    target = center_targets(scenes, "cpu", 1.0)
    assert bool(torch.isfinite(target).all())
    for i in range(len(n)):
        k = int(n[i])
        if k == 0:
            assert float(target[i].max()) == 0.0            # nothing to find
            continue
        # every listed source, galaxy or star, is a peak of height 1 ...
        for x, y in scenes["centers"][i, :k].tolist():
            assert float(target[i, 0, round(y), round(x)]) > 0.6
        if k == 1:                                          # ... an isolated one is one peak
            assert len(_peaks(target[i, 0])) == 1
    # a star is a source: the file lists more sources than it has galaxy ids
    with open_split(survey_file, "train") as raw:
        listed = sum(raw[i]["n_sources"] for i in range(len(raw)))
        imaged = sum(int((raw[i]["ids"] >= 0).sum()) for i in range(len(raw)))
    assert listed == int(n.sum()) > imaged
    # validation takes the first scenes of every file
    both = TrainingScenes([survey_file, survey_file], "validation", max_per_file=2)
    assert len(both) == 4 and both.protocols == ["survey", "survey"]
    assert [both[i]["file"] for i in range(4)] == [0, 0, 1, 1]


def test_mixed_protocols_validated_per_protocol_with_split_record(dataset, survey_file, tmp_path):
    from astrodeblend._checkpoint import ids_hash, training_galaxy_ids
    from astrodeblend.data import open_split

    result = train([dataset, survey_file], tmp_path / "mix",
                   config={**TINY, "val_max_scenes": 3, "adv_warmup_epochs": 0,
                           "n_sample_scenes": 4},
                   epochs=1, progress=False)
    row = result.history[0]
    for protocol in ("reiman", "survey"):
        for key in ("val_psnr", "val_ssim", "val_l1", "val_det_recall"):
            assert np.isfinite(row[f"{key}_{protocol}"]), (key, protocol)
        precision = row[f"val_det_precision_{protocol}"]    # NaN: no peak found yet
        assert np.isnan(precision) or 0 <= precision <= 1
    # the overall scores are the means over the protocols, each counting once
    assert row["val_psnr"] == pytest.approx((row["val_psnr_reiman"] + row["val_psnr_survey"]) / 2)
    assert row["loss_g_flux"] > 0 and np.isfinite(row["loss_det"])
    assert "val_psnr_survey" in (tmp_path / "mix" / "history.csv").read_text().splitlines()[0]
    # the galaxies of the training scenes, recorded in the checkpoint
    record = load_checkpoint(result.last_checkpoint)["galaxy_split"]
    ids = []
    for path in (dataset, survey_file):
        with open_split(path, "train") as scenes:
            ids += [int(i) for s in scenes for i in s["ids"] if i >= 0]
    assert training_galaxy_ids(record).tolist() == sorted(set(ids))
    assert record["train_ids_sha256"] == ids_hash(ids)
    assert record["n_train_galaxies"] == len(set(ids))
    assert [f["protocol"] for f in record["files"]] == ["reiman", "survey"]
    assert record["files"][1]["split"] == [0.8, 0.1, 0.1] and record["fractions"] is None


def _survey_like(path, n_sources, *, size=16, seed=0):
    """A ``survey`` file whose train split has scenes of exactly ``n_sources`` sources."""
    rng = np.random.default_rng(seed)
    k_max = max(max(n_sources), 1)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="astrodeblend-dataset", version=1, protocol="survey", seed=seed,
                       params='{"split": [0.8, 0.1, 0.1]}')
        for split, counts in (("train", n_sources), ("validation", n_sources),
                              ("test", n_sources[:1])):
            m = len(counts)
            truth = np.zeros((m, k_max, 3, size, size), np.float32)
            centers = np.full((m, k_max, 2), np.nan, np.float32)
            for i, k in enumerate(counts):
                for j in range(k):
                    x, y = rng.uniform(3, size - 4, 2)
                    truth[i, j] = _galaxy(size, x, y, 1.5, 0.2, 0.3, 1.0)
                    centers[i, j] = x, y
            group = f.create_group(split)
            group["blend"] = (truth.sum(1) + rng.normal(0, 0.01, (m, 3, size, size))
                              ).astype(np.float32)
            group["truth"] = truth
            group["centers"] = centers
            group["n_sources"] = np.asarray(counts, np.int32)
            group["ids"] = np.full((m, k_max), -1, np.int64)
    return path


def test_batches_without_any_source(tmp_path):
    data = _survey_like(tmp_path / "empty.h5", [0, 0, 1, 0, 2, 0])
    cfg = {**TINY, "batch_size": 2, "adv_warmup_epochs": 0, "sample_every": 1,
           "n_sample_scenes": 1, "train_sampler": True,
           "model": {**TINY["model"], "sampler_size": 16, "sampler_channels": 4,
                     "latent_dim": 8}}
    result = train(data, tmp_path / "run", config=cfg, epochs=1, progress=False)
    row = result.history[0]
    assert all(np.isfinite(row[k]) for k in ("loss_g_l1", "loss_det", "val_psnr"))
    assert "val_det_precision_survey" in row and row["val_det_single_survey"] in (0.0, 1.0)
    # nothing to record: profiles and stars only
    assert load_checkpoint(result.last_checkpoint)["galaxy_split"]["n_train_galaxies"] == 0


def test_random_shifts_move_everything_together():
    from astrodeblend.train.batches import augment, shift_scene

    size = 20
    truth = torch.zeros(3, 2, 1, size, size)
    centers = torch.zeros(3, 2, 2)
    for i, (x, y) in enumerate([(5.0, 7.0), (10.0, 10.0), (17.0, 3.0)]):
        truth[i, 0, :, int(y), int(x)] = 1.0
        truth[i, 1, :, 2, 15] = 0.5
        centers[i] = torch.tensor([[x, y], [15.0, 2.0]])
    blend = truth.sum(1) + 0.1              # a sky level: the vacated border gets it

    def batch():
        return {"blend": blend.clone(), "truth": truth.clone(), "centers": centers.clone(),
                "n_sources": torch.tensor([2, 2, 1])}

    a = augment(batch(), torch.Generator().manual_seed(3), max_shift=6)
    b = augment(batch(), torch.Generator().manual_seed(3), max_shift=6)
    for key in a:
        assert torch.equal(a[key], b[key])              # reproducible from the generator
    moved = False
    for i in range(3):
        for k in range(int(a["n_sources"][i])):
            x, y = a["centers"][i, k].round().long().tolist()
            assert 0 <= x < size and 0 <= y < size
            assert float(a["truth"][i, k, 0, y, x]) == float(truth[i, k].max())  # on its centre
        assert float(a["blend"][i].min()) == pytest.approx(0.1)   # no hole in the sky
        moved |= not torch.equal(a["blend"][i], batch()["blend"][i])
    assert moved
    # no shift: exactly the flips of before (same draws, same result)
    c = augment(batch(), torch.Generator().manual_seed(3), max_shift=0)
    d = augment(batch(), torch.Generator().manual_seed(3))
    assert torch.equal(c["blend"], d["blend"]) and torch.equal(c["centers"], d["centers"])
    # a source pushed out of the frame is no longer a target; the others move up
    out = shift_scene(blend[0], truth[0], centers[0], 2, 5, 0)
    assert out[3] == 1 and out[2][0].tolist() == [10.0, 7.0]
    assert float(out[1][1].abs().sum()) == 0 and out[2][1].tolist() == [0.0, 0.0]
    assert float(out[0][0, 7, 10]) == pytest.approx(1.1)
    assert torch.allclose(out[0][:, :, :5], torch.full((1, size, 5), 0.1))


# --------------------------------------------------------- schedule on resume (issue 13)
def test_resume_keeps_the_schedule_unless_rescheduled(dataset, run_a, tmp_path, capsys):
    from astrodeblend.errors import InvalidInputError

    first = run_a[1].history
    kept = tmp_path / "kept"
    shutil.copytree(run_a[0], kept)
    assert main(["train", "--data", str(dataset), "--out", str(kept), "--epochs", "3",
                 "--resume", "--no-progress"]) == 0
    assert "laid out over 2 epochs" in capsys.readouterr().out
    payload = load_checkpoint(kept / "checkpoint_last.pt")
    cfg = TrainConfig.from_dict(payload["train_config"])
    assert cfg.epochs == 3 and cfg.schedule_epochs == 2
    history = payload["history"]
    assert [row["lr"] for row in history[:2]] == [row["lr"] for row in first]
    assert history[2]["lr"] == pytest.approx(TINY["lr"] * cfg.lr_min_factor)  # stays at the end
    assert history[2]["w_adv"] == cfg.w_adv
    again = tmp_path / "again"
    shutil.copytree(run_a[0], again)
    result = train(dataset, again, epochs=4, resume=True, reschedule=True, progress=False)
    assert result.config.schedule_epochs == 4
    expected = TrainConfig(epochs=4, lr=TINY["lr"])
    assert result.history[2]["lr"] == pytest.approx(expected.lr_at(2))
    assert result.history[2]["w_adv"] == expected.adv_weight(2)
    with pytest.raises(InvalidInputError, match="resumed run only"):
        train(dataset, tmp_path / "new", epochs=1, reschedule=True, progress=False)


def test_checkpoints_before_schedule_epochs_keep_their_epochs(run_a):
    from astrodeblend.train.config import prepare_run

    payload = load_checkpoint(run_a[0] / "checkpoint_last.pt")
    assert payload["train_config"]["schedule_epochs"] == 2
    # a checkpoint of an older version has no schedule_epochs: its own epochs are the schedule
    old = dict(payload, train_config={k: v for k, v in payload["train_config"].items()
                                      if k != "schedule_epochs"})
    import astrodeblend.train.config as config_module

    real = config_module.load_checkpoint
    config_module.load_checkpoint = lambda path: old
    try:
        cfg, _ = prepare_run(run_a[0], config=None, overrides={"epochs": 5}, resume=True)
    finally:
        config_module.load_checkpoint = real
    assert cfg.epochs == 5 and cfg.schedule_epochs == 2
    assert TrainConfig(w_adv=0.0, epochs=4).adv_weight(3) == 0.0   # the no-adversarial ablation


def test_adversarial_fine_tuning_starts_from_the_shipped_full_checkpoint(tmp_path):
    """``init_from='default_full'``: the shipped networks and the discriminator trained
    for the shipped generator (it tells the truth from the generator's output)."""
    from astrodeblend.weights import model_path

    full = model_path("default_full")
    if not full.is_file():
        pytest.skip("this installation ships no full checkpoint")
    shipped = load_checkpoint(full)
    assert shipped["discriminator_from"]["val_d_accuracy"] > 0.9
    assert shipped["generator_sha256"] == load_checkpoint(model_path("default"))[
        "generator_sha256"]
    data = make_dataset(tmp_path / "reiman.h5", n=(16, 8, 0), size=32)
    result = train(data, tmp_path / "adv", init_from="default_full", epochs=1,
                   config={"adv_warmup_epochs": 0, "batch_size": 8, "sample_every": 0,
                           "train_detector": False},
                   progress=False)
    row = result.history[0]
    assert row["w_adv"] > 0 and row["loss_d"] > 0 and row["loss_g_adv"] > 0
    assert 0 <= row["val_d_accuracy"] <= 1
    assert load_checkpoint(result.last_checkpoint)["train_config"]["model"][
        "generator_channels"] == shipped["model_config"]["generator_channels"]
