"""
Three ways to blend two galaxies
================================

:mod:`astrodeblend.blend` makes blended scenes whose true components are
known, from images of isolated galaxies.  Here the same pair of galaxies is
blended with each of the three protocols of :ref:`blending`:

* ``paper``: B shifted 50 px to the right, pixel-wise maximum, 128x128;
* ``reiman``: B rotated, scaled, flipped and shifted, pixel-wise maximum,
  80x80;
* ``physical``: linear flux, sum of the components, noise on the blend.

The galaxies are generated with :class:`astropy.modeling.models.Sersic2D`
and rendered like Galaxy Zoo JPGs (424x424, three bands, display-stretched
values in [0, 1] with the header card ``ADBDISP``), so no data file is
needed.
"""

# %%
# Two galaxies rendered like Galaxy Zoo JPGs
# ------------------------------------------
# A is a bluish disc (Sersic index 1), B a redder, rounder bulge-dominated
# galaxy (index 2).  Display values are ``linear ** (1 / 2.2)``.
import matplotlib.pyplot as plt
import numpy as np
from astropy.modeling.models import Sersic2D

from astrodeblend import GalaxyImage
from astrodeblend.blend import make_scene

yy, xx = np.mgrid[:424, :424]


def jpg_like(r_eff, n, ellip, theta, colour):
    """A centred 3-band galaxy with display-stretched values, like a Galaxy Zoo JPG."""
    plane = Sersic2D(1.0, r_eff, n, 211.5, 211.5, ellip, theta)(xx, yy)
    linear = np.asarray(colour)[:, None, None] * plane / plane.max()
    display = np.clip(linear, 0, 1) ** (1 / 2.2)
    return GalaxyImage(display, bands=("R", "G", "B"), meta={"ADBDISP": True},
                       source="generated")


galaxy_a = jpg_like(40, 1.0, 0.5, 0.7, colour=(0.55, 0.75, 1.0))
galaxy_b = jpg_like(30, 2.0, 0.25, 2.0, colour=(1.0, 0.8, 0.6))
print(galaxy_a)


# %%
# Blend them three ways
# ---------------------
# :func:`~astrodeblend.blend.make_scene` dispatches to
# :func:`~astrodeblend.blend.blend_paper`,
# :func:`~astrodeblend.blend.blend_reiman` and
# :func:`~astrodeblend.blend.blend_physical`.  Every scene is a pure function
# of its inputs and the seed.
scenes = {protocol: make_scene([galaxy_a, galaxy_b], protocol=protocol, seed=4)
          for protocol in ("paper", "reiman", "physical")}
for protocol, scene in scenes.items():
    print(f"{protocol:9s} blend {scene.blend.shape}, components {scene.components.shape}, "
          f"centres (x, y) {np.round(scene.centers, 1).tolist()}")

# %%
# The physical protocol conserves light: the blend is the sum of the
# noiseless components plus noise.
physical = scenes["physical"]
noise = physical.blend.data - physical.components.sum(axis=0)
print(f"physical: blend - sum(components) has mean {noise.mean():.2e} "
      f"and standard deviation {noise.std():.2e}")


# %%
# Show them
# ---------
# Images are shown with ``origin="lower"``: row 0 at the bottom, the FITS
# orientation that astrodeblend uses everywhere.  The display scenes are
# already stretched; the physical scene is in linear flux, so it is shown
# with the same ``x ** (1 / 2.2)`` stretch.
def rgb(image, display):
    """(C, H, W) -> (H, W, 3) in [0, 1] for imshow."""
    data = np.clip(np.asarray(image, dtype=float), 0, None)
    if not display:
        data = (data / max(np.percentile(data, 99.9), 1e-12)) ** (1 / 2.2)
    return np.clip(np.moveaxis(data, 0, -1), 0, 1)


fig, axes = plt.subplots(3, 3, figsize=(8.4, 8.6), layout="constrained")
for row, (protocol, scene) in zip(axes, scenes.items(), strict=True):
    display = protocol != "physical"
    panels = [scene.blend.data, scene.components[0], scene.components[1]]
    titles = [f"{protocol}: blend", "truth A", "truth B"]
    for ax, data, title in zip(row, panels, titles, strict=True):
        ax.imshow(rgb(data, display), origin="lower")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].plot(*scene.centers.T, "+", color="cyan", ms=12, mew=1.5)
fig.suptitle("One pair of galaxies, three blending protocols (+ = true centres)")
plt.show()
