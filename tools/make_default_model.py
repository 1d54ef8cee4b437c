"""Rebuild the default model shipped in ``astrodeblend/weights/`` from its recipe.

The recipe is ``tools/default_recipe.json`` (datasets, training settings,
sampler, ablation, comparison, export); every step reads it, so the
repository holds the whole configuration.  One command runs it end to end,
and running it again resumes where it stopped (datasets are extended,
training runs resumed from ``checkpoint_last.pt``, finished steps skipped)::

    python tools/make_default_model.py all

Steps, each also on its own (same options)::

    python tools/make_default_model.py datasets --jobs 2   # reiman, physical, survey files
    python tools/make_default_model.py train      # the GAN and the detector
    python tools/make_default_model.py detector   # the detector alone, generator kept
    python tools/make_default_model.py generator  # then the generator alone, detector kept
    python tools/make_default_model.py discriminator  # a discriminator for that generator
    python tools/make_default_model.py refine     # recipe['refine'], when there is one
    python tools/make_default_model.py train --no-adversarial   # ablation: w_adv = 0 throughout
    python tools/make_default_model.py compare    # both runs on the same held-out scenes
    python tools/make_default_model.py sampler    # the unconditional generator (sample)
    python tools/make_default_model.py export     # default.pt, default_full.pt, default.json

``all`` runs datasets, train, detector, generator, discriminator, refine
(when the recipe has one), sampler and export;
``all --with-ablation`` also trains the ablation and runs ``compare``
before ``export``, so that ``default.json`` holds the ablation table of the
model card.

The detector stage (``recipe['detector']``) fine-tunes the centre detector
alone, starting from ``init_from``: ``'start'``, the first release's model
(``recipe['start']``: read with ``git show`` from the repository's history,
its generator named by sha256), ``'default'``, the installed model, or
``'run'``, the recipe's GAN run.  The generator stage
(``recipe['generator']``) then fine-tunes the generator alone from the
detector stage's networks, the detector kept.  The discriminator stage
(``recipe['discriminator']``) then trains a conditional discriminator
alone against that stage's frozen generator (``discriminator_only``), so
that the full checkpoint holds a discriminator that knows the shipped
generator's outputs.  A recipe may add a refine stage
(``recipe['refine']``, optional: the shipped recipe has none): the
detector fine-tuned alone once more, from the stage ``init_from`` names
(the generator stage), on files of its own (``recipe['refine']['data']``:
fresh scenes of the same protocols, new seeds), with settings of its own
(a higher ``det_pos_weight``); export can ship it (``export.from``), and its
full checkpoint then takes the discriminator stage's discriminator, trained
against the same generator (export checks the sha256).  The model card
says what such a stage measured and why it is not shipped.
``recipe['export']['from']`` says which run is shipped.  The shipped model
is the generator stage: ``all`` then skips the GAN run (``train`` still
runs it) and the sampler (the first release's is kept).

Data: the Galaxy Zoo images of ``recipe['images']`` (relative to the
repository root; ``--images`` overrides it).  Scenes of the training split
only use galaxies of the training split of `astrodeblend.data.split_galaxies`;
the ``survey`` file places Galaxy Zoo galaxies (linearised, each cleaned of
its neighbours by `astrodeblend.blend.blend_survey`) and parametric
profiles.  Cleaning a 424 px Galaxy Zoo image takes 1-4 s (photutils
deblending), so the survey scenes are made from copies binned 2x2 in linear
flux (``recipe['survey_images']``: 8-bit PNGs under the same file names,
hence the same galaxy ids and split; 5-8 times faster, and ``blend_survey``
shrinks the galaxies anyway).  The cleaned real stamps
(``recipe['held_out']``) are never used for training: they are the
held-out real galaxies of ``benchmarks/bench_real.py``.

Schedule: the recipe fixes ``epochs`` and ``schedule_epochs`` (and the
adversarial warm-up and ramp), so a resumed run keeps its learning-rate and
adversarial schedule; extend a run on purpose with ``astrodeblend train
--resume --epochs N [--reschedule]``.

Export: ``default.pt`` keeps what deblending needs (generator, detector,
the sampler's generator, configs, history, the galaxy split record), as
plain data for ``torch.load(weights_only=True)``; the full checkpoint of the
run (discriminator, optimiser, scaler and random states: resumable, for
adversarial fine-tuning; its discriminator and that network's optimiser
state from the run ``recipe['export']['discriminator_from']`` names, when
it does; the Adam state only of the networks
``recipe['export']['full_optimizer_state']`` lists, when it does) goes to
``default_full.pt`` beside it when it is
smaller than ``recipe['export']['full_max_mb']`` MiB, else to
``WORK/default_full.pt`` (the card says where).  ``default.json`` holds the
model-card data.

Smoke test: ``--smoke`` runs the same steps with the same architecture on a
few dozen scenes per dataset (the survey ones from the first 500 images),
one epoch each, in ``work/smoke/`` and exports to ``work/smoke/weights/``
(never over the shipped model).  Step timings are
appended to ``WORK/recipe_log.json``.

Several GPUs: ``torchrun --nproc_per_node 4 tools/make_default_model.py
train`` (only the ``train`` step runs under torchrun).
"""

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "astrodeblend" / "weights"
RECIPE = Path(__file__).resolve().with_name("default_recipe.json")

#: What ``--smoke`` changes in the recipe: a few dozen scenes, one epoch, same networks.
SMOKE = {
    "work": "work/smoke",
    "survey_images": {"limit": 500},
    "train": {"config": {"epochs": 1, "schedule_epochs": 1, "adv_warmup_epochs": 0,
                         "adv_ramp_epochs": 1, "batch_size": 8, "val_max_scenes": 8,
                         "sample_every": 1}},
    "detector": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                            "val_max_scenes": 8}},
    "generator": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                             "val_max_scenes": 8}},
    "discriminator": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                                 "val_max_scenes": 8}},
    "refine": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 8,
                          "val_max_scenes": 8}},
    "sampler": {"config": {"epochs": 1, "schedule_epochs": 1, "batch_size": 16}},
    "compare": {"n": 4},
}

#: Scenes of every dataset of the recipe under ``--smoke``.
SMOKE_SCENES = 40

#: Summary columns of `astrodeblend.evaluate.evaluate` kept in the ablation table.
COMPARE_COLUMNS = ("detection_rate", "both_found", "star_detection_rate", "isolated_single",
                   "spurious_mean", "psnr_mean_all", "ssim_mean_all",
                   "abs_flux_error_median_all", "seconds_per_scene")


# ------------------------------------------------------------------------ recipe
def merge(base, override):
    """Return ``base`` updated by ``override``, dicts merged key by key (deep)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_recipe(path=RECIPE, *, smoke=False):
    """Read a recipe file (JSON); ``smoke`` applies `SMOKE` on top."""
    recipe = json.loads(Path(path).read_text())
    if not smoke:
        return recipe
    # the stages the recipe has (the shipped one has no refine stage)
    recipe = merge(recipe, {key: value for key, value in SMOKE.items()
                            if key in recipe or key == "work"})
    for spec in recipe["datasets"].values():
        spec["n"] = SMOKE_SCENES
    return recipe


def _images(recipe, images):
    path = Path(images) if images else REPO / recipe["images"]
    if not path.is_dir():
        raise SystemExit(f"make_default_model: image folder {path} does not exist "
                         "(--images DIR, or recipe['images'] relative to the repository)")
    return path


def dataset_path(work, name):
    """Return the HDF5 file of dataset ``name`` in the work folder."""
    return Path(work) / f"{name}.h5"


def _log(work, step, seconds, **extra):
    """Append a step's wall time to ``WORK/recipe_log.json``."""
    path = Path(work) / "recipe_log.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries.append({"step": step, "seconds": round(seconds, 1),
                    "when": time.strftime("%Y-%m-%d %H:%M:%S"), **extra})
    path.write_text(json.dumps(entries, indent=2) + "\n")
    print(f"[{step}] {seconds:.1f} s")


def _main_rank():
    return int(os.environ.get("RANK", "0")) == 0


# ------------------------------------------------------------------------- steps
def bin_images(source, out, *, factor=2, limit=None):
    """Write ``factor`` x ``factor`` binned copies of display images as 8-bit PNGs.

    Pixels are averaged in linear flux (``value ** 2.2``) and stretched back,
    so the copies are what a camera with ``factor`` times larger pixels would
    show; file names (galaxy ids) are kept.  Existing copies are kept, so a
    rerun resumes.  Returns the number of images written.
    """
    import numpy as np
    from PIL import Image

    from astrodeblend.blend import DISPLAY_GAMMA
    from astrodeblend.io import list_galaxy_images

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids, paths = list_galaxy_images(source)
    written = 0
    for gid, path in list(zip(ids, paths, strict=True))[:limit]:
        target = out / f"{int(gid)}.png"
        if target.exists():
            continue
        with Image.open(path) as img:
            value = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
        h, w = (value.shape[0] // factor) * factor, (value.shape[1] // factor) * factor
        linear = (value[:h, :w] ** DISPLAY_GAMMA).reshape(h // factor, factor, w // factor,
                                                          factor, 3).mean(axis=(1, 3))
        pixels = np.clip(np.round(linear ** (1 / DISPLAY_GAMMA) * 255), 0, 255).astype(np.uint8)
        partial = target.with_name(f".{target.stem}.partial.png")
        Image.fromarray(pixels).save(partial)
        os.replace(partial, target)      # a kill leaves no half-written copy
        written += 1
    return written


def _build(folder, path, spec, split, progress):
    """Build one dataset (in a worker process with ``--jobs``); return its summary."""
    from astrodeblend.data import build_dataset

    start = time.perf_counter()
    summary = build_dataset(folder, path, protocol=spec["protocol"], n=int(spec["n"]),
                            seed=int(spec["seed"]), split=tuple(split),
                            dtype=spec.get("dtype", "float32"), progress=progress,
                            **spec.get("options", {}))
    return summary, time.perf_counter() - start


def make_datasets(recipe, work, *, images=None, progress=True, jobs=1):
    """Build (or resume) every dataset of the recipe (``jobs`` at once); return their paths."""
    folder = _images(recipe, images)
    Path(work).mkdir(parents=True, exist_ok=True)
    folders = {"images": folder}
    spec = recipe.get("survey_images")
    if spec and any(d.get("images") == "survey_images" for d in recipe["datasets"].values()):
        start = time.perf_counter()
        target = Path(work) / spec["out"]
        written = bin_images(folder, target, factor=int(spec["bin"]), limit=spec.get("limit"))
        _log(work, "survey images", time.perf_counter() - start, written=written)
        folders["survey_images"] = target
    tasks = {name: (folders[spec.get("images", "images")], dataset_path(work, name), spec,
                    recipe["split"], progress and jobs == 1)
             for name, spec in recipe["datasets"].items()}
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        # the slow survey file first, so that the others fill the other workers
        order = sorted(tasks, key=lambda name: tasks[name][2]["protocol"] != "survey")
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {name: pool.submit(_build, *tasks[name]) for name in order}
            results = {name: future.result() for name, future in futures.items()}
    else:
        results = {name: _build(*task) for name, task in tasks.items()}
    paths = {}
    for name, (summary, seconds) in results.items():
        print(summary)
        _log(work, f"dataset {name}", seconds, scenes=summary.counts)
        paths[name] = summary.path
    return paths


def _train_run(data, out, config, *, device, progress, label):
    """Start or resume one training run; skip it when it has all its epochs."""
    from astrodeblend._checkpoint import load_checkpoint
    from astrodeblend.train import train

    out = Path(out)
    last = out / "checkpoint_last.pt"
    resume = last.exists()
    if resume and int(load_checkpoint(last).get("epoch", 0)) >= int(config["epochs"]):
        print(f"[{label}] {out} already has its {config['epochs']} epoch(s): skipped")
        return last
    start = time.perf_counter()
    result = train([str(p) for p in data], out, config=config, device=device, resume=resume,
                   progress=progress)
    if _main_rank():
        last_row = result.history[-1] if result.history else {}
        _log(out.parent, label, time.perf_counter() - start, resumed=resume,
             epochs=len(result.history), val_psnr=last_row.get("val_psnr"),
             scenes_per_s=last_row.get("scenes_per_s"))
    return result.last_checkpoint


#: The GAN run's checkpoint at the end of its adversarial warm-up, where the ablation starts.
WARMUP = "checkpoint_warmup.pt"


def train_model(recipe, work, *, no_adversarial=False, device="auto", progress=True):
    """Train the GAN and the detector (``no_adversarial``: the w_adv = 0 ablation).

    Both runs train their first ``adv_warmup_epochs`` with ``w_adv = 0``, so
    they share them: the GAN run stops once at the end of its warm-up and
    keeps that checkpoint (`WARMUP`), and the ablation, when it has not
    started, starts from it.  The two runs then differ only in the
    adversarial term (same weights, data order and schedule at the branch),
    and the ablation costs only the epochs after the warm-up.
    """
    from astrodeblend._checkpoint import load_checkpoint

    spec = recipe["train"]
    config, run = spec["config"], Path(work) / spec["out"]
    data = [dataset_path(work, name) for name in spec["data"]]
    warm = int(config.get("adv_warmup_epochs") or 0)
    shared = run / WARMUP
    if no_adversarial:
        out = Path(work) / recipe["ablation"]["out"]
        # only an ablation that changes nothing but the adversarial term shares the warm-up
        same_warm_up = set(recipe["ablation"]["config"]) <= {"w_adv"}
        if warm and same_warm_up and shared.exists() \
                and not (out / "checkpoint_last.pt").exists():
            out.mkdir(parents=True, exist_ok=True)
            _copy_atomic(shared, out / "checkpoint_last.pt")
            print(f"[train-no-adversarial] starts from the GAN run's warm-up ({shared})")
        return _train_run(data, out, merge(config, recipe["ablation"]["config"]),
                          device=device, progress=progress, label="train-no-adversarial")
    if 0 < warm < int(config["epochs"]) and not shared.exists():
        # the warm-up alone first, on the run's own schedule
        first = merge(config, {"epochs": warm,
                               "schedule_epochs": config.get("schedule_epochs", config["epochs"])})
        last = _train_run(data, run, first, device=device, progress=progress,
                          label="train (warm-up)")
        if int(load_checkpoint(last).get("epoch", 0)) == warm:
            _copy_atomic(last, shared)
    return _train_run(data, run, config, device=device, progress=progress, label="train")


def _copy_atomic(source, target):
    """Copy ``source`` to a new file ``target`` atomically (`astrodeblend.io.atomic_write`)."""
    from astrodeblend.io import atomic_write

    with atomic_write(target) as partial:
        shutil.copyfile(source, partial)


def start_model(recipe, work):
    """The model the recipe's stages start from (``recipe['start']``), in ``WORK/start.pt``.

    It is read from the repository's history (``git show COMMIT:PATH``: the
    first release's ``default.pt``), since the installed default is the
    model this recipe makes; its generator must have the recipe's sha256.
    """
    import subprocess

    spec = recipe["start"]
    path = Path(work) / "start.pt"
    if not path.exists():
        where = f"{spec['commit']}:{spec['path']}"
        try:
            shown = subprocess.run(["git", "-C", str(REPO), "show", where], capture_output=True,
                                   check=False)
        except OSError as exc:
            raise SystemExit(f"make_default_model: cannot run git to read {where}: {exc}") \
                from None
        if shown.returncode:
            raise SystemExit(f"make_default_model: cannot read {where} from the repository's "
                             f"history: {shown.stderr.decode(errors='replace').strip()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(shown.stdout)
        partial.replace(path)
    _require_generator(path, spec["generator_sha256"], "the recipe starts from")
    return path


def _require_generator(path, expected, what):
    """Stop unless the generator of checkpoint ``path`` has the sha256 ``expected``."""
    from astrodeblend._checkpoint import load_checkpoint, weights_hash

    found = weights_hash(load_checkpoint(path)["models"]["generator"])
    if found != expected:
        raise SystemExit(f"make_default_model: the generator of {_shown(path)} has sha256 "
                         f"{found}, {what} {expected}")


def stage_init(recipe, work, init):
    """The checkpoint a stage starts from.

    ``init``: ``'start'`` (`start_model`), ``'default'`` (the installed
    model), ``'run'`` (the recipe's GAN run, ``recipe['train']``) or a
    stage's name.
    """
    if init == "start":
        return str(start_model(recipe, work))
    if init == "default":
        return init
    stage = "train" if init == "run" else init
    return str(Path(work) / recipe[stage]["out"] / "checkpoint_last.pt")


def train_detector(recipe, work, *, stage="detector", device="auto", progress=True):
    """Fine-tune the detector alone (``recipe[stage]``), the generator kept as it is.

    The run starts from the networks of ``recipe[stage]['init_from']``
    (``'start'``: the first release's model, `start_model`; ``'default'``:
    the installed model; ``'run'``: the recipe's GAN run; or a stage's
    name) with ``train_generator`` off, so its checkpoint holds that
    generator unchanged beside the new detector.  When ``generator_sha256``
    is given, the starting generator must have that hash.  ``stage``:
    ``'detector'`` (the detector stage) or ``'refine'`` (the detector
    fine-tuned again from the generator stage, on files of its own).
    """
    from astrodeblend.weights import model_path

    spec = recipe[stage]
    init = stage_init(recipe, work, spec["init_from"])
    out = Path(work) / spec["out"]
    if not (out / "checkpoint_last.pt").exists():
        if init != "default" and not Path(init).exists():
            raise SystemExit(f"make_default_model: the {stage} stage starts from {init}, "
                             f"which does not exist: run the {spec['init_from']} step first")
        expected = spec.get("generator_sha256")
        if expected:
            _require_generator(model_path(init), expected,
                               f"the recipe's {stage} stage expects")
    config = merge(spec["config"], {"init_from": init, "train_generator": False})
    data = [dataset_path(work, name) for name in spec.get("data", recipe["train"]["data"])]
    return _train_run(data, out, config, device=device, progress=progress, label=stage)


def train_generator(recipe, work, *, device="auto", progress=True):
    """Fine-tune the generator alone (``recipe['generator']``), the detector kept as it is.

    The run starts from the networks of ``recipe['generator']['init_from']``
    (a stage's name, ``'start'`` or ``'default'``) with ``train_detector``
    off, so its checkpoint holds that stage's detector unchanged beside the
    new generator: the generator learns the ``survey`` scenes (noise, PSF,
    stars, neighbours as their own sources) beside ``reiman`` and
    ``physical``.
    """
    spec = recipe["generator"]
    out = Path(work) / spec["out"]
    init = stage_init(recipe, work, spec["init_from"])
    if not (out / "checkpoint_last.pt").exists() and init != "default" \
            and not Path(init).exists():
        raise SystemExit(f"make_default_model: the generator stage starts from {init}, which "
                         f"does not exist: run the {spec['init_from']} step first")
    config = merge(spec["config"], {"init_from": init, "train_detector": False})
    data = [dataset_path(work, name) for name in spec.get("data", recipe["train"]["data"])]
    return _train_run(data, out, config, device=device, progress=progress, label="generator")


def train_discriminator(recipe, work, *, device="auto", progress=True):
    """Train a discriminator alone against a stage's frozen generator (``recipe['discriminator']``).

    The run starts from the networks of ``recipe['discriminator']['init_from']``
    (a stage's name) with ``discriminator_only`` on: the generator, the
    detector and the sampler stay as they are (the run checks that its
    generator's sha256 is the starting one's), and the discriminator learns
    to tell the truths from that generator's outputs.  Export takes it into
    the full checkpoint (``recipe['export']['discriminator_from']``).
    """
    from astrodeblend._checkpoint import load_checkpoint, weights_hash

    spec = recipe["discriminator"]
    out = Path(work) / spec["out"]
    init = stage_init(recipe, work, spec["init_from"])
    if not (out / "checkpoint_last.pt").exists() and not Path(init).exists():
        raise SystemExit(f"make_default_model: the discriminator stage starts from {init}, "
                         f"which does not exist: run the {spec['init_from']} step first")
    config = merge(spec["config"], {"init_from": init, "discriminator_only": True,
                                    "train_detector": False, "train_generator": False})
    data = [dataset_path(work, name) for name in spec.get("data", recipe["train"]["data"])]
    last = _train_run(data, out, config, device=device, progress=progress,
                      label="discriminator")
    _require_generator(last, weights_hash(load_checkpoint(init)["models"]["generator"]),
                       "the generator it was trained against has")
    return last


def exported_run(recipe, work, name=None):
    """The checkpoint of stage ``name``; by default the run ``export`` ships (``export.from``)."""
    name = name or recipe.get("export", {}).get("from", "train")
    return Path(work) / recipe[name]["out"] / "checkpoint_last.pt"


def train_sampler(recipe, work, *, device="auto", progress=True):
    """Train the unconditional sample generator (``sampler_only``)."""
    spec = recipe["sampler"]
    return _train_run([dataset_path(work, spec["data"])], Path(work) / spec["out"],
                      spec["config"], device=device, progress=progress, label="sampler")


def compare(recipe, work, *, images=None, device="auto", progress=True):
    """Evaluate the run and its ablation on the same held-out scenes: ``WORK/ablation.json``.

    Skipped when ``ablation.json`` already scores these settings and the
    same generator weights.
    """
    from astrodeblend._checkpoint import load_checkpoint
    from astrodeblend.evaluate import evaluate

    spec = recipe["compare"]
    folder = _images(recipe, images)
    runs = {"adversarial": recipe["train"]["out"], "no_adversarial": recipe["ablation"]["out"]}
    table = {"protocols": spec["protocols"], "n": spec["n"], "seed": spec["seed"],
             "split": spec["split"], "runs": {}}
    hashes = {}
    for label, out in runs.items():
        checkpoint = Path(work) / out / "checkpoint_last.pt"
        if checkpoint.exists():
            hashes[label] = load_checkpoint(checkpoint).get("generator_sha256")
    path = Path(work) / "ablation.json"
    if path.exists():
        done = json.loads(path.read_text())
        if ({k: done.get(k) for k in ("protocols", "n", "seed", "split")}
                == {k: table[k] for k in ("protocols", "n", "seed", "split")}
                and {k: v.get("generator_sha256") for k, v in done.get("runs", {}).items()}
                == hashes):
            print(f"[compare] {path} already scores these runs: skipped")
            return path
    start = time.perf_counter()
    for label, out in runs.items():
        checkpoint = Path(work) / out / "checkpoint_last.pt"
        if not checkpoint.exists():
            print(f"[compare] {checkpoint} does not exist: {label} left out")
            continue
        table["runs"][label] = {"checkpoint": str(checkpoint),
                                "generator_sha256": hashes[label]}
        for protocol in spec["protocols"]:
            result = evaluate(folder, protocol=protocol, n=int(spec["n"]), seed=int(spec["seed"]),
                              methods=["gan"], model=checkpoint, split=spec["split"],
                              device=device, output_dir=Path(work) / spec["out"] / label / protocol,
                              overwrite=True, progress=progress,
                              protocol_options=spec.get("options", {}).get(protocol))
            row = result[0]
            table["runs"][label][protocol] = {c: _plain(row[c]) for c in COMPARE_COLUMNS
                                              if c in result.colnames}
    path.write_text(json.dumps(table, indent=2) + "\n")
    _log(work, "compare", time.perf_counter() - start)
    return path


def _plain(value):
    value = float(value)
    return value if value == value else None   # NaN -> null


#: Model settings a generator taken from another checkpoint must share with the run's.
GENERATOR_SETTINGS = ("n_bands", "image_size", "generator_channels", "generator_depth",
                      "heatmap_sigma")


def _fresh_optimizers(payload, names):
    """Empty the Adam state of the networks ``names`` in ``payload`` (in place).

    Their parameter groups stay, so the checkpoint still resumes: Adam
    starts those moments afresh.
    """
    optimizers = dict(payload.get("optimizers") or {})
    for name in names:
        if name in optimizers:
            optimizers[name] = {"state": {}, "param_groups": optimizers[name].get("param_groups",
                                                                                   [])}
    payload["optimizers"] = optimizers


def _take_generator(payload, source):
    """Put the generator of checkpoint ``source`` into the run's ``payload`` (in place).

    Its optimiser state starts afresh (the run's Adam moments belong to the
    run's generator), so the full checkpoint still resumes.  Returns the
    record written to the card.
    """
    from astrodeblend._checkpoint import load_checkpoint, weights_hash

    other = load_checkpoint(source)
    mine, theirs = payload["model_config"], other["model_config"]
    differ = [k for k in GENERATOR_SETTINGS if mine.get(k) != theirs.get(k)]
    if differ:
        raise SystemExit(f"make_default_model: the generator of {source} differs from the "
                         f"run's in {', '.join(differ)}")
    payload["models"] = dict(payload["models"], generator=other["models"]["generator"])
    _fresh_optimizers(payload, ["generator"])
    payload["generator_sha256"] = weights_hash(other["models"]["generator"])
    record = {"path": _shown(source), "generator_sha256": payload["generator_sha256"],
              "epochs": other.get("epoch"), "train_config": other.get("train_config")}
    payload["generator_from"] = record
    return record


def _take_discriminator(payload, source):
    """Put the discriminator of checkpoint ``source`` and its optimiser state into ``payload``.

    ``source`` must have been trained against the payload's generator (the
    same sha256): a discriminator judges the outputs of the generator it
    learnt.  Returns the record written to the card (its validation
    accuracy: truths scored above the generator's outputs).
    """
    from astrodeblend._checkpoint import load_checkpoint, weights_hash

    if not Path(source).exists():
        raise SystemExit(f"make_default_model: {_shown(source)} does not exist: run the "
                         "discriminator step first")
    other = load_checkpoint(source)
    if weights_hash(other["models"]["generator"]) != weights_hash(
            payload["models"]["generator"]):
        raise SystemExit(f"make_default_model: the discriminator of {_shown(source)} was "
                         f"trained against another generator than the exported one")
    payload["models"] = dict(payload["models"], discriminator=other["models"]["discriminator"])
    optimizers = dict(payload.get("optimizers") or {})
    optimizers["discriminator"] = other["optimizers"]["discriminator"]
    payload["optimizers"] = optimizers
    last = (other.get("history") or [{}])[-1]
    record = {"path": _shown(source), "epochs": other.get("epoch"),
              "loss_d": last.get("loss_d"), "val_d_accuracy": last.get("val_d_accuracy")}
    if other.get("discriminator_from"):
        # an exported full checkpoint: its discriminator came from the run it records
        record = dict(other["discriminator_from"], via=_shown(source))
    payload["discriminator_from"] = record
    return record


def export(recipe, work, *, checkpoint=None, sampler=None, weights=WEIGHTS, card=None,
           generator=None):
    """Write ``default.pt``, the full checkpoint and ``default.json``; return their paths.

    ``generator``: a checkpoint whose generator replaces the run's (the run
    then contributes the detector, and the discriminator of the full
    checkpoint); recorded as ``generator_from`` in both files and the card.
    """
    import torch

    from astrodeblend._checkpoint import load_checkpoint, models_hash, save_checkpoint, weights_hash
    from astrodeblend.io import sha256_file

    work, weights = Path(work), Path(weights)
    weights.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint) if checkpoint else exported_run(recipe, work)
    sampler = Path(sampler) if sampler else work / recipe["sampler"]["out"] / "checkpoint_last.pt"
    payload = load_checkpoint(checkpoint)
    if not sampler.exists() and "sample_generator" in payload["models"]:
        sampler = checkpoint    # a fine-tuned model keeps the sample generator it started with
    taken = _take_generator(payload, Path(generator)) if generator else None
    judge = recipe.get("export", {}).get("discriminator_from")
    judged = _take_discriminator(payload, exported_run(recipe, work, judge)) if judge else None
    models = {name: payload["models"][name] for name in ("generator", "detector")}
    slim = {key: payload[key] for key in ("format", "version", "model_config", "train_config",
                                          "epoch", "history", "galaxy_split", "generator_from")
            if key in payload}
    if sampler.exists():
        # the unconditional generator of `astrodeblend sample`, trained separately
        models["sample_generator"] = load_checkpoint(sampler)["models"]["sample_generator"]
        slim["model_config"] = dict(slim["model_config"], with_sampler=True)
    else:
        print(f"[export] no sampler checkpoint {sampler}: default.pt has no sample generator")
    slim["models"] = models
    slim["generator_sha256"] = weights_hash(models["generator"])
    # what results carry in ADBMHASH: the generator and the detector together
    slim["model_sha256"] = models_hash({name: models[name] for name in ("generator", "detector")})
    if "deblender" in recipe.get("export", {}):
        # settings `Deblender.load` takes from the model (the detector's threshold)
        slim["deblender"] = dict(recipe["export"]["deblender"])
        payload["deblender"] = slim["deblender"]
    default = save_checkpoint(weights / "default.pt", slim, overwrite=True)

    # the full checkpoint: the run's own, resumable (copy it to RUN/checkpoint_last.pt);
    # only the optimiser states the recipe keeps (the others start afresh: a smaller file)
    keep = recipe.get("export", {}).get("full_optimizer_state")
    if keep is not None:
        _fresh_optimizers(payload, [name for name in payload.get("optimizers") or {}
                                    if name not in keep])
    limit = float(recipe.get("export", {}).get("full_max_mb", 30)) * 2**20
    full = save_checkpoint(work / "default_full.pt", payload, overwrite=True)
    if full.stat().st_size <= limit:
        full = Path(shutil.move(str(full), str(weights / "default_full.pt")))
    else:
        stale = weights / "default_full.pt"
        if stale.exists():
            stale.unlink()
        print(f"[export] the full checkpoint ({full.stat().st_size / 2**20:.1f} MiB) is over "
              f"{limit / 2**20:.0f} MiB: kept at {full}, not in the package")
    record = dict(payload.get("galaxy_split") or {})
    record.pop("train_ids", None)
    ablation = work / "ablation.json"
    document = {"name": recipe.get("name", "default"),
                "generator_sha256": slim["generator_sha256"],
                "model_sha256": slim["model_sha256"],
                "model_config": slim.get("model_config"),
                "train_config": payload.get("train_config"),
                "epochs": payload.get("epoch"), "history": payload.get("history"),
                "galaxy_split": record or None, "recipe": recipe, "generator_from": taken,
                "deblender": slim.get("deblender"),
                "full_checkpoint": {"path": _shown(full), "bytes": full.stat().st_size,
                                    "sha256": sha256_file(full), "discriminator_from": judged},
                "ablation": json.loads(ablation.read_text()) if ablation.exists() else None,
                "timings": (json.loads((work / "recipe_log.json").read_text())
                            if (work / "recipe_log.json").exists() else None),
                "torch": torch.__version__}
    document.update(json.loads(card) if card else {})
    card_path = weights / "default.json"
    card_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"wrote {default} ({default.stat().st_size / 2**20:.1f} MiB), {card_path.name} and "
          f"the full checkpoint {full} ({full.stat().st_size / 2**20:.1f} MiB)")
    return default, full, card_path


def _has_sampler(checkpoint):
    """Whether ``checkpoint`` (when it exists) holds a sample generator of its own."""
    from astrodeblend._checkpoint import load_checkpoint

    return Path(checkpoint).exists() and "sample_generator" in load_checkpoint(
        checkpoint).get("models", {})


def _shown(path):
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- CLI
def main(argv=None):
    """Run one step of the recipe, or all of them; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--recipe", default=str(RECIPE), help="recipe JSON (default: %(default)s)")
    common.add_argument("--work", default=None, help="work folder (default: recipe['work'])")
    common.add_argument("--images", default=None, help="Galaxy Zoo image folder "
                        "(default: recipe['images'], relative to the repository)")
    common.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    common.add_argument("--smoke", action="store_true",
                        help="a few dozen scenes and one epoch per step, in work/smoke/")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    common.add_argument("--jobs", type=int, default=1,
                        help="datasets built at once, one process each (default: 1)")
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("all", parents=[common], help="datasets, train, sampler, export")
    p.add_argument("--with-ablation", action="store_true",
                   help="also train the no-adversarial ablation and compare both runs")
    p.add_argument("--weights", default=None, help="export folder (default: the package's, "
                   "or WORK/weights with --smoke)")
    sub.add_parser("datasets", parents=[common], help="build or resume the datasets")
    p = sub.add_parser("train", parents=[common], help="train or resume the GAN and detector")
    p.add_argument("--no-adversarial", action="store_true",
                   help="the ablation: w_adv = 0 for the whole run, in recipe['ablation']['out']")
    sub.add_parser("detector", parents=[common], help="fine-tune the detector alone from "
                   "recipe['detector']['init_from'] (the generator kept)")
    sub.add_parser("generator", parents=[common], help="fine-tune the generator alone from "
                   "recipe['generator']['init_from'] (the detector kept)")
    sub.add_parser("refine", parents=[common], help="fine-tune the detector alone again "
                   "from recipe['refine']['init_from'] (the generator kept)")
    sub.add_parser("discriminator", parents=[common], help="train a discriminator alone "
                   "against the frozen generator of recipe['discriminator']['init_from']")
    sub.add_parser("sampler", parents=[common], help="train the unconditional generator")
    sub.add_parser("compare", parents=[common], help="run and ablation on the same held-out "
                   "scenes (WORK/ablation.json)")
    p = sub.add_parser("export", parents=[common], help="write default.pt, the full checkpoint "
                       "and default.json")
    p.add_argument("--checkpoint", default=None, help="run checkpoint (default: the last "
                   "checkpoint of recipe['export']['from'], the detector stage or the GAN run)")
    p.add_argument("--sampler", default=None, help="checkpoint with a sample_generator")
    p.add_argument("--generator-from", default=None, help="checkpoint whose generator replaces "
                   "the run's (same generator settings; recorded in the card)")
    p.add_argument("--card", default=None, help="JSON of extra model-card entries")
    p.add_argument("--weights", default=None, help="export folder (default: the package's, "
                   "or WORK/weights with --smoke)")
    args = parser.parse_args(argv)

    recipe = load_recipe(args.recipe, smoke=args.smoke)
    work = Path(args.work or recipe["work"])
    progress = not args.no_progress
    weights = getattr(args, "weights", None) or (work / "weights" if args.smoke else WEIGHTS)
    started = time.perf_counter()
    if args.step in ("datasets", "all"):
        make_datasets(recipe, work, images=args.images, progress=progress, jobs=args.jobs)
    # the GAN run: unless the recipe ships a detector fine-tuned from the shipped model
    needs_run = ("detector" not in recipe or recipe["detector"]["init_from"] == "run"
                 or recipe.get("export", {}).get("from", "train") == "train")
    if args.step == "train" or (args.step == "all" and needs_run):
        train_model(recipe, work, no_adversarial=getattr(args, "no_adversarial", False),
                    device=args.device, progress=progress)
    if args.step == "detector" or (args.step == "all" and "detector" in recipe):
        train_detector(recipe, work, device=args.device, progress=progress)
    if args.step == "generator" or (args.step == "all" and "generator" in recipe):
        train_generator(recipe, work, device=args.device, progress=progress)
    if args.step == "discriminator" or (args.step == "all" and "discriminator" in recipe):
        train_discriminator(recipe, work, device=args.device, progress=progress)
    if args.step == "refine" or (args.step == "all" and "refine" in recipe):
        train_detector(recipe, work, stage="refine", device=args.device, progress=progress)
    if args.step == "all" and args.with_ablation:
        train_model(recipe, work, no_adversarial=True, device=args.device, progress=progress)
    if args.step == "compare" or (args.step == "all" and args.with_ablation):
        compare(recipe, work, images=args.images, device=args.device, progress=progress)
    if args.step == "sampler" or (args.step == "all" and not _has_sampler(
            exported_run(recipe, work))):
        train_sampler(recipe, work, device=args.device, progress=progress)
    if args.step in ("export", "all") and _main_rank():
        export(recipe, work, checkpoint=getattr(args, "checkpoint", None),
               sampler=getattr(args, "sampler", None), weights=weights,
               card=getattr(args, "card", None),
               generator=getattr(args, "generator_from", None))
    if args.step == "all":
        _log(work, "all", time.perf_counter() - started, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
