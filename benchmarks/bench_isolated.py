"""Isolated galaxies: how often is one galaxy returned as one source? (issues 12 and 13)

Galaxy Zoo galaxies of the test split (held out from the shipped model's
training), one per scene, in two forms:

- ``survey``: `astrodeblend.blend.make_scene` with ``protocol="survey"``,
  one galaxy (its neighbours cleaned away by ``blend_survey``), no star:
  linear flux, PSF, noise, a sky level and defects;
- ``display``: the galaxy's JPG as the ``reiman`` protocol crops it (the
  central 240 px of the 424 px image, area-averaged by 3 to 80 px), display
  values, neighbours and field stars included.

Each scene is deblended by the shipped model and by photutils segmentation
(`astrodeblend.baselines.SegmentationDeblender`); the table gives the share
of scenes answered by exactly one source, the mean number of sources and
their distribution.  ``display`` crops hold the neighbours the Galaxy Zoo
image holds, so more than one source is often right there; ``survey``
scenes hold the galaxy alone.  Exits quietly when the data folder is
absent::

    python benchmarks/bench_isolated.py [--n 150] [--seed 7] [--model PATH]
        [--methods astrodeblend,segmentation]
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxyzoo" / "images"
#: the ``reiman`` protocol's crop of a 424 px Galaxy Zoo image and its downscaling factor
CROP, FACTOR = 240, 3


def survey_scene(galaxy, seed):
    """A ``survey`` scene of one Galaxy Zoo galaxy, no star."""
    from astrodeblend.blend import make_scene

    return make_scene([galaxy], protocol="survey", seed=seed, n_galaxies=1, star_fraction=0.0,
                      image_fraction=1.0).blend


def display_crop(galaxy):
    """The galaxy's display image cropped and area-averaged as ``reiman`` does (80 px)."""
    from astrodeblend.image import GalaxyImage

    data = np.asarray(galaxy.data, dtype=np.float32)
    c, h, w = data.shape
    y0, x0 = (h - CROP) // 2, (w - CROP) // 2
    side = CROP // FACTOR
    crop = data[:, y0:y0 + CROP, x0:x0 + CROP].reshape(c, side, FACTOR, side, FACTOR)
    return GalaxyImage(crop.mean(axis=(2, 4)), meta=dict(galaxy.meta))


def count_sources(images, deblenders):
    """Number of sources each deblender returns on each image: ``{name: array}``."""
    return {name: np.array([deblender(image).n_sources for image in images])
            for name, deblender in deblenders}


def format_rows(title, counts):
    lines = [f"== {title}",
             f"{'method':<14}{'one source':>11}{'mean':>7}  sources: scenes"]
    for name, n in counts.items():
        spread = ", ".join(f"{k}: {v}" for k, v in enumerate(np.bincount(n)) if v)
        lines.append(f"{name:<14}{np.mean(n == 1):>11.1%}{np.mean(n):>7.2f}  {spread}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(IMAGES), help="Galaxy Zoo JPG folder")
    parser.add_argument("--n", type=int, default=150, help="galaxies (scenes per table)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default=None,
                        help="astrodeblend model (default: the shipped model)")
    parser.add_argument("--methods", default="astrodeblend,segmentation",
                        help="comma-separated, from: astrodeblend, segmentation")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - {"astrodeblend", "segmentation"})
    if unknown or not methods:
        parser.error(f"unknown methods {unknown}: choose from astrodeblend, segmentation")
    if not Path(args.images).is_dir():
        print(f"skipped: {args.images} is not available")
        return 0
    from astrodeblend.baselines import SegmentationDeblender
    from astrodeblend.evaluate import _galaxy_pool
    from astrodeblend.pipeline import Deblender

    warnings.simplefilter("ignore")  # photutils chatter; the numbers are what count
    start = time.perf_counter()
    dataset, _, pool = _galaxy_pool(args.images, "test")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(pool, size=min(args.n, len(pool)), replace=False)
    seeds = rng.integers(0, 2**31 - 1, size=len(picks))
    galaxies = [dataset[int(k)] for k in picks]
    makers = {"astrodeblend": lambda: Deblender.load(args.model),
              "segmentation": SegmentationDeblender}
    deblenders = [(name, makers[name]()) for name in methods]
    print(f"{len(galaxies)} Galaxy Zoo test galaxies from {args.images}, seed {args.seed}")
    survey = [survey_scene(g, int(s)) for g, s in zip(galaxies, seeds, strict=True)]
    print(format_rows("survey: one galaxy alone, linear, noise, sky, defects",
                      count_sources(survey, deblenders)), flush=True)
    display = [display_crop(g) for g in galaxies]
    print(format_rows("display: the reiman crop of one Galaxy Zoo JPG (its neighbours in it)",
                      count_sources(display, deblenders)))
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
