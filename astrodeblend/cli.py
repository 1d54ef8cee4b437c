"""The ``astrodeblend`` command line.

Usage examples::

    astrodeblend --version
    astrodeblend info cutout.fits galaxy.jpg
    astrodeblend make-dataset --images DIR --protocol reiman --n 20000 --seed 1 --out train.h5
    astrodeblend train --data train.h5 --out runs/r1 --epochs 20 --device auto
    torchrun --nproc_per_node 4 -m astrodeblend train --data train.h5 --out runs/r1
    astrodeblend deblend cutout.fits other.fits --output-dir out/ --png
    astrodeblend evaluate --images DIR --protocol physical --n 200 --output-dir eval/
    astrodeblend sample --n 16 --out samples.png
    astrodeblend demo --output-dir demo/

Every subcommand is a thin call into the library.  Errors that come from bad
input are printed on one line (``astrodeblend: error: ...``) and the exit
status is 2; a batch where some files failed exits with 1.
"""

from __future__ import annotations

import argparse
import sys

from ._version import __version__
from .errors import AstrodeblendError

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_ERROR = 2


def _int_seed(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, not {text!r}") from None


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


# --------------------------------------------------------------------- info
def _add_info(sub):
    p = sub.add_parser("info", help="describe image files (shape, bands, WCS, masking)")
    p.add_argument("files", nargs="+", metavar="FILE", help="FITS, JPG or PNG files")
    p.add_argument("--hdu", default=None, help="HDU name or number to read (FITS)")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args):
    from .io import describe_image

    status = EXIT_OK
    for path in args.files:
        try:
            print(describe_image(path, hdu=args.hdu))
        except AstrodeblendError as exc:
            print(f"astrodeblend: error: {exc}", file=sys.stderr)
            status = EXIT_ERROR
    return status


# ------------------------------------------------------------- make-dataset
def _add_make_dataset(sub):
    p = sub.add_parser("make-dataset", help="build a training set of blended scenes")
    p.add_argument("--images", required=True, help="folder of galaxy images (JPG/FITS)")
    p.add_argument("--protocol", default="reiman", choices=["paper", "reiman", "physical"])
    p.add_argument("--n", type=_positive_int, required=True, help="number of scenes")
    p.add_argument("--seed", type=_int_seed, default=0)
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--split", default="0.8,0.1,0.1",
                   help="train,validation,test fractions of the galaxies")
    p.add_argument("--n-galaxies", type=_positive_int, default=2,
                   help="galaxies per scene (physical protocol)")
    p.add_argument("--psf-fwhm", type=float, default=None,
                   help="Gaussian PSF FWHM in pixels (physical protocol)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new file instead of appending/resuming")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_make_dataset)


def _cmd_make_dataset(args):
    from .data import build_dataset

    fractions = _parse_split(args.split)
    kwargs = {"n_galaxies": args.n_galaxies}
    if args.psf_fwhm is not None:
        kwargs["psf_fwhm"] = args.psf_fwhm
    summary = build_dataset(args.images, args.out, protocol=args.protocol, n=args.n,
                            seed=args.seed, split=fractions, overwrite=args.overwrite,
                            progress=not args.no_progress, **kwargs)
    print(summary)
    return EXIT_OK


def _parse_split(text):
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise AstrodeblendError(
            f"--split must be three comma-separated fractions, not {text!r}") from None
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise AstrodeblendError(f"--split must be three fractions adding up to 1, not {text!r}")
    return parts


# -------------------------------------------------------------------- train
def _add_train(sub):
    p = sub.add_parser("train", help="train the deblending GAN")
    p.add_argument("--data", required=True, nargs="+", metavar="FILE",
                   help="training-set HDF5 file(s) (make-dataset); protocols may be mixed")
    p.add_argument("--out", required=True, help="run folder for checkpoints, logs and plots")
    # None = take the value from --config, the resumed run, or TrainConfig's default
    p.add_argument("--epochs", type=_positive_int, default=None, help="default 20")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="scenes per step (per process with torchrun); default 32")
    p.add_argument("--lr", type=_positive_float, default=None, help="default 2e-4")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=_int_seed, default=None, help="default 0")
    p.add_argument("--config", default=None,
                   help="JSON file of TrainConfig settings (explicit options above win)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args):
    from .train import train_from_cli

    return train_from_cli(args)


# ------------------------------------------------------------------- sample
def _add_sample(sub):
    p = sub.add_parser("sample", help="draw galaxies from the unconditional generator")
    p.add_argument("--model", default=None, help="checkpoint with an unconditional generator")
    p.add_argument("--n", type=_positive_int, default=16)
    p.add_argument("--seed", type=_int_seed, default=0)
    p.add_argument("--out", required=True, help="PNG grid or FITS cube to write")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args):
    from .train import sample_from_cli

    return sample_from_cli(args)


# ------------------------------------------------------------------ deblend
def _add_deblend(sub):
    p = sub.add_parser("deblend", help="deblend FITS or JPG images into FITS results")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files, globs, folders, or @list.txt files of paths")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--method", default="gan",
                   help="gan (default) or a baseline: segmentation, fluxshare")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--hdu", default=None, help="HDU name or number to read (FITS)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--png", action="store_true", help="also write a quick-look PNG per input")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="parallel workers (local Dask cluster, or processes without Dask)")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument("--max-pixels", type=_positive_int, default=None,
                   help="process images larger than this many pixels per band in tiles")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_deblend)


def _cmd_deblend(args):
    from .batch import deblend_from_cli

    return deblend_from_cli(args)


# ----------------------------------------------------------------- evaluate
def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score deblenders on blends with ground truth")
    p.add_argument("--images", required=True, help="folder of isolated galaxy images")
    p.add_argument("--protocol", default="reiman", choices=["paper", "reiman", "physical"])
    p.add_argument("--n", type=_positive_int, default=200)
    p.add_argument("--seed", type=_int_seed, default=0)
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--methods", default="gan,segmentation,fluxshare",
                   help="comma-separated methods to compare")
    p.add_argument("--split", default="test", choices=["test", "validation", "train", "all"],
                   help="which galaxies to use: test (held out from training), validation "
                        "(for tuning), train, or all")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args):
    from .evaluate import evaluate_from_cli

    return evaluate_from_cli(args)


# --------------------------------------------------------------------- demo
def _add_demo(sub):
    p = sub.add_parser("demo", help="deblend a built-in blended scene (offline)")
    p.add_argument("--output-dir", default="astrodeblend-demo")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args):
    from .deblend import run_demo

    return run_demo(args.output_dir, device=args.device, overwrite=args.overwrite)


# --------------------------------------------------------------------- main
def build_parser():
    """Return the `argparse.ArgumentParser` of the ``astrodeblend`` command.

    Returns
    -------
    `argparse.ArgumentParser`

    Examples
    --------
    >>> build_parser().parse_args(["info", "a.fits"]).files
    ['a.fits']
    """
    parser = argparse.ArgumentParser(
        prog="astrodeblend", description="Deblend overlapping galaxies with a conditional GAN.",
        epilog="Run 'astrodeblend COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"astrodeblend {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_info, _add_make_dataset, _add_train, _add_sample, _add_deblend,
                _add_evaluate, _add_demo):
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run the ``astrodeblend`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (``sys.argv[1:]`` by default).

    Returns
    -------
    int
        0 on success, 1 when some inputs of a batch failed, 2 on bad input.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args) or 0)
    except AstrodeblendError as exc:
        print(f"astrodeblend: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("astrodeblend: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
