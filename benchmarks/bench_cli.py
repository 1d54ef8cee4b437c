"""Whole-CLI speed against the photutils segmentation baseline (issue 17).

Generates FITS cutouts with a WCS (Sersic galaxies from astropy.modeling,
a sky level and noise) and times the whole command, start-up included, in
separate processes, each method in turn:

- ``astrodeblend deblend`` with the default model;
- ``astrodeblend deblend --method segmentation`` (photutils detection,
  deblending and segmentation) on the same files.

Prints files per second of each, their ratio (default model / segmentation;
the target is >= 1.0) and each process's peak resident memory.  Two sets:
``--n-small`` 80x80x3 cutouts of two galaxies and ``--n-large`` 256x256x3
cutouts of 3-6 galaxies; first, ``--n-single`` commands of each method on
one 80x80x3 cutout, the start-up (importing, loading the model) that a
command per file pays.  Both commands run with the command's own
``--workers auto`` (one more process per 64 files, up to the cores), or
``--workers N`` (local worker processes, the command's own included).  Run
it on an idle machine::

    python benchmarks/bench_cli.py [--n-single 5] [--n-small 200] [--n-large 500] [--repeat 1]
        [--workers auto|N] [--augment 1|2|4|8] [--precision auto|float32|bfloat16]
        [--model CHECKPOINT]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_cutouts(folder, n, *, size, n_galaxies, seed=0):
    """Write ``n`` cutouts of ``size`` px, 3 bands, ``n_galaxies`` (lo, hi) Sersic galaxies."""
    from astropy.io import fits
    from astropy.modeling.models import Sersic2D
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    margin = 8 if size <= 96 else 20
    for i in range(n):
        cube = np.zeros((3, size, size))
        for _ in range(rng.integers(n_galaxies[0], n_galaxies[1] + 1)):
            amplitude = rng.uniform(0.3, 1.0)
            colour = rng.uniform(0.6, 1.4, 3)
            plane = Sersic2D(amplitude, rng.uniform(3, 8), rng.uniform(1, 3),
                             rng.uniform(margin, size - margin), rng.uniform(margin, size - margin),
                             rng.uniform(0, 0.5), rng.uniform(0, np.pi))(xx, yy)
            cube += plane[None] * colour[:, None, None]
        cube += 0.05 + rng.normal(0, 0.01, cube.shape)
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [150.0, 2.0]
        wcs.wcs.crpix = [size / 2 + 0.5] * 2
        wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
        fits.PrimaryHDU(cube.astype(np.float32), header=wcs.to_header()).writeto(
            folder / f"cutout_{i:04d}.fits")
    return folder


def run_cli(folder, out, extra):
    """Run one whole ``astrodeblend deblend``; return (seconds, peak RSS MiB, exit code)."""
    command = [sys.executable, "-m", "astrodeblend", "deblend", str(folder), "--output-dir",
               str(out), "--device", "cpu", "--no-progress", "--overwrite", *extra]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code:
        print(stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {code}")
    return seconds, usage.ru_maxrss / 1024, code


def compare(folder, n, label, repeat, workers="auto", gan_options=()):
    """Time both methods ``repeat`` times in turn and print the medians and their ratio.

    ``gan_options``: more arguments of the default model's command
    (``--augment``, ``--precision``, ``--model``).
    """
    parallel = ["--workers", str(workers)]
    methods = {"gan": [*parallel, *gan_options],
               "segmentation": ["--method", "segmentation", *parallel]}
    times = {name: [] for name in methods}
    rss = dict.fromkeys(methods, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for name, extra in methods.items():
                seconds, peak, code = run_cli(folder, Path(tmp) / name, extra)
                if code:
                    print(f"{label}: {name} failed (exit {code})")
                    return
                times[name].append(seconds)
                rss[name] = max(rss[name], peak)
    rate = {name: n / float(np.median(t)) for name, t in times.items()}
    for name in methods:
        print(f"{label} {name:12s}: {rate[name]:6.1f} files/s "
              f"(median of {repeat}: {np.median(times[name]):.1f} s), peak RSS {rss[name]:.0f} MiB")
    print(f"{label} ratio default model / segmentation: {rate['gan'] / rate['segmentation']:.2f}"
          " (target >= 1.0)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-small", type=int, default=200, help="80x80x3 cutouts (0: skip)")
    parser.add_argument("--n-large", type=int, default=500, help="256x256x3 cutouts (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each method")
    parser.add_argument("--n-single", type=int, default=5,
                        help="timed one-file commands of each method (start-up; 0: skip)")
    parser.add_argument("--workers", default="auto",
                        help="--workers of both commands (local processes; default: the "
                             "command's own, auto)")
    parser.add_argument("--augment", type=int, choices=[1, 2, 4, 8], default=None,
                        help="--augment of the default model's command (default: its own, 2)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default=None,
                        help="--precision of the default model's command (default: its own, "
                             "auto)")
    parser.add_argument("--model", default=None,
                        help="checkpoint in place of the default model")
    args = parser.parse_args(argv)
    gan_options = [*([] if args.augment is None else ["--augment", str(args.augment)]),
                   *([] if args.precision is None else ["--precision", args.precision]),
                   *([] if args.model is None else ["--model", str(args.model)])]
    from astrodeblend.batch import auto_workers

    if args.workers == "auto":
        counts = sorted({auto_workers(n) for n in (args.n_single and 1, args.n_small,
                                                    args.n_large) if n})
        workers = f"--workers auto ({' / '.join(map(str, counts))} here)"
    else:
        workers = f"--workers {args.workers}"
    print(f"{os.cpu_count()} CPUs, {workers}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.n_single:  # the start-up: what one command per file costs
            folder = make_cutouts(Path(tmp) / "single", 1, size=80, n_galaxies=(2, 2))
            compare(folder, 1, "one 80x80x3 file    ", args.n_single, args.workers, gan_options)
        if args.n_small:
            folder = make_cutouts(Path(tmp) / "small", args.n_small, size=80, n_galaxies=(2, 2))
            compare(folder, args.n_small, "80x80x3, 2 galaxies ", args.repeat, args.workers,
                    gan_options)
        if args.n_large:
            folder = make_cutouts(Path(tmp) / "large", args.n_large, size=256,
                                  n_galaxies=(3, 6), seed=1)
            compare(folder, args.n_large, "256x256x3, 3-6 gal. ", args.repeat, args.workers,
                    gan_options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
