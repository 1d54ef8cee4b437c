"""
Find the galaxies of a blend
============================

:func:`astrodeblend.detect.find_centers` detects sources with photutils
(threshold, connected pixels, multi-threshold deblending) on a
noise-weighted detection image and returns a catalog table and a
segmentation map.  Here it runs on a three-galaxy ``physical`` blend whose
true centres are known, and the detections are matched to the truth with
:func:`astrodeblend.metrics.match_sources`.
"""

# %%
# A blend of three galaxies with noise
# ------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from astropy.modeling.models import Sersic2D

from astrodeblend.blend import blend_physical
from astrodeblend.detect import background_and_noise, detection_image, find_centers
from astrodeblend.metrics import match_sources

yy, xx = np.mgrid[:240, :240]
galaxies = []
for r_eff, n, ellip, theta, colour in [(16, 1.0, 0.5, 0.6, (0.6, 0.9, 1.2)),
                                       (11, 2.5, 0.2, 2.0, (1.2, 1.0, 0.8)),
                                       (8, 1.5, 0.4, 1.1, (0.9, 1.0, 1.0))]:
    plane = Sersic2D(1.0, r_eff, n, 119.5, 119.5, ellip, theta)(xx, yy)
    galaxies.append((np.asarray(colour)[:, None, None] * plane / plane.max()).astype(np.float32))

scene = blend_physical(galaxies, seed=7, flux_ratio=(0.3, 0.8), shift=(40, 90))
print(scene)
print("true centres (x, y):", np.round(scene.centers, 1).tolist())

# %%
# Sky level, noise and the detection image
# ----------------------------------------
# :func:`~astrodeblend.detect.background_and_noise` is the one robust
# (sigma-clipped) sky estimate of the package; the detection image is the
# noise-weighted sum of the sky-subtracted bands.
background, noise = background_and_noise(scene.blend)
print("sky level per band:", np.round(background, 5), " noise per band:", np.round(noise, 5))
detection = detection_image(scene.blend)

# %%
# Detect and deblend
# ------------------
detections = find_centers(scene.blend, n_sigma=3.0, n_pixels=10)
catalog = detections.catalog
catalog["x_centroid"].info.format = ".2f"
catalog["y_centroid"].info.format = ".2f"
print(catalog["id", "x_centroid", "y_centroid", "area", "bbox_xmin", "bbox_xmax",
              "bbox_ymin", "bbox_ymax"])

found = np.column_stack([catalog["x_centroid"], catalog["y_centroid"]])
matches = match_sources(scene.centers, found, max_distance=3.0)
print(f"matched {len(matches.pairs)} of {scene.n_sources} galaxies; "
      f"offsets {np.round(matches.distances, 2).tolist()} px; "
      f"spurious detections: {len(matches.unmatched_found)}")

# %%
# Show the segmentation map and the centres
# -----------------------------------------
# Row 0 at the bottom (``origin="lower"``); centres are 0-based ``(x, y)``.
fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), layout="constrained")
stretched = np.sign(detection) * np.abs(detection) ** (1 / 2.2)
axes[0].imshow(stretched, origin="lower", cmap="gray")
axes[0].set_title("detection image")
axes[1].imshow(detections.segmap, origin="lower", cmap="tab10", interpolation="nearest",
               vmin=0, vmax=9)
axes[1].set_title(f"segmentation map ({len(catalog)} sources)")
axes[2].imshow(stretched, origin="lower", cmap="gray")
axes[2].plot(*scene.centers.T, "o", mfc="none", mec="lime", ms=12, label="truth")
axes[2].plot(found[:, 0], found[:, 1], "x", color="red", ms=9, label="find_centers")
axes[2].legend(loc="upper right", fontsize=8)
axes[2].set_title("centres")
for ax in axes:
    ax.set_xlabel("x (pixel)")
axes[0].set_ylabel("y (pixel)")
plt.show()
