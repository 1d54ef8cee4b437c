"""Rebuild the default model shipped in ``astrodeblend/weights/``.

The default model was made with exactly these steps (see the model card in
``docs/model_card.rst``)::

    python tools/make_default_model.py datasets --images ../shared/data/galaxyzoo/images --out work/
    python tools/make_default_model.py train --data work/reiman.h5 work/physical.h5 --out work/run
    python tools/make_default_model.py sampler --data work/reiman.h5 --out work/sampler
    python tools/make_default_model.py export work/run/checkpoint_last.pt \
        --sampler work/sampler/checkpoint_last.pt

The shipped run was interrupted after epoch 2 of a 7-epoch schedule
(adversarial warm-up 5 epochs) to fit the CPU time available, and resumed
with ``--epochs 5`` and ``{"adv_warmup_epochs": 3, "adv_ramp_epochs": 1}``
(``train --resume --config``), then resumed with ``--epochs 7`` for two
fine-tuning epochs; ``default.json`` and the model card record the settings
and the validation history of every epoch.

``export`` keeps only what deblending needs (generator, detector, model
config, training settings and validation history), as plain data that
``torch.load(..., weights_only=True)`` accepts, and writes the model card
data to ``default.json``.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "astrodeblend" / "weights"

DATASETS = [("reiman", 25000, 11), ("physical", 12000, 12)]  # scenes, seed


def make_datasets(images, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for protocol, n, seed in DATASETS:
        subprocess.run([sys.executable, "-m", "astrodeblend", "make-dataset", "--images",
                        str(images), "--protocol", protocol, "--n", str(n), "--seed",
                        str(seed), "--out", str(out / f"{protocol}.h5")], check=True)


def train(data, out, epochs, batch_size, lr, config):
    command = [sys.executable, "-m", "astrodeblend", "train", "--data", *map(str, data),
               "--out", str(out), "--epochs", str(epochs), "--batch-size", str(batch_size),
               "--lr", str(lr), "--device", "auto", "--seed", "0"]
    if config:
        command += ["--config", str(config)]
    subprocess.run(command, check=True)


def train_sampler(data, out, epochs):
    config = Path(out).with_suffix(".json")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"sampler_only": True, "sample_every": 1}))
    subprocess.run([sys.executable, "-m", "astrodeblend", "train", "--data", str(data),
                    "--out", str(out), "--epochs", str(epochs), "--batch-size", "64",
                    "--lr", "2e-4", "--device", "auto", "--seed", "0", "--config",
                    str(config)], check=True)


def export(checkpoint, extra, sampler=None):
    import torch

    from astrodeblend._checkpoint import load_checkpoint, save_checkpoint, weights_hash

    payload = load_checkpoint(checkpoint)
    models = {name: payload["models"][name] for name in ("generator", "detector")}
    slim = {key: payload[key] for key in ("format", "version", "model_config", "train_config",
                                          "epoch", "history") if key in payload}
    if sampler:
        # the unconditional generator of `astrodeblend sample`, trained separately
        extra_models = load_checkpoint(sampler)["models"]
        models["sample_generator"] = extra_models["sample_generator"]
        slim["model_config"] = dict(slim["model_config"], with_sampler=True)
    slim["models"] = models
    slim["generator_sha256"] = weights_hash(models["generator"])
    save_checkpoint(WEIGHTS / "default.pt", slim, overwrite=True)
    card = {"name": "default", "generator_sha256": slim["generator_sha256"],
            "model_config": payload.get("model_config"),
            "train_config": payload.get("train_config"),
            "epochs": payload.get("epoch"), "history": payload.get("history"),
            "torch": torch.__version__}
    card.update(json.loads(extra) if extra else {})
    (WEIGHTS / "default.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    size = (WEIGHTS / "default.pt").stat().st_size / 2**20
    print(f"wrote {WEIGHTS / 'default.pt'} ({size:.1f} MiB) and default.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("datasets")
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("train")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--config", default=None)
    p = sub.add_parser("sampler")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p = sub.add_parser("export")
    p.add_argument("checkpoint")
    p.add_argument("--sampler", default=None, help="checkpoint with a sample_generator")
    p.add_argument("--card", default=None, help="JSON of extra model-card entries")
    args = parser.parse_args(argv)
    if args.step == "datasets":
        make_datasets(args.images, args.out)
    elif args.step == "train":
        train(args.data, args.out, args.epochs, args.batch_size, args.lr, args.config)
    elif args.step == "sampler":
        train_sampler(args.data, args.out, args.epochs)
    else:
        export(args.checkpoint, args.card, args.sampler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
