"""Benchmark of `astrodeblend.batch.deblend_files`: files per second and memory per worker.

Writes ``--n`` small synthetic FITS cutouts (2-3 Sersic galaxies, TAN WCS)
to a temporary folder, deblends them with 1 and 2 workers (or the counts of
``--workers``) into fresh output folders, and prints, per worker count, the
wall-clock time (cluster start-up included), files per second, and the peak
resident memory of the main process and of each worker process (psutil,
sampled every 50 ms).  ``cpu ms/file`` is the CPU time (user + system) of
this process and its reaped children per file: on a shared machine it shows
the per-file cost even when wall-clock scaling is hidden by other load.

Usage::

    python benchmarks/bench_batch.py                  # 1,000 cutouts, 1 and 2 workers
    python benchmarks/bench_batch.py --n 100 --method gan --workers 1,2,4
"""

import argparse
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.modeling.models import Sersic2D
from astropy.wcs import WCS


def make_cutouts(folder, n, size, n_bands=1):
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        rng = np.random.default_rng(i)
        plane = np.zeros((size, size))
        for _ in range(2 + i % 2):
            plane += Sersic2D(amplitude=rng.uniform(0.5, 1.5), r_eff=rng.uniform(2.5, 5),
                              n=rng.uniform(0.8, 2.5), x_0=rng.uniform(12, size - 12),
                              y_0=rng.uniform(12, size - 12), ellip=rng.uniform(0, 0.5),
                              theta=rng.uniform(0, 3))(xx, yy)
        plane += rng.normal(0, 0.01, plane.shape)
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crpix = [size / 2 + 0.5] * 2
        wcs.wcs.crval = [150.0 + 0.001 * i, 2.0]
        wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
        data = plane if n_bands == 1 else np.linspace(0.8, 1.2, n_bands)[:, None, None] * plane
        fits.writeto(folder / f"cut{i:05d}.fits", data.astype(np.float32), wcs.to_header())


def _cpu_seconds():
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class MemorySampler(threading.Thread):
    """Peak RSS of this process and of each descendant process, sampled."""

    def __init__(self, interval=0.05):
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.peaks = {}
        self.leaf = {}
        self.stopped = threading.Event()

    def run(self):
        import psutil

        while not self.stopped.is_set():
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    self.leaf[proc.pid] = proc is self.me or not proc.children()
                except psutil.Error:
                    continue
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)
            self.stopped.wait(self.interval)

    def stop(self):
        self.stopped.set()
        self.join()
        main = self.peaks.pop(self.me.pid, 0)
        # workers are the leaf processes (Dask nannies and the resource tracker
        # are parents or tiny); report those above 50 MiB
        workers = sorted((rss for pid, rss in self.peaks.items()
                          if self.leaf.get(pid) and rss > 50 * 2**20), reverse=True)
        return main, workers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of cutouts")
    parser.add_argument("--size", type=int, default=48, help="cutout side in pixels")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--method", default="segmentation",
                        help="gan, segmentation or fluxshare")
    parser.add_argument("--bands", type=int, default=None,
                        help="bands per cutout (default: 3 for gan, 1 otherwise)")
    parser.add_argument("--model", default=None, help="checkpoint for gan")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from astrodeblend.batch import deblend_files

    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        started = time.perf_counter()
        n_bands = args.bands or (3 if args.method == "gan" else 1)
        make_cutouts(root / "in", args.n, args.size, n_bands)
        print(f"{args.n} cutouts of {n_bands}x{args.size}x{args.size} written in "
              f"{time.perf_counter() - started:.1f} s; method={args.method} "
              f"device={args.device}")
        print(f"{'workers':>7} {'seconds':>8} {'files/s':>8} {'cpu ms/file':>11} "
              f"{'main MiB':>9}  worker peak MiB")
        for n_workers in (int(w) for w in args.workers.split(",")):
            out = root / f"out{n_workers}"
            sampler = MemorySampler()
            sampler.start()
            cpu = _cpu_seconds()
            started = time.perf_counter()
            summary = deblend_files(root / "in", out, method=args.method, model=args.model,
                                    device=args.device, workers=n_workers, progress=False)
            seconds = time.perf_counter() - started
            cpu = _cpu_seconds() - cpu
            main_rss, worker_rss = sampler.stop()
            assert summary.n_done == args.n, summary
            workers = ", ".join(f"{rss / 2**20:.0f}" for rss in worker_rss) or "(in main)"
            print(f"{n_workers:>7} {seconds:>8.1f} {args.n / seconds:>8.1f} "
                  f"{1000 * cpu / args.n:>11.1f} {main_rss / 2**20:>9.0f}  {workers}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
