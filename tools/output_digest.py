"""Hash every output of the deblender on a fixed set of inputs, to check a refactor.

A change meant to leave the outputs alone (a faster step, code moved) is
checked by writing the digest before it and comparing after::

    python tools/output_digest.py --write /tmp/before.json
    # ... the change ...
    python tools/output_digest.py --check /tmp/before.json

The inputs: the real FITS cutouts of ``../shared/data/fits`` (PSFs,
catalogues and mask files left out, and the two larger SDSS fields beside
the g one), one whole Galaxy Zoo JPG, and generated cutouts (20 of 80 px
with two galaxies, 8 of 256 px with 3-6, as ``benchmarks/bench_cli.py``
makes them).  For each image, every source's cutout, the origins, the
segmentation map and the centres are hashed (SHA-256), with
``--method segmentation`` the catalog's columns too.  The networks run in
float32 by default (``--precision``), so that the digest does not depend on
whether the CPU has bfloat16.  Without ``../shared/data`` only the
generated cutouts are hashed.  ``--check`` prints the images whose hash
changed and exits 1 when any did.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))


def inputs(folder):
    """Names and paths of the digest's inputs (generated cutouts written to ``folder``)."""
    from bench_cli import make_cutouts

    paths = []
    fits_dir = DATA / "fits"
    if fits_dir.is_dir():
        skip = ("psf", "catalog", "_mask", "reprojected_sdss_i", "reprojected_sdss_r")
        paths += [p for p in sorted(fits_dir.glob("*/*.fits"))
                  if not any(k in p.name.lower() for k in skip)]
    jpg = DATA / "galaxyzoo" / "images" / "100134.jpg"
    if jpg.is_file():
        paths.append(jpg)
    paths += sorted(make_cutouts(Path(folder) / "small", 20, size=80,
                                 n_galaxies=(2, 2)).glob("*.fits"))
    paths += sorted(make_cutouts(Path(folder) / "large", 8, size=256, n_galaxies=(3, 6),
                                 seed=1).glob("*.fits"))
    return [(p.name if DATA in p.parents else f"{p.parent.name}/{p.name}", p) for p in paths]


def digest(result, with_catalog=False):
    """SHA-256 (16 hex digits) of a result's sources, origins, segmentation map and centres."""
    h = hashlib.sha256()
    for cut in result.cutouts:
        h.update(np.ascontiguousarray(cut, dtype=np.float32).tobytes())
    h.update(np.asarray(result.origins, dtype=np.int64).tobytes())
    h.update(np.asarray(result.segmap, dtype=np.int32).tobytes())
    columns = result.catalog.colnames if with_catalog else ["x_centroid", "y_centroid"]
    for column in columns:
        h.update(np.asarray(result.catalog[column], dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="JSON", help="write the digest to this file")
    action.add_argument("--check", metavar="JSON", help="compare with a digest written before")
    parser.add_argument("--method", default="gan", choices=["gan", "segmentation"])
    parser.add_argument("--precision", default="float32",
                        choices=["auto", "float32", "bfloat16"],
                        help="the networks' arithmetic (gan; default: float32)")
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    args = parser.parse_args(argv)

    from astrodeblend.io import read_image
    from astrodeblend.pipeline import get_deblender

    warnings.simplefilter("ignore")  # astropy's FITS and WCS chatter on the real files
    options = {"precision": args.precision} if args.method == "gan" else {}
    deblender = get_deblender(args.method, model=args.model, device="cpu", **options)
    with tempfile.TemporaryDirectory() as tmp:
        named = inputs(tmp)
        images = [read_image(path) for _, path in named]
        if args.method == "gan":
            results = deblender.deblend_many(images)
        else:
            results = [deblender(image) for image in images]
    table = {name: [r.n_sources, digest(r, with_catalog=args.method != "gan")]
             for (name, _), r in zip(named, results, strict=True)}
    n_sources = sum(n for n, _ in table.values())
    if args.write:
        Path(args.write).write_text(json.dumps(table, indent=1) + "\n")
        print(f"{len(table)} images, {n_sources} sources: digest written to {args.write}")
        return 0
    before = json.loads(Path(args.check).read_text())
    changed = sorted(name for name in set(before) | set(table)
                     if before.get(name) != table.get(name))
    for name in changed:
        print(f"changed: {name}: {before.get(name)} -> {table.get(name)}")
    print(f"{len(table)} images, {n_sources} sources: "
          f"{'identical' if not changed else f'{len(changed)} changed'}")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
