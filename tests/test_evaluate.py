import json
import math
from argparse import Namespace

import numpy as np
import pytest
from astropy.table import Table

from astrodeblend.errors import DatasetError, InvalidInputError, OutputExistsError
from astrodeblend.evaluate import METRICS, OUTPUT_FILES, evaluate, evaluate_from_cli

BASELINES = ("segmentation", "fluxshare")
SUMMARY_COLUMNS = ["method", "n_scenes", "n_galaxies", "detection_rate", "both_found",
                   "n_sources_mean", "n_true_mean", "spurious_mean", "star_detection_rate",
                   "isolated_single", "seconds_per_scene"]
SUMMARY_COLUMNS += [f"{metric}_{how}_{who}" for metric in METRICS
                    for who in ("a", "b", "all") for how in ("mean", "median")]
SCENE_COLUMNS = ["scene", "galaxy", "kind", "galaxy_id", "method", "found", "match_distance",
                 "n_sources", "seconds", "psnr", "ssim", "psnr_norm", "ssim_norm",
                 "flux_error", "centroid_error", "ellipticity_error"]


def test_end_to_end_writes_every_output(jpg_folder, tmp_path):
    out = tmp_path / "eval"
    table = evaluate(jpg_folder, protocol="reiman", n=4, seed=1, methods=BASELINES,
                     split="all", output_dir=out, progress=False)
    assert isinstance(table, Table)
    assert list(table["method"]) == list(BASELINES)
    assert sorted(table.colnames) == sorted(SUMMARY_COLUMNS)
    assert all(table["n_scenes"] == 4) and all(table["n_galaxies"] == 8)
    for column in ("detection_rate", "both_found"):
        assert np.all((table[column] >= 0) & (table[column] <= 1))
    assert np.all(table["seconds_per_scene"] > 0)
    assert np.all(np.isfinite(table["psnr_mean_all"]))
    assert table["psnr_mean_all"].description.startswith("PSNR")

    scenes = table.meta["scenes"]
    assert scenes.colnames == SCENE_COLUMNS
    assert len(scenes) == 4 * 2 * len(BASELINES)
    # every method ran on the same scenes and galaxies
    for method in BASELINES:
        rows = scenes[scenes["method"] == method]
        assert list(rows["galaxy"]) == ["A", "B"] * 4
        assert list(rows["galaxy_id"]) == list(scenes[scenes["method"] == "segmentation"]
                                                ["galaxy_id"])
    # a galaxy that was not found costs a flux error of -100 % and has no shape errors
    missed = scenes[~scenes["found"]]
    assert np.all(missed["flux_error"] == -1.0)
    assert np.all(np.isnan(missed["centroid_error"]))
    found = scenes[scenes["found"]]
    assert np.all(found["match_distance"] <= table.meta["max_distance"])
    rate = np.mean(scenes[scenes["method"] == "fluxshare"]["found"])
    assert table["detection_rate"][1] == pytest.approx(rate)

    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    document = json.loads((out / "evaluation.json").read_text())
    assert document["format"] == "astrodeblend-evaluation"
    assert document["protocol"] == "reiman" and document["n"] == 4
    assert [row["method"] for row in document["summary"]] == list(BASELINES)
    csv = Table.read(out / "evaluation.csv", format="ascii.csv")
    assert csv.colnames == table.colnames
    assert len(Table.read(out / "scenes.csv", format="ascii.csv")) == len(scenes)
    for name in ("gallery.png", "hist_psnr.png", "hist_flux_error.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with pytest.raises(OutputExistsError, match="evaluation.json"):
        evaluate(jpg_folder, n=1, methods=["fluxshare"], split="all", output_dir=out,
                 progress=False)
    again = evaluate(jpg_folder, protocol="reiman", n=4, seed=1, methods=BASELINES,
                     split="all", output_dir=out, overwrite=True, progress=False)
    # deterministic: same scenes, same scores
    np.testing.assert_allclose(again["psnr_mean_all"], table["psnr_mean_all"])


def test_same_scenes_whatever_n_and_methods(jpg_folder):
    small = evaluate(jpg_folder, protocol="physical", n=2, seed=3, methods=["fluxshare"],
                     split="all", progress=False).meta["scenes"]
    large = evaluate(jpg_folder, protocol="physical", n=3, seed=3, methods=BASELINES,
                     split="all", progress=False).meta["scenes"]
    large = large[large["method"] == "fluxshare"]
    assert list(large["galaxy_id"][:4]) == list(small["galaxy_id"])
    np.testing.assert_allclose(large["psnr"][:4], small["psnr"])


def test_perfect_method_scores_perfectly(jpg_folder):
    """A cheating deblender that returns the truth gets PSNR cap, SSIM 1, no flux error."""
    from astrodeblend.blend import make_scene
    from astrodeblend.io import read_galaxy_zoo
    from astrodeblend.result import DeblendResult

    class Oracle:
        name = "oracle"
        model_hash = ""

        def __init__(self):
            self.scene = None

        def __call__(self, image):
            sources = self.scene.components
            x, y = self.scene.centers.T
            catalog = DeblendResult.make_catalog(image, sources, x, y)
            return DeblendResult(image, sources, catalog, np.zeros(image.shape[1:], int))

    zoo = read_galaxy_zoo(jpg_folder)
    oracle = Oracle()
    rng = np.random.default_rng([0, 0])
    picks = rng.choice(np.arange(len(zoo)), size=2, replace=False)
    oracle.scene = make_scene([zoo[int(k)] for k in picks], protocol="reiman",
                              seed=int(rng.integers(0, 2**31 - 1)))
    table = evaluate(jpg_folder, protocol="reiman", n=1, methods=[oracle], split="all",
                     progress=False)
    row = table[0]
    assert row["method"] == "oracle"
    assert row["detection_rate"] == 1.0 and row["both_found"] == 1.0
    assert row["psnr_mean_all"] == 100.0
    assert row["ssim_mean_all"] == 1.0
    assert row["abs_flux_error_mean_all"] == 0.0
    assert row["centroid_error_mean_all"] == pytest.approx(0.0, abs=1e-9)
    assert math.isinf(table.meta["scenes"]["psnr"][0])


def test_bad_arguments(jpg_folder, tmp_path):
    with pytest.raises(InvalidInputError, match="split"):
        evaluate(jpg_folder, split="holdout", methods=["fluxshare"], n=1, progress=False)
    with pytest.raises(InvalidInputError, match="protocol"):
        evaluate(jpg_folder, protocol="nope", split="all", methods=["fluxshare"], n=1,
                 progress=False)
    with pytest.raises(InvalidInputError, match="method"):
        evaluate(jpg_folder, split="all", methods=["magic"], n=1, progress=False)
    with pytest.raises(InvalidInputError, match="n must be"):
        evaluate(jpg_folder, split="all", methods=["fluxshare"], n=0, progress=False)
    with pytest.raises(DatasetError, match="at least 2"):
        evaluate([np.ones((3, 32, 32))], split="all", methods=["fluxshare"], n=1,
                 progress=False)


def test_cli(jpg_folder, tmp_path, capsys):
    from astrodeblend.cli import main

    out = tmp_path / "cli"
    status = main(["evaluate", "--images", str(jpg_folder), "--protocol", "physical",
                   "--n", "2", "--methods", "fluxshare,segmentation", "--split", "all",
                   "--output-dir", str(out), "--no-progress"])
    assert status == 0
    text = capsys.readouterr().out
    assert "fluxshare" in text and "segmentation" in text and str(out) in text
    assert (out / "evaluation.csv").exists()
    # refusing to overwrite is an error with exit status 2
    assert main(["evaluate", "--images", str(jpg_folder), "--n", "1", "--methods",
                 "fluxshare", "--split", "all", "--output-dir", str(out),
                 "--no-progress"]) == 2
    args = Namespace(images=str(jpg_folder), protocol="reiman", n=1, seed=0, model=None,
                     methods="fluxshare", split="all", output_dir=str(out), device="cpu",
                     overwrite=True, no_progress=True)
    assert evaluate_from_cli(args) == 0


def test_test_split_is_held_out(jpg_folder):
    from astrodeblend.data import split_galaxies
    from astrodeblend.io import read_galaxy_zoo

    ids = read_galaxy_zoo(jpg_folder).ids
    test_ids = set(int(i) for i in split_galaxies(ids)["test"])
    if len(test_ids) < 2:
        with pytest.raises(DatasetError, match="split 'test'"):
            evaluate(jpg_folder, n=1, methods=["fluxshare"], progress=False)
    else:
        table = evaluate(jpg_folder, n=2, methods=["fluxshare"], progress=False)
        assert set(table.meta["scenes"]["galaxy_id"]) <= test_ids


def test_gan_method_table_shape(jpg_folder):
    table = evaluate(jpg_folder, protocol="reiman", n=1, methods=("gan", "fluxshare"),
                     split="all", device="cpu", progress=False)
    assert list(table["method"]) == ["gan", "fluxshare"]
    assert sorted(table.colnames) == sorted(SUMMARY_COLUMNS)
    assert len(table.meta["scenes"]) == 4
    assert table.meta["models"]["gan"]
    from astrodeblend.utils import resolve_precision

    assert table.meta["precision"] == {"gan": resolve_precision("auto", "cpu")}  # no baseline


@pytest.mark.slow
def test_real_galaxy_zoo_baselines(galaxy_zoo_dir):
    table = evaluate(galaxy_zoo_dir, protocol="reiman", n=20, methods=BASELINES,
                     progress=False)
    assert np.all(table["detection_rate"] > 0.3)
    assert np.all(table["psnr_mean_all"] > 15)


def test_survey_protocol_counts_stars_and_variable_sources(jpg_folder):
    table = evaluate(jpg_folder, protocol="survey", n=12, seed=3, methods=BASELINES,
                     split="all", progress=False)
    assert sorted(table.colnames) == sorted(SUMMARY_COLUMNS)
    scenes = table.meta["scenes"]
    assert set(scenes["kind"]) <= {"galaxy", "star"}
    rows = scenes[scenes["method"] == "segmentation"]
    per_scene = np.bincount(np.asarray(rows["scene"]), minlength=12)
    assert per_scene.max() <= 6 and len(set(per_scene.tolist())) > 1  # 0-4 galaxies + stars
    assert table["n_true_mean"][0] == pytest.approx(per_scene.mean())
    # image galaxies carry their id, profiles and stars -1
    from astrodeblend.io import read_galaxy_zoo

    ids = set(int(i) for i in read_galaxy_zoo(jpg_folder).ids)
    assert set(int(i) for i in rows["galaxy_id"]) <= ids | {-1}
    assert np.all(rows["galaxy_id"][rows["kind"] == "star"] == -1)
    assert np.all(np.isfinite(table["spurious_mean"]))
    assert "survey" in table.meta["metric_space"] or "noiseless" in table.meta["metric_space"]


def test_protocol_options_reach_the_scenes(jpg_folder):
    table = evaluate(jpg_folder, protocol="survey", n=4, seed=5, methods=["segmentation"],
                     split="all", progress=False,
                     protocol_options={"image_fraction": 1.0, "n_galaxies": 2,
                                       "star_fraction": 0.0, "n_bands": 3})
    scenes = table.meta["scenes"]
    assert len(scenes) == 8 and set(scenes["kind"]) == {"galaxy"}
    assert np.all(scenes["galaxy_id"] >= 100000)
    assert table.meta["protocol_options"]["image_fraction"] == 1.0


def _tiny_checkpoint(path, trained_ids=None):
    """A small untrained gan checkpoint, with a galaxy_split record of ``trained_ids``."""
    from astrodeblend._checkpoint import make_split_record, save_checkpoint
    from astrodeblend.models import ModelConfig, build_models

    cfg = ModelConfig(generator_channels=4, generator_depth=2, detector_channels=4,
                      detector_depth=2, discriminator_channels=4, discriminator_layers=2)
    nets = build_models(cfg)
    payload = {"format": "astrodeblend-checkpoint", "version": 1,
               "model_config": cfg.to_dict(),
               "models": {k: nets[k].state_dict() for k in ("generator", "detector")}}
    if trained_ids is not None:
        payload["galaxy_split"] = make_split_record(
            trained_ids, files=[{"name": "reiman.h5", "split": [0.8, 0.1, 0.1]}])
    return save_checkpoint(path, payload)


def test_training_galaxies_are_refused(jpg_folder, tmp_path, capsys):
    from astrodeblend.cli import main
    from astrodeblend.io import read_galaxy_zoo

    ids = sorted(int(i) for i in read_galaxy_zoo(jpg_folder).ids)
    model = _tiny_checkpoint(tmp_path / "model.pt", trained_ids=ids[:3] + [-1, 999999])
    with pytest.raises(DatasetError, match=r"3 of the 12 galaxies of split 'all' .* training "
                                           r"scenes of model .*model\.pt .*0\.8/0\.1/0\.1"):
        evaluate(jpg_folder, n=1, methods=["gan"], model=model, split="all", progress=False)
    # the CLI: one line on stderr, exit status 2, nothing written
    out = tmp_path / "refused"
    assert main(["evaluate", "--images", str(jpg_folder), "--model", str(model), "--split",
                 "all", "--methods", "gan,fluxshare", "--n", "1", "--output-dir", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-training-galaxies" in err
    assert not out.exists()
    # baselines alone are not the model's business
    evaluate(jpg_folder, n=1, methods=["fluxshare"], model=model, split="all", progress=False)
    # the explicit override scores them and says how many were training galaxies
    table = evaluate(jpg_folder, protocol="reiman", n=1, methods=["gan"], model=model,
                     split="all", device="cpu", progress=False, allow_training_galaxies=True)
    assert table.meta["training_galaxies"] == 3 and table["n_scenes"][0] == 1
    assert main(["evaluate", "--images", str(jpg_folder), "--model", str(model), "--split",
                 "all", "--methods", "gan", "--n", "1", "--output-dir", str(out),
                 "--device", "cpu", "--no-progress", "--allow-training-galaxies"]) == 0


def test_galaxies_outside_the_training_split_and_unknown_splits_pass(jpg_folder, tmp_path):
    from astrodeblend._checkpoint import load_checkpoint, training_galaxy_ids
    from astrodeblend.weights import default_model_path

    other = _tiny_checkpoint(tmp_path / "other.pt", trained_ids=[1, 2, 3])
    table = evaluate(jpg_folder, n=1, methods=["gan"], model=other, split="all", device="cpu",
                     progress=False)
    assert table.meta["training_galaxies"] == 0
    unknown = _tiny_checkpoint(tmp_path / "unknown.pt")
    assert training_galaxy_ids(load_checkpoint(unknown)) is None
    table = evaluate(jpg_folder, n=1, methods=["gan"], model=unknown, split="all",
                     device="cpu", progress=False)
    assert table.meta["training_galaxies"] == 0
    # the first shipped default model records no split: it is never refused
    if training_galaxy_ids(load_checkpoint(default_model_path())) is None:
        table = evaluate(jpg_folder, n=1, methods=["gan"], split="all", device="cpu",
                         progress=False)
        assert table.meta["training_galaxies"] == 0
