"""Real HSC blends: the sources found against published detections (issues 12 and 13).

The three real HSC g, r, i, z, y scenes of ``../shared/data/npz/scarlet_hsc_blends``
(from scarlet's repository: its quick-start scene ``hsc_cosmos_35`` with a
variance map, bad-pixel bits and a catalogue of 7 objects; ``hsc_cosmos``
with a SEP catalogue of 6; and the same pixels as ``43158172147386355``
with inverse-variance weights, zero outside the blend's footprint, and 8
peaks) are written as FITS cubes (``FILTERn`` cards and a ``VARIANCE`` or
``IVAR`` extension, which the reader takes as the uncertainty; zero weights
become masked pixels) and deblended by the shipped model and by photutils
segmentation (`astrodeblend.baselines.SegmentationDeblender`).  The HSC
mask's bits mark detections and interpolated pixels as well as bad ones,
so the mask is left out.

There is no truth: the published positions are detections (scarlet's
catalogue, SEP, scarlet's peaks), not every object of the scene, and
faint ones among them are a matter of threshold.  The table gives, per
scene and method, the sources returned, how many of the published
positions have a source within ``--radius`` px (one source each), and the
sources matched to none.  Exits quietly when the data folder is absent::

    python benchmarks/bench_hsc.py [--radius 3] [--model PATH]
"""

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "npz" / "scarlet_hsc_blends"
BANDS = "grizy"


def reference_positions(npz):
    """The published ``(x, y)`` of a scene's objects (0-based pixels) and their origin."""
    if "catalog" in npz.files:
        catalog = npz["catalog"]
        origin = "SEP catalogue" if "flux" in catalog.dtype.names else "scarlet catalogue"
        return np.column_stack([catalog["x"], catalog["y"]]).astype(float), origin
    return np.asarray(npz["peaks"], dtype=float)[:, :2], "scarlet peaks (x, y)"


def write_fits(npz, path):
    """Write a scene as a FITS cube with its bands and uncertainty; return the path."""
    from astropy.io import fits

    header = fits.Header()
    for k, band in enumerate(BANDS[:len(npz["images"])], start=1):
        header[f"FILTER{k}"] = band
    hdus = [fits.PrimaryHDU(np.asarray(npz["images"], dtype=np.float32), header=header)]
    if "variance" in npz.files:
        hdus.append(fits.ImageHDU(np.asarray(npz["variance"], dtype=np.float32), name="VARIANCE"))
    if "weights" in npz.files:
        hdus.append(fits.ImageHDU(np.asarray(npz["weights"], dtype=np.float32), name="IVAR"))
    fits.HDUList(hdus).writeto(path)
    return path


def score(result, reference, radius):
    """``(n_sources, matched, unmatched)`` of one result against the published positions."""
    from astrodeblend.metrics import match_sources

    if result.n_sources:
        found = np.column_stack([np.asarray(result.catalog["x_centroid"], float),
                                 np.asarray(result.catalog["y_centroid"], float)])
    else:
        found = np.zeros((0, 2))
    matches = match_sources(reference, found, max_distance=radius)
    matched = len(matches.pairs)
    return result.n_sources, matched, result.n_sources - matched


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="folder of the scarlet HSC .npz scenes")
    parser.add_argument("--radius", type=float, default=3.0,
                        help="a published position is found within this many pixels")
    parser.add_argument("--model", default=None,
                        help="astrodeblend model (default: the shipped model)")
    args = parser.parse_args(argv)
    files = sorted(Path(args.data).glob("*.npz")) if Path(args.data).is_dir() else []
    if not files:
        print(f"skipped: no .npz scenes in {args.data}")
        return 0
    from astrodeblend.baselines import SegmentationDeblender
    from astrodeblend.io import read_image
    from astrodeblend.pipeline import Deblender

    warnings.simplefilter("ignore")  # photutils chatter; the numbers are what count
    start = time.perf_counter()
    deblenders = [("astrodeblend", Deblender.load(args.model)),
                  ("segmentation", SegmentationDeblender())]
    print(f"{len(files)} real HSC scenes from {args.data}; a published position is found "
          f"when a source lies within {args.radius:g} px")
    print(f"{'scene':<20}{'shape':>12}{'masked':>8}  {'published':<26}"
          + "".join(f"{name + ' found':>20}{'extra':>7}" for name, _ in deblenders))
    totals = {name: [0, 0] for name, _ in deblenders}
    n_reference = 0
    with tempfile.TemporaryDirectory() as folder:
        for path in files:
            with np.load(path) as npz:
                reference, origin = reference_positions(npz)
                image = read_image(write_fits(npz, Path(folder) / f"{path.stem}.fits"))
            masked = float(np.mean(image.mask)) if image.mask is not None else 0.0
            row = (f"{path.stem[:19]:<20}{'x'.join(map(str, image.shape)):>12}"
                   f"{masked:>8.0%}  {str(len(reference)) + ', ' + origin:<26}")
            for name, deblender in deblenders:
                n, matched, extra = score(deblender(image), reference, args.radius)
                totals[name][0] += matched
                totals[name][1] += extra
                row += f"{f'{matched}/{len(reference)} ({n} sources)':>20}{extra:>7}"
            n_reference += len(reference)
            print(row)
    print(f"{'all':<20}{'':>12}{'':>8}  {n_reference:<26}"
          + "".join(f"{f'{m}/{n_reference}':>20}{e:>7}" for m, e in totals.values()))
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
