"""Deblending quality of the classic baselines and the GAN (issue 6).

Runs `astrodeblend.evaluate.evaluate` on held-out Galaxy Zoo galaxies
(``../shared/data/galaxyzoo/images``, the ``test`` split of
`astrodeblend.data.split_galaxies`) for each protocol and prints the
summary table: detection rates, PSNR / SSIM (raw and max-normalised), flux,
centroid and ellipticity errors, and seconds per scene.  The GAN is
included when the shipped model (``astrodeblend/weights/default.pt``)
exists.  Exits quietly when the data folder is absent::

    python benchmarks/bench_evaluate.py [--n 200] [--protocols reiman,physical]
        [--methods segmentation,fluxshare] [--output-dir bench-eval/]
"""

import argparse
import sys
import time
from pathlib import Path

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxyzoo" / "images"


def default_methods():
    from astrodeblend.pipeline import default_model_path

    methods = ["segmentation", "fluxshare"]
    if default_model_path().exists():
        methods.insert(0, "gan")
    return methods


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(IMAGES), help="Galaxy Zoo image folder")
    parser.add_argument("--n", type=int, default=200, help="scenes per protocol")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocols", default="reiman,physical")
    parser.add_argument("--methods", default=None,
                        help="comma-separated (default: baselines, and gan when shipped)")
    parser.add_argument("--split", default="test", choices=["test", "all"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output-dir", default=None,
                        help="also write the evaluation files, one sub-folder per protocol")
    args = parser.parse_args(argv)

    if not Path(args.images).is_dir():
        print(f"skipped: {args.images} is not available")
        return 0
    from astrodeblend.evaluate import evaluate, format_summary

    methods = args.methods.split(",") if args.methods else default_methods()
    for protocol in args.protocols.split(","):
        start = time.perf_counter()
        output_dir = None if args.output_dir is None else Path(args.output_dir) / protocol
        table = evaluate(args.images, protocol=protocol, n=args.n, seed=args.seed,
                         methods=methods, split=args.split, device=args.device,
                         output_dir=output_dir, overwrite=True, progress=False)
        elapsed = time.perf_counter() - start
        print(f"\n== {protocol}: {args.n} scenes of held-out galaxies ({args.split} split), "
              f"seed {args.seed}, matching within {table.meta['max_distance']:.1f} px, "
              f"{elapsed:.0f} s in all")
        print(format_summary(table))
        for row in table:
            print(f"{row['method']:>12s}: PSNR A/B {row['psnr_mean_a']:.2f}/"
                  f"{row['psnr_mean_b']:.2f} dB, SSIM A/B {row['ssim_mean_a']:.3f}/"
                  f"{row['ssim_mean_b']:.3f}, max-normalised PSNR "
                  f"{row['psnr_norm_mean_all']:.2f} dB, mean |flux error| "
                  f"{row['abs_flux_error_mean_all']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
