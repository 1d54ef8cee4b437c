"""
The GAN against a classic baseline
==================================

A deblender has to beat the classic methods to be worth its cost.  This
example blends two galaxies with the ``physical`` protocol (linear flux,
noise, known truth), deblends the blend with the default GAN model and with
:class:`~astrodeblend.baselines.SegmentationDeblender` (each pixel goes to
the source whose photutils segment it lies in), matches the sources to the
truth with :func:`~astrodeblend.metrics.match_sources`, and scores them with
:mod:`astrodeblend.metrics`.  ``astrodeblend evaluate`` does the same on
hundreds of scenes (:ref:`evaluation`).
"""

# %%
# A blend with known truth
# ------------------------
import matplotlib.pyplot as plt
import numpy as np
from astropy.modeling.models import Sersic2D

from astrodeblend import Deblender, SegmentationDeblender
from astrodeblend.blend import blend_physical
from astrodeblend.metrics import flux_error, match_sources, psnr, ssim

yy, xx = np.mgrid[:240, :240]
galaxies = []
for r_eff, n, ellip, theta, colour in [(18, 1.0, 0.55, 0.5, (0.6, 0.9, 1.2)),
                                       (12, 2.0, 0.2, 2.0, (1.2, 1.0, 0.8))]:
    plane = Sersic2D(1.0, r_eff, n, 119.5, 119.5, ellip, theta)(xx, yy)
    galaxies.append((np.asarray(colour)[:, None, None] * plane / plane.max()).astype(np.float32))
scene = blend_physical(galaxies, seed=11, flux_ratio=(0.5, 0.9), transform=False)
print(scene, "true centres:", np.round(scene.centers, 1).tolist())

# %%
# Deblend with both methods
# -------------------------
# Both return a :class:`~astrodeblend.result.DeblendResult`; both conserve
# flux (sources + residual = input).
methods = {"GAN (default model)": Deblender.load(device="cpu"),
           "segmentation baseline": SegmentationDeblender()}
results = {name: method(scene.blend) for name, method in methods.items()}
for name, result in results.items():
    total = result.sources.sum(axis=0) + result.residual.data
    print(f"{name}: {result.n_sources} sources, "
          f"max |sources + residual - input| = {np.abs(total - scene.blend.data).max():.1e}")

# %%
# Score them against the truth
# ----------------------------
# PSNR and SSIM on max-normalised images (the shape), flux error on the raw
# values (the photometry).  The truth is noiseless; the deblended sources
# carry their share of the noise.
rows = []
for name, result in results.items():
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    matches = match_sources(scene.centers, found, max_distance=5.0)
    for t, f in matches.pairs:
        pred, truth = result.sources[f], scene.components[t]
        rows.append((name, "AB"[t], psnr(pred, truth, normalize="max"),
                     ssim(pred, truth, normalize="max"), flux_error(pred, truth)))
    for t in matches.unmatched_true:
        rows.append((name, "AB"[t], np.nan, np.nan, np.nan))
print(f"{'method':24s} galaxy  PSNR (dB)   SSIM   flux error")
for name, galaxy, p, s, f in rows:
    print(f"{name:24s}   {galaxy}    {p:8.2f}  {s:6.3f}   {100 * f:+7.1f} %")

# %%
# Look at the sources
# -------------------
# Columns: the blend, then each method's source A and source B next to the
# truth.  Matched by position, so the columns line up even when a method
# orders its sources differently.


def stretch(cube, scale):
    plane = np.asarray(cube).mean(axis=0) / scale
    return np.sign(plane) * np.abs(plane) ** (1 / 2.2)


scale = np.percentile(scene.blend.data.mean(axis=0), 99.5)
fig, axes = plt.subplots(3, 3, figsize=(7.8, 7.8), layout="constrained")
axes[0, 0].imshow(stretch(scene.blend.data, scale), origin="lower", cmap="magma",
                  vmin=-0.2, vmax=1)
axes[0, 0].set_title("blend")
for j in range(2):
    axes[0, j + 1].imshow(stretch(scene.components[j], scale), origin="lower", cmap="magma",
                          vmin=-0.2, vmax=1)
    axes[0, j + 1].set_title(f"truth {'AB'[j]}")
for i, (name, result) in enumerate(results.items(), start=1):
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    matches = match_sources(scene.centers, found, max_distance=5.0)
    owner = dict((int(t), int(f)) for t, f in matches.pairs)
    axes[i, 0].imshow(stretch(result.residual.data, scale), origin="lower", cmap="magma",
                      vmin=-0.2, vmax=1)
    axes[i, 0].set_title(f"{name.split()[0]}: residual", fontsize=10)
    for j in range(2):
        if j in owner:
            axes[i, j + 1].imshow(stretch(result.sources[owner[j]], scale), origin="lower",
                                  cmap="magma", vmin=-0.2, vmax=1)
            axes[i, j + 1].set_title(f"{name.split()[0]}: {'AB'[j]}", fontsize=10)
        else:
            axes[i, j + 1].set_title(f"{name.split()[0]}: {'AB'[j]} missed", fontsize=10)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()
