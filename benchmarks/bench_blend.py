"""Scenes per second of each blending protocol, from JPG decoding to the written file.

Usage::

    python benchmarks/bench_blend.py [--images DIR] [--n 300]

Uses ``../shared/data/galaxyzoo/images`` when present, else a folder of
synthetic 424x424 Galaxy-Zoo-like JPGs.  For each protocol it prints

- ``scenes/s (in memory)``: `astrodeblend.blend.make_scene` on decoded images;
- ``scenes/s (end to end)``: `astrodeblend.data.build_dataset`, i.e. reading
  and decoding the JPGs, blending and writing the HDF5 file.

Both are CPU times of this process (the machine may be shared) and the
wall-clock rate of the build.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxyzoo" / "images"


def synthetic_folder(folder, n=60, size=424):
    from astropy.modeling.models import Sersic2D
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    for i in range(n):
        plane = Sersic2D(amplitude=1, r_eff=rng.uniform(15, 40), n=rng.uniform(0.8, 3), x_0=c,
                         y_0=c, ellip=rng.uniform(0, 0.6), theta=rng.uniform(0, 3))(xx, yy)
        plane = plane / plane.max() + rng.normal(0, 0.01, plane.shape)
        rgb = (np.clip(plane, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
        Image.fromarray(np.repeat(rgb[..., None], 3, axis=2)).save(folder / f"{100000 + i}.jpg")
    return folder


def main():
    from astrodeblend.blend import make_scene
    from astrodeblend.data import build_dataset
    from astrodeblend.io import read_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = Path(args.images) if args.images else SHARED
        if not images.is_dir():
            images = synthetic_folder(tmp / "images")
        files = sorted(images.glob("*.jpg"))[:50]
        t0 = time.process_time()
        decoded = [read_image(f) for f in files]
        decode = (time.process_time() - t0) / len(files)
        print(f"images: {images} ({decoded[0].shape}); JPG decode {decode * 1e3:.1f} ms/image")
        for protocol in ("reiman", "physical", "paper"):
            n_mem = 100
            t0 = time.process_time()
            for i in range(n_mem):
                make_scene([decoded[i % len(decoded)], decoded[(i * 7 + 3) % len(decoded)]],
                           protocol=protocol, seed=i)
            memory = n_mem / (time.process_time() - t0)
            out = tmp / f"{protocol}.h5"
            t0, w0 = time.process_time(), time.perf_counter()
            summary = build_dataset(images, out, protocol=protocol, n=args.n, progress=False)
            cpu, wall = time.process_time() - t0, time.perf_counter() - w0
            n = sum(summary.added.values())
            size = out.stat().st_size / n / 1e3
            print(f"{protocol:>8}: {memory:6.1f} scenes/s in memory | end to end {n / cpu:6.1f} "
                  f"scenes/s CPU, {n / wall:6.1f} scenes/s wall | {size:.0f} kB/scene")


if __name__ == "__main__":
    main()
