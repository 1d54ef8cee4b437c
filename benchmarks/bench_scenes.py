"""Scene-pipeline targets of issue 12, measured on generated scenes and real FITS.

Generated scenes (astropy.modeling Sersic profiles, Gaussian PSF, a sky
level with a mild gradient, Gaussian noise) in a 96 px frame, the default
model against photutils segmentation (``--method segmentation``):

- sky bias on pure noise (mean over frames, in units of the noise);
- isolated galaxies anywhere in the frame: exactly one source, flux error
  (also at peak S/N 40);
- pairs 6-24 px apart: both found (within 4 px), flux errors;
- a galaxy and a star 6-24 px apart, and 24-40 px apart (the star in a detection
  group of its own): both found (within 3 px), the star inside the frame;
- a blue and a red galaxy 10 px apart in 3 and 5 bands (``--n`` scenes
  each): per-band flux errors;
- a 10x20 NaN block on a galaxy: totals, finite and zero masked pixels;
- one galaxy under a masked block (6-14 x 8-24 px, on or beside its core):
  one source, found within 3 px;
- a galaxy larger than its cutout: the sky level's error and the noise
  (in noise units), sources, flux error against its light in the frame;
- a smooth 500 px Sersic galaxy with noise: source count, largest jump
  between neighbouring pixels of the source less the truth (smoothed), in
  units of the pixel noise, beside the same statistic on the input's noise;
- a 2048x2048x3 frame of 60 galaxies through the whole CLI: galaxies found,
  time, peak RSS of that process, output size against the input; the same
  for 40 large galaxies (effective radii 15-45 px, their models' stamps
  hundreds of pixels wide); and a crowded 4096x4096 frame of 600 galaxies,
  the default model beside ``--method segmentation``.

Real FITS (``../shared/data/fits`` and a Galaxy Zoo JPG, skipped when absent):
number of sources against photutils (`~astrodeblend.detect.find_centers`),
output file size against the input, time, peak RSS, and the bright light
no source took (`residual_peaks`: blobs of the residual above 20 sigma).

    python benchmarks/bench_scenes.py [--n 100] [--flux weighted|conserve|model]
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.modeling.models import Sersic2D
from scipy.ndimage import gaussian_filter

from astrodeblend.baselines import SegmentationDeblender
from astrodeblend.detect import estimate_sky
from astrodeblend.footprints import FLUX_MODES
from astrodeblend.pipeline import Deblender

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def galaxy(shape, x, y, *, r_eff, n, ellip, theta, colour, fwhm):
    """Noiseless ``(C, H, W)`` Sersic galaxy convolved with a Gaussian PSF, peak 1."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    plane = gaussian_filter(Sersic2D(1.0, r_eff, n, x, y, ellip, theta)(xx, yy), fwhm / 2.355)
    plane /= plane.max()
    return (np.asarray(colour, dtype=np.float64)[:, None, None] * plane[None]).astype(np.float32)


def random_galaxy(rng, shape, x, y, n_bands, colour=None):
    colour = rng.uniform(0.5, 1.5, n_bands) if colour is None else colour
    return galaxy(shape, x, y, r_eff=rng.uniform(2, 7), n=rng.uniform(0.5, 3),
                  ellip=rng.uniform(0, 0.6), theta=rng.uniform(0, np.pi), colour=colour,
                  fwhm=rng.uniform(1.5, 3.0))


def observe(rng, components, *, noise=1.0, sky=5.0):
    """Add a sky with a mild gradient and Gaussian noise to the sum of the components."""
    _, c, h, w = components.shape
    xx = np.arange(w)[None, :]
    sky_plane = sky + 0.002 * noise * (xx - w / 2)
    return (components.sum(0) + sky_plane[None] + rng.normal(0, noise, (c, h, w))
            ).astype(np.float32)


def match(result, centers, max_distance=4.0):
    """Index of the found source nearest each true centre (-1 beyond ``max_distance``)."""
    xy = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    out = []
    for cx, cy in centers:
        if len(xy) == 0:
            out.append(-1)
            continue
        d = np.hypot(xy[:, 0] - cx, xy[:, 1] - cy)
        out.append(int(d.argmin()) if d.min() <= max_distance else -1)
    return out


def band_flux(result, i):
    return result.cutouts[i].sum(axis=(1, 2), dtype=np.float64)


def sky_bias(n):
    rng = np.random.default_rng(0)
    levels = [float(estimate_sky(rng.normal(0, 1, (1, 96, 96))).level.mean()) for _ in range(n)]
    return np.mean(levels), np.std(levels) / np.sqrt(n)


def isolated(methods, n, *, snr=None, size=96):
    rng = np.random.default_rng(1)
    stats = {name: {"one": 0, "err": []} for name in methods}
    for _ in range(n):
        x, y = rng.uniform(10, size - 10, 2)
        comp = random_galaxy(rng, (size, size), x, y, 3)
        comp *= (snr or rng.uniform(10, 200))
        blend = observe(rng, comp[None])
        for name, method in methods.items():
            result = method(blend)
            j = match(result, [(x, y)])[0]
            stats[name]["one"] += result.n_sources == 1 and j == 0
            if j >= 0:
                stats[name]["err"].append(band_flux(result, j).sum() / comp.sum() - 1)
    return stats


def pairs(methods, n, *, size=96):
    rng = np.random.default_rng(2)
    stats = {name: {"both": 0, "err": []} for name in methods}
    for _ in range(n):
        sep, angle = rng.uniform(6, 24), rng.uniform(0, 2 * np.pi)
        x, y = rng.uniform(20, size - 20, 2)
        centers = [(x, y), (x + sep * np.cos(angle), y + sep * np.sin(angle))]
        comps = np.stack([random_galaxy(rng, (size, size), cx, cy, 3) * rng.uniform(10, 200)
                          for cx, cy in centers])
        blend = observe(rng, comps)
        for name, method in methods.items():
            result = method(blend)
            found = match(result, centers)
            stats[name]["both"] += min(found) >= 0 and found[0] != found[1]
            for t, j in enumerate(found):
                if j >= 0:
                    stats[name]["err"].append(band_flux(result, j).sum() / comps[t].sum() - 1)
    return stats


def stars(methods, n, *, size=96, separation=(6, 24), seed=6):
    """A galaxy and a star (Gaussian PSF) ``separation`` px apart, the star 0.1-1 times as bright.

    The star lies at least 6 px inside the frame.
    """
    rng = np.random.default_rng(seed)
    stats = {name: {"both": 0} for name in methods}
    yy, xx = np.mgrid[:size, :size]
    for _ in range(n):
        sx = sy = -1.0
        while not (6 <= sx <= size - 7 and 6 <= sy <= size - 7):
            sep, angle = rng.uniform(*separation), rng.uniform(0, 2 * np.pi)
            x, y = rng.uniform(20, size - 20, 2)
            sx, sy = x + sep * np.cos(angle), y + sep * np.sin(angle)
        peak = rng.uniform(20, 200)
        fwhm = rng.uniform(1.5, 3.0)
        star = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * (fwhm / 2.355) ** 2))
        comps = np.stack([random_galaxy(rng, (size, size), x, y, 3) * peak,
                          rng.uniform(0.1, 1.0) * peak * rng.uniform(0.5, 1.5, 3)[:, None, None]
                          * star[None]]).astype(np.float32)
        blend = observe(rng, comps)
        for name, method in methods.items():
            found = match(method(blend), [(x, y), (sx, sy)], max_distance=3.0)
            stats[name]["both"] += min(found) >= 0 and found[0] != found[1]
    return stats


def colours(deblender, n_bands, n):
    rng = np.random.default_rng(3)
    blue = np.linspace(1.5, 0.5, n_bands)
    red = blue[::-1]
    errors = []
    for _ in range(n):
        x, y = rng.uniform(35, 50, 2)
        angle = rng.uniform(0, 2 * np.pi)
        centers = [(x, y), (x + 10 * np.cos(angle), y + 10 * np.sin(angle))]
        comps = np.stack([galaxy((80, 80), cx, cy, r_eff=3.0, n=1.0, ellip=0.2, theta=a,
                                 colour=col, fwhm=2.0) * 60
                          for (cx, cy), col, a in zip(centers, (blue, red), (0.3, 1.9),
                                                      strict=True)])
        blend = observe(rng, comps)
        result = deblender(blend)
        for t, j in enumerate(match(result, centers)):
            truth = comps[t].sum(axis=(1, 2))
            errors.append(band_flux(result, j) / truth - 1 if j >= 0 else np.full(n_bands, -1))
    return np.array(errors)


def masked_blocks(methods, n, *, size=96):
    """One galaxy under a masked block (6-14 x 8-24 px, over or beside its core):
    the share of scenes answered by one source, and of galaxies found within 3 px."""
    rng = np.random.default_rng(11)
    stats = {name: {"one": 0, "near": 0} for name in methods}
    for _ in range(n):
        x, y = rng.uniform(30, size - 30, 2)
        amplitude, r_eff = rng.choice([10, 20, 40, 100]), rng.uniform(4, 10)
        comp = galaxy((size, size), x, y, r_eff=r_eff, n=1, ellip=0.2, theta=0.7,
                      colour=[1, 1, 1], fwhm=2.355) * amplitude
        blend = observe(rng, comp[None], sky=3.0)
        height, width = rng.integers(6, 15), rng.integers(8, 25)
        dy, dx = rng.uniform(-0.8, 0.8, 2)
        y0, x0 = int(y - height / 2 + dy * height / 2), int(x - width / 2 + dx * width / 2)
        blend[:, y0:y0 + height, x0:x0 + width] = np.nan
        for name, method in methods.items():
            result = method(blend)
            stats[name]["one"] += result.n_sources == 1
            stats[name]["near"] += match(result, [(x, y)], max_distance=3.0)[0] >= 0
    return stats


def nan_block(deblender):
    rng = np.random.default_rng(4)
    comp = galaxy((96, 96), 48, 40, r_eff=6, n=1, ellip=0.3, theta=0.5, colour=[1, 1, 1],
                  fwhm=2) * 40
    blend = observe(rng, comp[None])
    blend[:, 35:45, 40:60] = np.nan
    result = deblender(blend)
    totals = [band_flux(result, i) for i in range(result.n_sources)]
    finite = all(np.isfinite(c).all() for c in result.cutouts)
    full = result.sources
    zero = bool(np.all(full[:, :, 35:45, 40:60] == 0))
    good = np.isfinite(blend)
    expected = (comp * good).sum()
    flux = sum(t.sum() for t in totals)
    return result.n_sources, min(t.min() for t in totals), finite, zero, flux / expected - 1


def filled_frame(deblender, *, size=120):
    """A galaxy larger than its cutout (Sersic r_eff 40 px, peak S/N 500, in 120 px).

    Returns the sky level's error and the noise estimate, both in units of
    the true noise, and the source's flux error against the galaxy's light
    inside the frame.
    """
    rng = np.random.default_rng(8)
    comp = galaxy((size, size), 60.2, 57.9, r_eff=40, n=2, ellip=0.3, theta=0.4,
                  colour=[1.0, 0.8, 0.6], fwhm=2.5) * 500
    blend = observe(rng, comp[None])
    sky = estimate_sky(blend)
    xx = np.arange(size)[None, :]
    true_sky = 5.0 + 0.002 * (xx - size / 2)
    level_error = float(np.mean(sky.level - true_sky[None]))
    result = deblender(blend)
    flux = sum(float(band_flux(result, i).sum()) for i in range(result.n_sources))
    return level_error, float(np.mean(sky.noise)), flux / float(comp.sum()) - 1, result.n_sources


def big_sersic(deblender, *, size=500):
    rng = np.random.default_rng(5)
    comp = galaxy((size, size), 250.3, 249.6, r_eff=60, n=1.5, ellip=0.3, theta=0.7,
                  colour=[1.0], fwhm=3) * 50
    blend = observe(rng, comp[None])
    result = deblender(blend)
    if result.n_sources == 0:
        return 0, np.nan, np.nan
    def largest_step(plane):
        smooth = gaussian_filter(plane, 2.0)  # smoothed: the noise is ~0.14 sigma
        return max(np.abs(np.diff(smooth, axis=0)).max(), np.abs(np.diff(smooth, axis=1)).max())

    # the same statistic on the input's own noise (and sky gradient): what a
    # source that kept its share of the noise without any seam would reach
    reference = largest_step(blend[0] - comp[0])
    return result.n_sources, float(largest_step(result.sources[0, 0] - comp[0])), reference


def large_frame(*, size=2048, n_galaxies=60, n_bands=3, method="gan", model=None,
                r_eff=(3, 10), amplitude=(20, 100), seed=5):
    """A square FITS frame of Sersic galaxies through the whole CLI, in its own process.

    Returns galaxies found within 4 px, seconds, peak RSS (MiB) and output / input size.
    """
    import subprocess

    from astropy.io import fits

    rng = np.random.default_rng(seed)
    cube = np.zeros((n_bands, size, size), np.float32)
    centers = []
    for _ in range(n_galaxies):
        x, y = rng.uniform(40, size - 40, 2)
        radius = rng.uniform(*r_eff)
        half = int(12 * radius)
        x0, x1 = max(int(x) - half, 0), min(int(x) + half, size)
        y0, y1 = max(int(y) - half, 0), min(int(y) + half, size)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        plane = Sersic2D(rng.uniform(*amplitude), radius, rng.uniform(0.7, 2.5), x, y,
                         rng.uniform(0, 0.5), rng.uniform(0, 3))(xx, yy)
        cube[:, y0:y1, x0:x1] += rng.uniform(0.7, 1.3, n_bands)[:, None, None] * plane[None]
        centers.append((x, y))
    cube += (10 + rng.normal(0, 1, cube.shape)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.fits"
        fits.PrimaryHDU(cube).writeto(path)
        del cube
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "astrodeblend", "deblend", str(path),
                                    "--output-dir", str(Path(tmp) / "out"), "--no-progress",
                                    "--method", method]
                                   + (["--model", str(model)] if model and method == "gan"
                                      else []),
                                   stdout=subprocess.DEVNULL)
        _, _, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        out = Path(tmp) / "out" / "large_deblended.fits"
        with fits.open(out) as hdul:
            table = hdul["CATALOG"].data
            xy = np.column_stack([table["x_centroid"], table["y_centroid"]])
        found = sum(np.hypot(*(xy - c).T).min() <= 4 for c in np.asarray(centers))
        return found, seconds, usage.ru_maxrss / 1024, out.stat().st_size / path.stat().st_size


def real_files(deblender):
    from astrodeblend.detect import find_centers
    from astrodeblend.io import read_image, write_deblended

    names = ["fits/scarlet_hsc_hst_cosmos/Cut_HST.fits",
             "fits/sdss_astropy_data/reprojected_sdss_g.fits",
             "fits/imfit_sdss_hst/ic3478rss_256.fits",
             "fits/galsim_hst_cosmos/147246.0_150.416558_1.998697_masknoise.fits",
             "fits/galsim_hst_cosmos/100610.img.fits",
             "fits/scarlet_hsc_hst_cosmos/hsc_ra=150.24071_dec=2.06514.fits",
             "galaxyzoo/images/100134.jpg"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = SHARED / name
            if not path.is_file():
                continue
            image = read_image(path)
            start = time.perf_counter()
            result = deblender(image)
            seconds = time.perf_counter() - start
            out = write_deblended(result, Path(tmp) / (path.stem + "_deblended.fits"))
            rows.append((path.name, result.n_sources, len(find_centers(image).catalog),
                         out.stat().st_size / path.stat().st_size, seconds,
                         residual_peaks(result)))
    return rows


def residual_peaks(result, n_sigma=20.0):
    """Light left out of every source: blobs of the residual above ``n_sigma``.

    The residual's bands are sky-subtracted (median) and scaled by their
    noise (median absolute deviation), summed over bands and over 3x3
    apertures; connected regions above ``n_sigma`` are counted (a star or a
    galaxy that no source took, or a badly modelled core).
    """
    from scipy.ndimage import label, uniform_filter

    residual = np.asarray(result.residual.data, dtype=np.float64)
    bad = ~np.isfinite(residual)
    plane = np.zeros(residual.shape[1:])
    for band, masked in zip(residual, bad, strict=True):
        values = band[~masked]
        level = np.median(values)
        sigma = 1.4826 * np.median(np.abs(values - level))
        plane += np.where(masked, 0.0, (band - level) / sigma)
    snr = uniform_filter(plane / np.sqrt(len(residual)), 3) * 3
    return int(label(snr > n_sigma)[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="scenes per test")
    parser.add_argument("--flux", default="weighted", choices=list(FLUX_MODES))
    parser.add_argument("--model", default=None,
                        help="checkpoint for astrodeblend (default: the shipped model)")
    args = parser.parse_args(argv)
    gan = Deblender.load(args.model, device="cpu", flux=args.flux)
    methods = {"astrodeblend": gan, "photutils": SegmentationDeblender()}

    bias, err = sky_bias(args.n)
    print(f"sky bias on pure noise: {bias:+.4f} +- {err:.4f} sigma ({args.n} frames of 96 px)")
    for label, kwargs in [("isolated, S/N 10-200", {}), ("isolated, peak S/N 40", {"snr": 40})]:
        stats = isolated(methods, args.n, **kwargs)
        for name, s in stats.items():
            e = np.asarray(s["err"])
            print(f"{label:22s} {name:12s}: one source {s['one'] / args.n:6.1%}, flux error "
                  f"median {np.median(e):+.2%}, median |err| {np.median(np.abs(e)):.2%}")
    for name, s in pairs(methods, args.n).items():
        e = np.asarray(s["err"])
        print(f"{'pairs 6-24 px':22s} {name:12s}: both found {s['both'] / args.n:6.1%}, "
              f"median |flux err| {np.median(np.abs(e)):.2%}")
    for name, s in stars(methods, args.n).items():
        print(f"{'galaxy + star 6-24 px':22s} {name:12s}: both found {s['both'] / args.n:6.1%}")
    for name, s in stars(methods, args.n, separation=(24, 40), seed=16).items():
        print(f"{'galaxy + star 24-40 px':22s} {name:12s}: both found {s['both'] / args.n:6.1%}")
    for n_bands in (3, 5):
        e = colours(gan, n_bands, args.n)
        print(f"blue + red 10 px, {n_bands} bands ({args.n} scenes): worst band |flux err| median "
              f"{np.median(np.abs(e).max(axis=1)):.2%}, max {np.abs(e).max():.2%}")
    for name, s in masked_blocks(methods, args.n).items():
        print(f"{'galaxy under a block':22s} {name:12s}: one source {s['one'] / args.n:6.1%}, "
              f"found within 3 px {s['near'] / args.n:6.1%}")
    n, lowest, finite, zero, ferr = nan_block(gan)
    print(f"10x20 NaN block: {n} source(s), lowest band total {lowest:.3g}, finite {finite}, "
          f"masked pixels zero {zero}, flux vs unmasked truth {ferr:+.2%}")
    level, noise, ferr, n = filled_frame(gan)
    print(f"frame filled by one galaxy: sky level {level:+.2f} sigma, noise {noise:.2f} sigma, "
          f"{n} source(s), flux error {ferr:+.2%}")
    n, jump, reference = big_sersic(gan)
    print(f"500 px Sersic: {n} source(s), largest step of the source less the truth "
          f"(smoothed, Gaussian of 2 px) {jump:.3f} sigma of the pixel noise; the input's noise "
          f"alone {reference:.3f}")
    for name, n, n_phot, ratio, seconds, peaks in real_files(gan):
        print(f"{name:42s}: {n:4d} sources (photutils {n_phot:4d}), output {ratio:5.2f} x "
              f"input, {seconds:5.1f} s, residual peaks > 20 sigma {peaks}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB (pid {os.getpid()})")
    found, seconds, rss, ratio = large_frame(model=args.model)
    print(f"2048x2048x3, 60 galaxies, whole CLI: {found}/60 found, {seconds:.1f} s, peak RSS "
          f"{rss:.0f} MiB, output {ratio:.2f} x input")
    found, seconds, rss, ratio = large_frame(n_galaxies=40, r_eff=(15, 45), amplitude=(5, 30),
                                             seed=9, model=args.model)
    print(f"2048x2048x3, 40 large galaxies (r_eff 15-45 px), whole CLI: {found}/40 found, "
          f"{seconds:.1f} s, peak RSS {rss:.0f} MiB, output {ratio:.2f} x input")
    # crowded: the time must grow with the frame and the galaxies, not with their product
    for name, method in (("astrodeblend", "gan"), ("photutils", "segmentation")):
        found, seconds, rss, ratio = large_frame(size=4096, n_galaxies=600, n_bands=1,
                                                 method=method, model=args.model)
        print(f"4096x4096, 600 galaxies, whole CLI, {name:12s}: {found}/600 found, "
              f"{seconds:.1f} s, peak RSS {rss:.0f} MiB, output {ratio:.2f} x input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
