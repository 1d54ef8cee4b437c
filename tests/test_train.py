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

from astrodeblend import CheckpointError, DatasetError, DeviceError, OutputExistsError
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


# -------------------------------------------------------------------- sample GAN
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
