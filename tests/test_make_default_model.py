"""Tests of tools/make_default_model.py: the default model's recipe, end to end on tiny data."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from astrodeblend._checkpoint import load_checkpoint, load_models, training_galaxy_ids
from astrodeblend.errors import DatasetError

TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_default_model.py"
TINY_MODEL = {"generator_channels": 8, "generator_depth": 2, "detector_channels": 4,
              "detector_depth": 2, "discriminator_channels": 8, "discriminator_layers": 2,
              "sampler_size": 16, "sampler_channels": 4, "latent_dim": 8}


def _tool():
    spec = importlib.util.spec_from_file_location("make_default_model", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # --jobs pickles its functions by module name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """40 Galaxy-Zoo-like JPGs of 96 px: reiman and physical scenes of 18 px."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("gz")
    yy, xx = np.mgrid[:96, :96]
    for gid in range(100000, 100040):
        g = np.exp(-((xx - 47.5) ** 2 + (yy - 47.5) ** 2) / (60 + 9 * (gid % 7)))
        rgb = np.repeat((255 * g ** 0.45)[..., None], 3, axis=2).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{gid}.jpg")
    return folder


def _recipe(tool, path):
    """The shipped recipe, scaled down: tiny networks, 20 scenes per file, one epoch."""
    recipe = tool.load_recipe()
    # a refine stage (the detector fine-tuned again on files of its own, from
    # the generator stage), shipped: the shipped recipe ships the generator stage
    recipe["datasets"].update({
        "survey_21": {"protocol": "survey", "n": 20, "seed": 21, "dtype": "float16",
                      "images": "survey_images"},
        "reiman_23": {"protocol": "reiman", "n": 20, "seed": 23},
        "physical_24": {"protocol": "physical", "n": 20, "seed": 24}})
    recipe["refine"] = {"init_from": "generator", "out": "refine",
                        "data": ["survey_21", "reiman_23", "physical_24"],
                        "config": {**recipe["detector"]["config"], "det_pos_weight": 12.0}}
    recipe["export"]["from"] = "refine"
    for spec in recipe["datasets"].values():
        spec["n"] = 20
        if spec["protocol"] == "survey":
            spec["options"] = {"size": 18}
    recipe = tool.merge(recipe, {
        "train": {"config": {"epochs": 1, "schedule_epochs": 1, "adv_warmup_epochs": 0,
                             "batch_size": 8, "lr": 2e-3, "val_max_scenes": 3,
                             "sample_every": 1, "n_sample_scenes": 2, "max_memory_gb": 1.0,
                             "model": TINY_MODEL}},
        "detector": {"init_from": "run",
                     "config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                                "val_max_scenes": 3, "max_memory_gb": 1.0}},
        "generator": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                                 "lr": 2e-3, "val_max_scenes": 3, "sample_every": 0,
                                 "max_memory_gb": 1.0}},
        "discriminator": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                                     "lr": 2e-3, "val_max_scenes": 3, "max_memory_gb": 1.0}},
        "refine": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8, "lr": 2e-3,
                              "val_max_scenes": 3, "max_memory_gb": 1.0}},
        "sampler": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                               "model": TINY_MODEL}},
        "compare": {"protocols": ["reiman"], "n": 2},
        "export": {"full_max_mb": 30},
    })
    path.write_text(json.dumps(recipe))
    return path


def test_recipe_end_to_end_and_resumable(tool, images, tmp_path, capsys):
    recipe = _recipe(tool, tmp_path / "recipe.json")
    work, weights = tmp_path / "work", tmp_path / "weights"
    argv = ["all", "--recipe", str(recipe), "--work", str(work), "--images", str(images),
            "--weights", str(weights), "--device", "cpu", "--no-progress", "--with-ablation",
            "--jobs", "2"]
    assert tool.main(argv) == 0
    for name in ("reiman", "physical", "survey", "survey_21", "reiman_23", "physical_24"):
        assert (work / f"{name}.h5").is_file()
    # survey scenes come from the 2x2-binned copies: same ids, so the same split
    assert sorted(p.name for p in (work / "gz_bin2").iterdir()) == sorted(
        f"{p.stem}.png" for p in images.glob("*.jpg"))
    import h5py

    with h5py.File(work / "survey.h5") as f:
        assert Path(f.attrs["images"]) == work / "gz_bin2"
    with h5py.File(work / "reiman.h5") as f:
        assert Path(f.attrs["images"]) == images
    run = load_checkpoint(work / "run" / "checkpoint_last.pt")
    ablation = load_checkpoint(work / "run_noadv" / "checkpoint_last.pt")
    # the detector stage: the run's generator, a detector trained further
    tuned = load_checkpoint(work / "detector" / "checkpoint_last.pt")
    assert tuned["train_config"]["train_generator"] is False
    assert tuned["generator_sha256"] == run["generator_sha256"]
    assert not torch.equal(tuned["models"]["detector"]["net.head.weight"],
                           run["models"]["detector"]["net.head.weight"])
    assert run["history"][0]["w_adv"] > 0 and run["history"][0]["loss_d"] > 0
    # the generator stage: the detector stage's detector, a generator trained further
    stage = load_checkpoint(work / "generator" / "checkpoint_last.pt")
    assert stage["train_config"]["train_detector"] is False
    assert stage["train_config"]["w_adv"] == 0
    for key, value in tuned["models"]["detector"].items():
        assert torch.equal(stage["models"]["detector"][key], value)
    assert stage["generator_sha256"] != tuned["generator_sha256"]
    # the discriminator stage: a discriminator for the generator stage's frozen generator
    judge = load_checkpoint(work / "discriminator" / "checkpoint_last.pt")
    assert judge["train_config"]["discriminator_only"] is True
    for name in ("generator", "detector"):
        for key, value in stage["models"][name].items():
            assert torch.equal(judge["models"][name][key], value), (name, key)
    assert any(not torch.equal(judge["models"]["discriminator"][key], value)
               for key, value in stage["models"]["discriminator"].items())
    assert judge["history"][0]["loss_d"] > 0
    assert 0 <= judge["history"][0]["val_d_accuracy"] <= 1
    # the refine stage: the generator stage's generator, its detector trained again
    refined = load_checkpoint(work / "refine" / "checkpoint_last.pt")
    assert refined["train_config"]["train_generator"] is False
    assert refined["train_config"]["det_pos_weight"] == 12.0
    assert refined["generator_sha256"] == stage["generator_sha256"]
    assert any(not torch.equal(refined["models"]["detector"][key], value)
               for key, value in stage["models"]["detector"].items())
    # ... on its own four files, each validated
    assert {f"val_psnr_{p}" for p in ("reiman", "physical", "survey")} <= set(
        refined["history"][0])
    # the ablation: no adversarial term at any epoch, the discriminator never trained
    assert ablation["train_config"]["w_adv"] == 0
    assert all(row["w_adv"] == 0 and row["loss_d"] == 0 for row in ablation["history"])
    # the run saw every protocol and validated each
    for protocol in ("reiman", "physical", "survey"):
        assert np.isfinite(run["history"][0][f"val_psnr_{protocol}"])

    # export: the stripped default, the full checkpoint beside it, the card
    default = load_checkpoint(weights / "default.pt")
    assert sorted(default["models"]) == ["detector", "generator", "sample_generator"]
    assert default["generator_sha256"] == stage["generator_sha256"]   # the generator stage's
    from astrodeblend.pipeline import Deblender

    assert default["model_sha256"] == Deblender.load(weights / "default.pt").model_hash
    for key, value in refined["models"]["detector"].items():          # the refine stage's
        assert torch.equal(default["models"]["detector"][key], value)
    assert "optimizers" not in default and "discriminator" not in default["models"]
    # every stage's training galaxies (the refine stage's files add their own)
    assert set(training_galaxy_ids(default).tolist()) == set(
        training_galaxy_ids(run).tolist()) | set(training_galaxy_ids(refined).tolist())
    assert set(training_galaxy_ids(refined).tolist()) >= set(training_galaxy_ids(stage).tolist())
    assert default["galaxy_split"]["fractions"] == [0.8, 0.1, 0.1]
    assert default["galaxy_split"]["n_train_galaxies"] > 0
    models, _ = load_models(weights / "default.pt")
    assert {"generator", "detector", "sample_generator"} <= set(models)
    full = load_checkpoint(weights / "default_full.pt")
    assert {"generator", "detector", "discriminator"} <= set(full["models"])
    assert "discriminator" in full["optimizers"] and full["epoch"] == 1
    # ... whose discriminator (and its optimiser state) is the discriminator stage's
    for key, value in judge["models"]["discriminator"].items():
        assert torch.equal(full["models"]["discriminator"][key], value)
    assert full["optimizers"]["discriminator"]["state"]
    # ... and only its Adam state (recipe['export']['full_optimizer_state']): a smaller file
    assert not full["optimizers"]["generator"]["state"]
    assert full["optimizers"]["generator"]["param_groups"]
    assert full["generator_sha256"] == stage["generator_sha256"]
    card = json.loads((weights / "default.json").read_text())
    assert card["full_checkpoint"]["path"].endswith("default_full.pt")
    taken = card["full_checkpoint"]["discriminator_from"]
    assert taken["path"].endswith("checkpoint_last.pt") and taken["epochs"] == 1
    assert taken["val_d_accuracy"] == judge["history"][0]["val_d_accuracy"]
    assert card["recipe"]["datasets"]["survey"]["protocol"] == "survey"
    # an exported full checkpoint passes its discriminator on with the record of its run
    again = tool._take_discriminator(load_checkpoint(weights / "default.pt") | {
        "optimizers": {}}, weights / "default_full.pt")
    assert again == {**taken, "via": str(weights / "default_full.pt")}
    assert "train_ids" not in card["galaxy_split"]
    assert set(card["ablation"]["runs"]) == {"adversarial", "no_adversarial"}
    assert "psnr_mean_all" in card["ablation"]["runs"]["no_adversarial"]["reiman"]
    assert {entry["step"] for entry in card["timings"]} >= {"dataset survey", "train",
                                                             "train-no-adversarial", "compare"}

    # resumable: a second call skips every finished step
    capsys.readouterr()
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    # run, detector, generator, discriminator, refine, ablation, compare, sampler
    assert out.count("skipped") == 8
    again = load_checkpoint(work / "run" / "checkpoint_last.pt")
    assert again["step"] == run["step"] and len(again["history"]) == 1

    # the exported model refuses its own training galaxies in evaluate
    from astrodeblend.evaluate import evaluate

    with pytest.raises(DatasetError, match="training scenes of model"):
        evaluate(images, n=1, methods=["gan"], model=weights / "default.pt", split="train",
                 progress=False)

    # a detector stage from the installed default, whose generator it names
    # by hash, kept unchanged
    from astrodeblend.weights import default_model_path

    installed = load_checkpoint(default_model_path())["generator_sha256"]
    spec = json.loads(recipe.read_text())
    spec["detector"] = {**spec["detector"], "init_from": "default", "out": "det_default",
                        "generator_sha256": "0" * 64}
    with pytest.raises(SystemExit, match="expects"):
        tool.train_detector(spec, work, device="cpu", progress=False)
    spec["detector"]["generator_sha256"] = installed
    tool.train_detector(spec, work, device="cpu", progress=False)
    tuned = load_checkpoint(work / "det_default" / "checkpoint_last.pt")
    assert tuned["generator_sha256"] == installed
    assert tuned["train_config"]["model"]["generator_channels"] == 24   # the shipped networks

    # adversarial fine-tuning starts from the full checkpoint, discriminator included
    from astrodeblend.train import train

    result = train([work / "reiman.h5"], tmp_path / "tune", init_from=weights / "default_full.pt",
                   config={"adv_warmup_epochs": 0, "sample_every": 0}, epochs=1,
                   progress=False)
    assert result.history[0]["loss_d"] > 0 and result.history[0]["loss_g_l1"] > 0
    # or resumes it as it was (here: the refine stage, the generator kept)
    tune = tmp_path / "resumed"
    tune.mkdir()
    shutil.copy(weights / "default_full.pt", tune / "checkpoint_last.pt")
    result = train([work / "reiman.h5"], tune, epochs=2, resume=True, reschedule=True,
                   progress=False)
    assert len(result.history) == 2 and result.history[1]["loss_det"] > 0
    assert result.history[1]["loss_g_l1"] == 0


def test_ablation_starts_from_the_gan_runs_warm_up(tool, images, tmp_path, capsys):
    """Both runs train their warm-up with w_adv = 0: the ablation branches off the GAN run."""
    recipe_path = _recipe(tool, tmp_path / "recipe.json")
    recipe = json.loads(recipe_path.read_text())
    recipe["train"]["config"].update({"epochs": 2, "schedule_epochs": 2, "adv_warmup_epochs": 1,
                                      "adv_ramp_epochs": 0, "sample_every": 0})
    recipe_path.write_text(json.dumps(recipe))
    common = ["--recipe", str(recipe_path), "--work", str(tmp_path / "work"), "--images",
              str(images), "--device", "cpu", "--no-progress"]
    assert tool.main(["datasets", *common]) == 0
    assert tool.main(["train", *common]) == 0
    run_dir = tmp_path / "work" / "run"
    warm = load_checkpoint(run_dir / tool.WARMUP)
    run = load_checkpoint(run_dir / "checkpoint_last.pt")
    assert warm["epoch"] == 1 and run["epoch"] == 2
    assert run["history"][0]["w_adv"] == 0 < run["history"][1]["w_adv"]
    assert run["history"][1]["loss_d"] > 0
    capsys.readouterr()
    assert tool.main(["train", "--no-adversarial", *common]) == 0
    assert "starts from the GAN run's warm-up" in capsys.readouterr().out
    ablation = load_checkpoint(tmp_path / "work" / "run_noadv" / "checkpoint_last.pt")
    assert ablation["epoch"] == 2 and ablation["train_config"]["w_adv"] == 0
    np.testing.assert_equal(ablation["history"][0], warm["history"][0])  # the shared warm-up
    assert ablation["history"][1]["w_adv"] == 0 == ablation["history"][1]["loss_d"]
    assert ablation["generator_sha256"] != run["generator_sha256"]
    # the schedule is the run's: the same learning rate at the same epoch
    assert ablation["history"][1]["lr"] == run["history"][1]["lr"]


def test_full_checkpoint_over_the_limit_stays_in_work(tool, tmp_path):
    from astrodeblend._checkpoint import save_checkpoint
    from astrodeblend.models import ModelConfig, build_models

    cfg = ModelConfig(**TINY_MODEL)
    nets = build_models(cfg)
    work, weights = tmp_path / "work", tmp_path / "weights"
    (work / "run").mkdir(parents=True)
    weights.mkdir()
    (weights / "default_full.pt").write_bytes(b"stale")
    save_checkpoint(work / "run" / "checkpoint_last.pt",
                    {"format": "astrodeblend-checkpoint", "version": 1,
                     "model_config": cfg.to_dict(), "epoch": 1, "history": [],
                     "models": {k: m.state_dict() for k, m in nets.items()},
                     "optimizers": {"generator": {"state": {}, "param_groups": []}}})
    recipe = tool.merge(tool.load_recipe(), {"export": {"full_max_mb": 0.001, "from": "train",
                                                        "discriminator_from": None}})
    default, full, card = tool.export(recipe, work, weights=weights)
    assert full == work / "default_full.pt" and full.is_file()
    assert not (weights / "default_full.pt").exists()          # no stale copy left
    assert json.loads(card.read_text())["full_checkpoint"]["path"] == str(full)
    assert "sample_generator" not in load_checkpoint(default)["models"]
    stored = load_checkpoint(full)["models"]["discriminator"]
    for key, value in nets["discriminator"].state_dict().items():
        assert torch.equal(stored[key], value)


def test_smoke_and_shipped_recipe(tool):
    shipped = tool.load_recipe()
    smoke = tool.load_recipe(smoke=True)
    assert smoke["work"] == "work/smoke" and smoke["survey_images"]["limit"] == 500
    assert all(spec["n"] == 40 for spec in smoke["datasets"].values())
    assert smoke["train"]["config"]["epochs"] == 1
    # same networks and protocols, fewer scenes and epochs
    assert smoke["train"]["config"]["model"] == shipped["train"]["config"]["model"]
    assert set(shipped["datasets"]) == {"reiman", "physical", "survey"}
    assert shipped["train"]["data"] == ["reiman", "physical", "survey"]
    # the shipped schedule is fixed in the recipe, the ablation only drops the adversarial term
    config = shipped["train"]["config"]
    assert config["schedule_epochs"] == config["epochs"]
    assert shipped["ablation"]["config"] == {"w_adv": 0.0}
    from astrodeblend.train import TrainConfig

    TrainConfig.from_dict(config)
    TrainConfig.from_dict(shipped["sampler"]["config"])
    # the shipped model is the generator stage, from the detector stage, from
    # the first release's model (no refine stage: see the model card)
    assert shipped["export"]["from"] == "generator" and "refine" not in shipped
    assert "refine" not in smoke     # --smoke shortens the stages a recipe has, adds none
    # its full checkpoint takes a discriminator trained against that generator
    assert shipped["export"]["discriminator_from"] == "discriminator"
    assert shipped["discriminator"]["init_from"] == "generator"
    TrainConfig.from_dict({**shipped["discriminator"]["config"], "discriminator_only": True})
    assert shipped["generator"]["init_from"] == "detector"
    assert shipped["detector"]["init_from"] == "start"
    assert len(shipped["start"]["generator_sha256"]) == 64
    assert smoke["detector"]["config"]["epochs"] == 1
    assert smoke["generator"]["config"]["epochs"] == 1
    TrainConfig.from_dict(shipped["detector"]["config"])
    assert TrainConfig.from_dict(shipped["generator"]["config"]).w_adv == 0


def test_start_model_from_the_repository_history(tool, tmp_path):
    import subprocess

    recipe = tool.load_recipe()
    where = f"{recipe['start']['commit']}:{recipe['start']['path']}"
    try:
        known = subprocess.run(["git", "-C", str(tool.REPO), "cat-file", "-e", where],
                               capture_output=True).returncode == 0
    except OSError:
        known = False
    if not known:
        pytest.skip(f"no git history holding {where} (a shallow clone or an sdist)")
    path = tool.start_model(recipe, tmp_path)
    assert path == tmp_path / "start.pt"
    from astrodeblend._checkpoint import weights_hash

    assert (weights_hash(load_checkpoint(path)["models"]["generator"])
            == recipe["start"]["generator_sha256"])
    assert tool.stage_init(recipe, tmp_path, "start") == str(path)      # read once, then kept
    wrong = tool.merge(recipe, {"start": {"generator_sha256": "0" * 64}})
    with pytest.raises(SystemExit, match="the recipe starts from"):
        tool.start_model(wrong, tmp_path)
    missing = tool.merge(recipe, {"start": {"path": "no/such/file.pt"}})
    with pytest.raises(SystemExit, match="cannot read"):
        tool.start_model(missing, tmp_path / "other")


def test_binned_copies_average_linear_flux(tool, tmp_path):
    from PIL import Image

    source = tmp_path / "src"
    source.mkdir()
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[:, ::2] = 255                  # columns 0, 2, 4 white
    Image.fromarray(pixels).save(source / "123.png")
    Image.fromarray(pixels).save(source / "notes.png")    # not a galaxy id: ignored
    assert tool.bin_images(source, tmp_path / "out", factor=2) == 1
    binned = np.asarray(Image.open(tmp_path / "out" / "123.png"))
    assert binned.shape == (2, 3, 3)
    # half the light of a white pixel, stretched back: 0.5 ** (1 / 2.2) * 255
    assert np.all(binned == round(0.5 ** (1 / 2.2) * 255))
    assert tool.bin_images(source, tmp_path / "out", factor=2) == 0   # resumed: nothing to do


def test_export_takes_the_generator_of_another_checkpoint(tool, tmp_path):
    from astrodeblend._checkpoint import save_checkpoint, weights_hash
    from astrodeblend.models import ModelConfig, build_models

    cfg = ModelConfig(**TINY_MODEL)
    torch.manual_seed(0)
    run, other = build_models(cfg), build_models(cfg)
    with torch.no_grad():   # the generator's last layer starts at zero: make the two differ
        for p in other["generator"].parameters():
            p.add_(0.5)
    work, weights = tmp_path / "work", tmp_path / "weights"
    (work / "run").mkdir(parents=True)
    adam = torch.optim.Adam(run["generator"].parameters())
    run["generator"](torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)).sum().backward()
    adam.step()
    save_checkpoint(work / "run" / "checkpoint_last.pt",
                    {"format": "astrodeblend-checkpoint", "version": 1,
                     "model_config": cfg.to_dict(), "epoch": 1, "history": [],
                     "models": {k: m.state_dict() for k, m in run.items()},
                     "optimizers": {"generator": adam.state_dict()}})
    source = tmp_path / "other.pt"
    save_checkpoint(source, {"format": "astrodeblend-checkpoint", "version": 1,
                             "model_config": cfg.to_dict(), "epoch": 7,
                             "models": {"generator": other["generator"].state_dict()}})
    recipe = tool.merge(tool.load_recipe(), {"export": {"from": "train",
                                                        "discriminator_from": None}})
    default, full, card = tool.export(recipe, work, weights=weights, generator=source)
    shipped, resumable = load_checkpoint(default), load_checkpoint(full)
    for payload in (shipped, resumable):
        for key, value in other["generator"].state_dict().items():
            assert torch.equal(payload["models"]["generator"][key], value)
        for key, value in run["detector"].state_dict().items():
            assert torch.equal(payload["models"]["detector"][key], value)
        assert payload["generator_from"]["epochs"] == 7
    expected = weights_hash(other["generator"].state_dict())
    assert shipped["generator_sha256"] == resumable["generator_sha256"] == expected
    # the run's Adam moments belong to the run's generator: a fresh start, groups kept
    assert resumable["optimizers"]["generator"]["state"] == {}
    assert resumable["optimizers"]["generator"]["param_groups"] == adam.state_dict()["param_groups"]
    fresh = torch.optim.Adam(other["generator"].parameters())
    fresh.load_state_dict(resumable["optimizers"]["generator"])
    assert json.loads(card.read_text())["generator_from"]["generator_sha256"] == expected

    wider = ModelConfig(**dict(TINY_MODEL, generator_channels=12))
    save_checkpoint(source, {"format": "astrodeblend-checkpoint", "version": 1,
                             "model_config": wider.to_dict(), "epoch": 7,
                             "models": {"generator": build_models(wider)["generator"]
                                        .state_dict()}})
    with pytest.raises(SystemExit, match="generator_channels"):
        tool.export(recipe, work, weights=weights, generator=source)


def test_generator_stage_needs_its_starting_run(tool, tmp_path):
    recipe = tool.load_recipe()
    with pytest.raises(SystemExit, match="run the detector step first"):
        tool.train_generator(recipe, tmp_path / "work", device="cpu", progress=False)
