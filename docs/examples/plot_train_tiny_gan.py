"""
Train a tiny GAN on a CPU
=========================

The whole training workflow, in miniature: make a folder of isolated galaxy
images, build a training set of blended scenes from it with
:func:`astrodeblend.data.build_dataset` (the ``reiman`` protocol), train a
deliberately tiny generator, discriminator and centre detector for a few
epochs on the CPU with :func:`astrodeblend.train.train`, plot the losses,
and deblend a held-out scene with the checkpoint.

A real model needs thousands of galaxies and many epochs (:ref:`training`,
:ref:`model-card`); this one trains in seconds and only shows the
mechanics.  The same steps on the command line are::

    astrodeblend make-dataset --images galaxies/ --protocol reiman --n 48 --seed 0 --out tiny.h5
    astrodeblend train --data tiny.h5 --out runs/tiny --epochs 3 --batch-size 8 --device cpu
"""

# %%
# A folder of galaxy images
# -------------------------
# Forty generated galaxies (random Sersic profiles and colours), written as
# 120x120 RGB PNG files with a display stretch, like small Galaxy Zoo JPGs
# (file name = galaxy id).  Any folder of Galaxy Zoo JPGs or FITS cutouts
# works the same way.
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from astropy.modeling.models import Sersic2D
from PIL import Image

from astrodeblend.data import build_dataset, open_split
from astrodeblend.pipeline import Deblender
from astrodeblend.plotting import plot_training_history
from astrodeblend.train import TrainConfig, train

torch.manual_seed(0)
rng = np.random.default_rng(0)
workdir = Path(tempfile.mkdtemp(prefix="astrodeblend-train-"))
images = workdir / "galaxies"
images.mkdir()
yy, xx = np.mgrid[:120, :120]
for galaxy_id in range(100001, 100041):
    plane = Sersic2D(1.0, rng.uniform(6, 12), rng.uniform(0.8, 2.0), 59.5, 59.5,
                     rng.uniform(0.0, 0.6), rng.uniform(0, np.pi))(xx, yy)
    colour = rng.uniform(0.6, 1.0, 3)
    rgb = np.clip(plane[..., None] / plane.max() * colour, 0, 1) ** (1 / 2.2)
    Image.fromarray((255 * rgb).astype(np.uint8)).save(images / f"{galaxy_id}.png")
print(f"{len(list(images.iterdir()))} galaxy images in {images}")


# %%
# Build a training set
# --------------------
# Galaxies (not scenes) are split 80/10/10 into train, validation and test by
# a stable hash of their id, so no galaxy is in two splits.  To keep the
# example fast, the ``reiman`` crop is 120 pixels instead of 240, so that the
# scenes are 40x40 pixels instead of 80x80 (binning by 3 as usual).
dataset = workdir / "tiny.h5"
summary = build_dataset(images, dataset, protocol="reiman", n=48, seed=0,
                        split=(0.8, 0.1, 0.1), progress=False, crop=120)
print(summary)

# %%
# Train a tiny model
# ------------------
# A few thousand parameters instead of the default model's width; the
# adversarial loss is switched on after the first epoch.
config = TrainConfig(
    epochs=3, batch_size=8, lr=1e-3, seed=0, adv_warmup_epochs=1, adv_ramp_epochs=1,
    val_max_scenes=16, sample_every=0, amp=False,
    model={"image_size": 40, "generator_channels": 8, "generator_depth": 2, "detector_channels": 8,
           "detector_depth": 2, "discriminator_channels": 8, "discriminator_layers": 2},
)
run = train(dataset, workdir / "runs" / "tiny", config=config, device="cpu", progress=False)
print("run folder:", sorted(p.name for p in run.run_dir.iterdir()))
print(f"best validation PSNR {run.best_psnr:.2f} dB at epoch {run.best_epoch}")

# %%
# The losses
# ----------
# :func:`astrodeblend.plotting.plot_training_history` draws the curves that
# ``astrodeblend train`` writes to ``loss.png`` in the run folder.
#
# **What to expect from a model this small.**  Trained on 38 scenes for three
# epochs, it has not learned anything useful, and the curves say so: the
# generator's validation PSNR stays where the untouched blend already is
# (the dashed line), and the centre detector's recall stays at 0 (its heat
# map never reaches the detection threshold).  That is the point of this
# example: it shows the mechanics and the files, not a result.  The shipped
# default model saw 29,600 scenes for 7 epochs (85 CPU minutes,
# :ref:`model-card`); start from ``astrodeblend train`` on a few thousand
# Galaxy Zoo images for a model of your own.
fig = plot_training_history(run.history)
plt.show()
last = run.history[-1]
print(f"last epoch: validation PSNR {last['val_psnr']:.2f} dB (blend alone "
      f"{last['val_psnr_blend']:.2f} dB), detector recall {last['det_recall']:.2f}")

# %%
# Use the checkpoint
# ------------------
# A checkpoint loads like the default model (safely:
# ``torch.load(weights_only=True)``).  Here it deblends a scene of the test
# split, made of galaxies it never saw.  The scenes are display-stretched
# (made from PNGs), so the deblender runs in display mode.
#
# As the curves predicted, the tiny model fails, and the figure shows how:
# its detector finds no centre, so the deblender falls back on photutils'
# peaks (the ``detect:`` line of the result's history, printed below), which
# see one source where there are two galaxies; and its generator, a residual
# network (output = blend + a learned correction that starts near zero),
# returns that one source almost equal to the blend, leaving an empty
# residual.  A trained model finds both galaxies and gives each its own
# light (:ref:`deblending`, and the other examples of this gallery).
deblender = Deblender.load(run.checkpoint, device="cpu")
test = open_split(dataset, "test")
scene = test[0]
test.close()
result = deblender(scene["blend"], mode="display")
print(deblender)
print(result)
print(next(line for line in result.history if line.startswith("detect:")))


def show(ax, cube, title):
    ax.imshow(np.moveaxis(np.clip(cube, 0, 1), 0, -1), origin="lower")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


n_true = int(scene["n_sources"])
n_cols = 1 + max(n_true, result.n_sources)
fig, axes = plt.subplots(2, n_cols, figsize=(2.4 * n_cols, 5), layout="constrained")
show(axes[0, 0], scene["blend"], "test blend")
show(axes[1, 0], result.residual.data, "residual")
for k in range(n_cols - 1):
    if k < n_true:
        show(axes[0, k + 1], scene["truth"][k], f"truth {k + 1}")
    else:
        axes[0, k + 1].axis("off")
    if k < result.n_sources:
        show(axes[1, k + 1], result.source_image(k, full_frame=True).data,
             f"tiny model: source {k + 1}")
    else:
        axes[1, k + 1].axis("off")
plt.show()

# %%
# The example worked in a temporary folder; remove it.
shutil.rmtree(workdir)
