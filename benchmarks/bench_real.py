"""Real-galaxy benchmark: astrodeblend, photutils segmentation and scarlet2 (issue 13, point 5).

Every galaxy of every scene is a cleaned real HST / HSC / SDSS stamp
(`astrodeblend.blend.read_clean_stamps` on ``../shared/data/fits``), placed
by `astrodeblend.blend.blend_survey` with ``image_fraction=1`` (no
parametric galaxy; stars, PSF, noise, sky and defects as the ``survey``
protocol draws them).  Each method runs on the same scenes:

- ``astrodeblend``: `astrodeblend.pipeline.Deblender.load()` (shipped model,
  default flux mode);
- ``segmentation``: `astrodeblend.baselines.SegmentationDeblender`;
- ``scarlet2``: `Scarlet2Deblender` below (optional, when ``scarlet2`` is
  installed): the detections of `astrodeblend.detect.find_centers` (those of
  the segmentation baseline), one source per detection initialised from
  Gaussian moments, positive spectrum and morphology fitted with Adam.

Three tables: ``survey`` scenes (0-4 galaxies and maybe stars), pairs of
two real galaxies 6-24 px apart (``blend_survey`` with ``n_galaxies=2`` and
no star, scenes drawn until the separation falls in the range), and
isolated galaxies (``n_galaxies=1``, no star: one source is the right
answer, column ``isolated=1``; the galaxy lies anywhere in the frame, cut
by its edge too).  Scoring
reuses `astrodeblend.evaluate`: the same metric space (linear values over
the peak of the noiseless blend), `astrodeblend.metrics.match_sources`
within 4 px, and PSNR / SSIM / flux error per matched galaxy against its
noiseless truth.  "Detectable" repeats "all found" over the scenes whose
every galaxy's noiseless light alone peaks at a 3x3-aperture S/N of
``DETECTABLE_SNR`` or more: the draws also hold diffuse galaxies below the
noise that no method finds; "stars>=10" counts the stars found among those
whose light peaks as high.  ``--by-stamp`` adds, after each table, each
stamp's galaxies found and, in the isolated table, its scenes answered by
one source.  No stamp is drawn larger than it is in its image
(`astrodeblend.blend.blend_survey`'s ``max_zoom``, default 1: an enlarged
stamp's own noise becomes blobs of its noiseless truth); ``--max-zoom F``
allows F times, ``--max-zoom none`` any size (the draws of the figures
recorded before this default).
Exits quietly when the data folder is absent::

    python benchmarks/bench_real.py [--n 100] [--seed 0]
        [--methods astrodeblend,segmentation,scarlet2] [--scarlet2-steps 100]
        [--augment 1|2|4|8] [--no-pairs] [--no-isolated] [--by-stamp] [--max-zoom 1|F|none]
"""

import argparse
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

FITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fits"
MAX_DISTANCE = 4.0
PAIR_SEPARATION = (6.0, 24.0)
#: A galaxy is detectable when its noiseless light, alone, peaks at this signal-to-noise
#: ratio in a 3x3 aperture (band-combined as the deblender's detection image): twice the
#: deblender's ``min_snr``, so that noise does not decide.
DETECTABLE_SNR = 10.0
#: Every galaxy a real stamp; ``clean`` (the default) keeps only each stamp's central
#: segment, so the noise that `read_clean_stamps` puts in place of the neighbours stays
#: out of the noiseless truth.
SCENE_OPTIONS = {"image_fraction": 1.0, "clean": True}


class Scarlet2Deblender:
    """scarlet2 on the detections of `astrodeblend.detect.find_centers`.

    The sky level of each band (`astrodeblend.detect.background_and_noise`)
    is subtracted, the weights are ``1 / noise**2`` (0 on masked pixels),
    data and model share one narrow Gaussian PSF (``psf_sigma``), so sources
    are fitted as observed (the scenes carry no PSF image), and each source
    is rendered on the full frame.
    """

    name = "scarlet2"
    model_hash = ""

    def __init__(self, *, max_iter=100, n_sigma=3.0, n_pixels=10, psf_sigma=0.8):
        import scarlet2  # noqa: F401  (fail early when absent)
        from scarlet2.validation_utils import set_validation

        set_validation(False)
        self.max_iter = int(max_iter)
        self.n_sigma = float(n_sigma)
        self.n_pixels = int(n_pixels)
        self.psf_sigma = float(psf_sigma)

    def __call__(self, image):
        import jax.numpy as jnp
        from numpyro.distributions import constraints
        from scarlet2 import init
        from scarlet2.frame import Frame
        from scarlet2.module import Parameter, Parameters, relative_step
        from scarlet2.observation import Observation
        from scarlet2.psf import ArrayPSF, GaussianPSF
        from scarlet2.scene import Scene
        from scarlet2.source import Source

        from astrodeblend.detect import background_and_noise, find_centers
        from astrodeblend.image import as_galaxy_image
        from astrodeblend.result import DeblendResult

        image = as_galaxy_image(image)
        found = find_centers(image, n_sigma=self.n_sigma, n_pixels=self.n_pixels)
        catalog, segmap = found.catalog, np.asarray(found.segmap)
        x = np.asarray(catalog["x_centroid"], float) if len(catalog) else np.zeros(0)
        y = np.asarray(catalog["y_centroid"], float) if len(catalog) else np.zeros(0)
        sources = np.zeros((len(x), *image.shape), dtype=np.float32)
        if len(x):
            level, noise = background_and_noise(image)
            level = np.nan_to_num(level)[:, None, None]
            noise = np.where(np.isfinite(noise) & (noise > 0), noise, 1.0)[:, None, None]
            data = image.filled(0.0) - level
            bad = np.zeros(image.shape, bool)
            if image.mask is not None:
                bad = np.broadcast_to(np.asarray(image.mask, bool), image.shape)
            bad = bad | ~np.isfinite(data)
            weights = np.where(bad, 0.0, 1.0 / noise**2)
            data = np.where(bad, 0.0, data)
            # the same narrow Gaussian PSF for the data and the model: no deconvolution
            yy, xx = np.mgrid[-5:6, -5:6]
            kernel = np.exp(-(xx**2 + yy**2) / (2 * self.psf_sigma**2))
            kernel = np.repeat((kernel / kernel.sum())[None], image.shape[0], axis=0)
            obs = Observation(jnp.asarray(data), jnp.asarray(weights),
                              psf=ArrayPSF(jnp.asarray(kernel)))
            frame = Frame.from_observations(obs, model_psf=GaussianPSF(self.psf_sigma))
            with Scene(frame) as scene:
                for cx, cy in zip(x, y, strict=True):
                    center = jnp.array([cy, cx])  # scarlet2 centres are (y, x)
                    try:
                        spectrum, morph = init.from_gaussian_moments(obs, center, min_corr=0.99)
                    except (ValueError, IndexError):
                        spectrum = init.pixel_spectrum(obs, center)
                        morph = init.compact_morphology()
                    Source(center, spectrum, morph)
            with Parameters(scene):
                for i, source in enumerate(scene.sources):
                    Parameter(source.spectrum, name=f"spectrum:{i}",
                              constraint=constraints.positive,
                              stepsize=partial(relative_step, factor=0.05))
                    Parameter(source.morphology, name=f"morph:{i}",
                              constraint=constraints.positive, stepsize=0.1)
            fitted = scene.fit(obs, max_iter=self.max_iter, progress_bar=False)
            for i, source in enumerate(fitted.sources):
                sources[i] = np.asarray(obs.render(fitted.evaluate_source(source)))
        catalog = DeblendResult.make_catalog(image, sources, x, y)
        return DeblendResult(image, sources, catalog, segmap, flux_mode="model",
                             model_name=self.name,
                             history=[f"scarlet2 fit max_iter={self.max_iter}"])


def make_deblenders(names, *, scarlet2_steps=100, model=None, augment=None):
    """Return ``[(name, deblender)]``, leaving out (with a line) what is unavailable.

    ``model``: a checkpoint for ``astrodeblend`` instead of the shipped model;
    ``augment``: its symmetric copies per stamp (None: the deblender's default).
    """
    out = []
    for name in names:
        if name == "astrodeblend":
            from astrodeblend.pipeline import Deblender, default_model_path

            path = Path(model) if model else default_model_path()
            if not path.exists():
                print(f"astrodeblend left out: no model at {path}")
                continue
            options = {} if augment is None else {"augment": augment}
            out.append((name, Deblender.load(path, **options)))
        elif name == "segmentation":
            from astrodeblend.baselines import SegmentationDeblender

            out.append((name, SegmentationDeblender()))
        elif name == "scarlet2":
            try:
                out.append((name, Scarlet2Deblender(max_iter=scarlet2_steps)))
            except ImportError as exc:
                print(f"scarlet2 left out: {exc}")
        else:
            raise SystemExit(f"unknown method {name!r}")
    return out


def _scene(stamps, key, n_pick, failed, **options):
    """One `blend_survey` scene of real stamps drawn from ``default_rng(key)``, or None.

    A draw that `blend_survey` refuses (InvalidInputError) is recorded in
    ``failed`` and skipped.
    """
    from astrodeblend.blend import blend_survey
    from astrodeblend.errors import InvalidInputError

    rng = np.random.default_rng(key)
    picks = rng.choice(len(stamps), size=min(n_pick, len(stamps)), replace=False)
    seed = int(rng.integers(0, 2**31 - 1))
    try:
        scene = blend_survey([stamps[k] for k in picks], seed=seed, **SCENE_OPTIONS, **options)
    except InvalidInputError as exc:
        failed.append(f"blend_survey(seed={seed}, stamps {picks.tolist()}, {options}): {exc}")
        return None
    # which stamp each galaxy is (``components[j]['image']`` indexes the picks)
    scene.params["stamps"] = [stamps[k].source for k in picks]
    return scene


def survey_scenes(stamps, n, seed, failed):
    """``n`` survey scenes of real stamps (draw i: ``default_rng([seed, i])``)."""
    scenes, i = [], 0
    while len(scenes) < n:
        scene = _scene(stamps, [seed, i], 4, failed)
        i += 1
        if scene is not None:
            scenes.append(scene)
    return scenes


def pair_scenes(stamps, n, seed, failed):
    """``n`` scenes of two real galaxies, no star, 6-24 px apart."""
    scenes, i = [], 0
    while len(scenes) < n:
        scene = _scene(stamps, [seed, 1_000_003, i], 2, failed, n_galaxies=2, star_fraction=0.0)
        i += 1
        if scene is None:
            continue
        gap = float(np.hypot(*(scene.centers[0] - scene.centers[1])))
        if PAIR_SEPARATION[0] <= gap <= PAIR_SEPARATION[1]:
            scenes.append(scene)
    return scenes


def isolated_scenes(stamps, n, seed, failed):
    """``n`` scenes of one real galaxy each, no star, anywhere in the frame."""
    scenes, i = [], 0
    while len(scenes) < n:
        scene = _scene(stamps, [seed, 2_000_003, i], 1, failed, n_galaxies=1, star_fraction=0.0)
        i += 1
        if scene is not None and scene.params.get("isolated", False):
            scenes.append(scene)
    return scenes


def peak_snr(scene, j):
    """Peak 3x3-aperture signal-to-noise ratio of component ``j``'s noiseless light alone."""
    from scipy.ndimage import uniform_filter

    truth = np.asarray(scene.components[j], dtype=np.float64)
    sigma = np.broadcast_to(np.asarray(scene.params["sigma"], dtype=np.float64), len(truth))
    snr = sum(uniform_filter(plane, 3) * 9 / (3 * s) for plane, s in zip(truth, sigma,
                                                                          strict=True))
    return float(snr.max() / np.sqrt(len(truth)))


def score(scenes, deblenders):
    """Per-method summary dict, scored as `astrodeblend.evaluate` scores survey scenes."""
    from astrodeblend.evaluate import _scene_space, _score, _stat
    from astrodeblend.metrics import PSNR_CAP, match_sources

    for _, deblender in deblenders:  # untimed warm-up (imports, jit, caches)
        deblender(scenes[0].blend)
    table, per_galaxy = {}, {}
    for name, deblender in deblenders:
        all_found, single, spurious, seconds, star_found = [], [], [], [], []
        star_detectable = []
        found_detectable = []
        psnrs, ssims, fluxes = [], [], []
        per_galaxy[name] = {}
        stamp_rows = {}  # stamp -> [galaxies, found, isolated scenes, one source]
        for k, scene in enumerate(scenes):
            truth = np.asarray(scene.components, dtype=np.float64)
            centers = np.asarray(scene.centers, dtype=float).reshape(-1, 2)
            kinds = [c["kind"] for c in scene.params["components"]]
            start = time.perf_counter()
            result = deblender(scene.blend)
            seconds.append(time.perf_counter() - start)
            found_xy = (np.column_stack([np.asarray(result.catalog["x_centroid"], float),
                                         np.asarray(result.catalog["y_centroid"], float)])
                        if result.n_sources else np.zeros((0, 2)))
            usable = np.flatnonzero(np.isfinite(found_xy).all(axis=1))
            matches = match_sources(centers, found_xy[usable], max_distance=MAX_DISTANCE)
            partner = dict(zip(matches.pairs[:, 0].tolist(),
                               usable[matches.pairs[:, 1]].tolist(), strict=True))
            spurious.append(result.n_sources - len(partner))
            if scene.params.get("isolated", False):
                single.append(result.n_sources == 1)
            for j, component in enumerate(scene.params["components"]):
                if component["kind"] != "galaxy" or "stamps" not in scene.params:
                    continue
                row = stamp_rows.setdefault(scene.params["stamps"][component["image"]],
                                            [0, 0, 0, 0])
                row[0] += 1
                row[1] += j in partner
                if scene.params.get("isolated", False):
                    row[2] += 1
                    row[3] += result.n_sources == 1
            galaxies = [j for j, kind in enumerate(kinds) if kind == "galaxy"]
            if galaxies:
                all_found.append(all(j in partner for j in galaxies))
                if all(peak_snr(scene, j) >= DETECTABLE_SNR for j in galaxies):
                    found_detectable.append(all_found[-1])
            stars = [j for j, kind in enumerate(kinds) if kind == "star"]
            star_found += [j in partner for j in stars]
            star_detectable += [j in partner for j in stars
                                if peak_snr(scene, j) >= DETECTABLE_SNR]
            scale, linearise = _scene_space(scene)
            sources = result.sources if partner else None
            for j in galaxies:
                if j in partner:
                    m = _score(np.asarray(sources[partner[j]], np.float64), truth[j], scale,
                               linearise)
                    psnrs.append(min(m["psnr"], PSNR_CAP))
                    ssims.append(m["ssim"])
                    fluxes.append(abs(m["flux_error"]))
                    per_galaxy[name][k, j] = (psnrs[-1], ssims[-1])
        table[name] = {
            "all_found": _stat(all_found, "mean"), "n_multi": len(all_found),
            "found_detectable": _stat(found_detectable, "mean"),
            "n_detectable": len(found_detectable),
            "isolated_single": _stat(single, "mean"), "n_isolated": len(single),
            "star_found": _stat(star_found, "mean"), "n_stars": len(star_found),
            "star_detectable": _stat(star_detectable, "mean"),
            "n_stars_detectable": len(star_detectable),
            "spurious": _stat(spurious, "mean"),
            "psnr": _stat(psnrs, "mean"), "ssim": _stat(ssims, "mean"),
            "flux": _stat(fluxes, "median"), "n_matched": len(psnrs),
            "seconds": _stat(seconds, "mean"),
            "by_stamp": stamp_rows,
        }
    common = set.intersection(*(set(p) for p in per_galaxy.values()))
    for name, row in table.items():  # the same galaxies for every method
        row["psnr_common"] = _stat([per_galaxy[name][g][0] for g in common], "mean")
        row["ssim_common"] = _stat([per_galaxy[name][g][1] for g in common], "mean")
        row["n_common"] = len(common)
    return table


def format_table(table):
    """Text table of `score`'s summary."""
    head = (f"{'method':<14}{'all found':>10}{'detectable':>11}{'isolated=1':>11}{'stars':>7}"
            f"{'stars>=10':>10}{'spurious':>9}{'PSNR':>7}{'SSIM':>7}{'|dF| med':>9}"
            f"{'matched':>8}{'PSNR=':>7}{'SSIM=':>7}{'s/scene':>9}")
    lines = [head, "-" * len(head)]

    def cell(value, width, spec):
        return f"{'-':>{width}}" if np.isnan(value) else f"{value:>{width}{spec}}"

    for name, r in table.items():
        lines.append(f"{name:<14}{cell(r['all_found'], 10, '.1%')}"
                     f"{cell(r['found_detectable'], 11, '.1%')}"
                     f"{cell(r['isolated_single'], 11, '.1%')}{cell(r['star_found'], 7, '.0%')}"
                     f"{cell(r['star_detectable'], 10, '.0%')}"
                     f"{cell(r['spurious'], 9, '.2f')}{cell(r['psnr'], 7, '.1f')}"
                     f"{cell(r['ssim'], 7, '.3f')}{cell(r['flux'], 9, '.1%')}"
                     f"{r['n_matched']:>8d}{cell(r['psnr_common'], 7, '.1f')}"
                     f"{cell(r['ssim_common'], 7, '.3f')}{cell(r['seconds'], 9, '.2f')}")
    lines.append(f"(PSNR=, SSIM=: means over the {r['n_common']} galaxies every method matched; "
                 f"detectable: all found in the {r['n_detectable']} scenes whose every galaxy "
                 f"peaks at S/N >= {DETECTABLE_SNR:.0f}; stars>=10: the {r['n_stars_detectable']} "
                 "stars whose light peaks there)")
    return "\n".join(lines)


def format_by_stamp(table, folder):
    """Text table of `score`'s galaxies found, and isolated scenes given one source, by stamp."""
    names = sorted({stamp for r in table.values() for stamp in r["by_stamp"]})
    head = f"{'stamp':<52}{'galaxies':>9}" + "".join(
        f"{name[:12] + ' found':>19}{'isolated=1':>11}" for name in table)
    lines = [head, "-" * len(head)]
    for stamp in names:
        counts = [r["by_stamp"].get(stamp, [0, 0, 0, 0]) for r in table.values()]
        label = stamp.replace(str(folder).rstrip("/") + "/", "")
        cells = "".join(
            f"{c[1]:>12d} ({c[1] / c[0]:>4.0%})" + (f"{c[3]:>5d} ({c[3] / c[2]:>4.0%})" if c[2]
                                                     else f"{'-':>11}")
            for c in counts)
        lines.append(f"{label[:52]:<52}{counts[0][0]:>9d}{cells}")
    return "\n".join(lines)


def _zoom(text):
    """``--max-zoom``'s value: a positive factor, or None for 'none'."""
    if text.strip().lower() == "none":
        return None
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive or 'none', not {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", default=str(FITS), help="folder of real galaxy stamps")
    parser.add_argument("--n", type=int, default=100, help="scenes per table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="astrodeblend,segmentation,scarlet2",
                        help="comma-separated; unavailable ones are left out with a line")
    parser.add_argument("--scarlet2-steps", type=int, default=100,
                        help="Adam steps of the scarlet2 fit")
    parser.add_argument("--model", default=None,
                        help="checkpoint for astrodeblend (default: the shipped model)")
    parser.add_argument("--augment", type=int, choices=[1, 2, 4, 8], default=None,
                        help="astrodeblend's symmetric copies per stamp (default: its own, 2)")
    parser.add_argument("--no-pairs", action="store_true", help="skip the pairs table")
    parser.add_argument("--no-isolated", action="store_true",
                        help="skip the isolated galaxies' table")
    parser.add_argument("--max-zoom", type=_zoom, default=1.0,
                        help="draw no stamp larger than this factor times its own size "
                             "(blend_survey's max_zoom; default 1; 'none': no limit)")
    parser.add_argument("--by-stamp", action="store_true",
                        help="after each table, galaxies found (and isolated scenes answered by "
                             "one source) for each real stamp")
    args = parser.parse_args(argv)

    if not Path(args.fits).is_dir():
        print(f"skipped: {args.fits} is not available")
        return 0
    from astrodeblend.blend import read_clean_stamps

    SCENE_OPTIONS["max_zoom"] = args.max_zoom  # every table's scenes
    warnings.simplefilter("ignore")  # photutils / jax chatter; the numbers are what count
    start = time.perf_counter()
    stamps = read_clean_stamps(args.fits)
    deblenders = make_deblenders([m.strip() for m in args.methods.split(",") if m.strip()],
                                 scarlet2_steps=args.scarlet2_steps, model=args.model,
                                 augment=args.augment)
    if not deblenders:
        print("skipped: no method available")
        return 0
    print(f"{len(stamps)} cleaned real stamps from {args.fits}; {args.n} scenes per table, "
          f"seed {args.seed}; matched within {MAX_DISTANCE:.0f} px; PSNR/SSIM per matched "
          "galaxy, linear values over the noiseless blend peak (as astrodeblend.evaluate)"
          + (f"; stamps drawn at most {args.max_zoom:g}x their size" if args.max_zoom
             else "; stamps drawn at any size"))
    print("all found: scenes with galaxies whose every galaxy is matched; detectable: the same "
          "in scenes whose every galaxy's noiseless light alone peaks at a 3x3-aperture S/N of "
          f"{DETECTABLE_SNR:.0f} or more; isolated=1: one "
          "galaxy and no star answered by exactly one source; stars: stars matched (stars>=10: "
          f"those whose light alone peaks at S/N {DETECTABLE_SNR:.0f} or more); spurious: "
          "sources matched to nothing, per scene; PSNR, SSIM (means) and |dF| (median |flux "
          "error|) over matched galaxies; matched: their number")
    print("metric space: linear values over the peak of the noiseless blend, data_range 1 "
          "(astrodeblend.evaluate's survey space)")
    tables = [("survey scenes of real stamps (0-4 galaxies, stars)", survey_scenes)]
    if not args.no_pairs:
        tables.append((f"pairs of real galaxies {PAIR_SEPARATION[0]:.0f}-"
                       f"{PAIR_SEPARATION[1]:.0f} px apart, no star", pair_scenes))
    if not args.no_isolated:
        tables.append(("isolated real galaxies, one per scene, no star", isolated_scenes))
    for title, make in tables:
        failed = []
        scenes = make(stamps, args.n, args.seed, failed)
        n_gal = sum(c["kind"] == "galaxy" for s in scenes for c in s.params["components"])
        print(f"\n== {title}: {len(scenes)} scenes, {n_gal} galaxies")
        for line in failed:
            print(f"   draw refused and skipped: {line}")
        table = score(scenes, deblenders)
        print(format_table(table), flush=True)
        if args.by_stamp:
            print(format_by_stamp(table, args.fits), flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
