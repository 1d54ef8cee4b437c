"""The ``astrodeblend`` command line.

Usage examples::

    astrodeblend --version
    astrodeblend info cutout.fits galaxy.jpg
    astrodeblend make-dataset --images DIR --protocol reiman --n 20000 --seed 1 --out train.h5
    astrodeblend train --data train.h5 --out runs/r1 --epochs 20 --device auto
    torchrun --nproc_per_node 4 -m astrodeblend train --data train.h5 --out runs/r1
    astrodeblend deblend cutout.fits other.fits --output-dir out/ --png
    astrodeblend deblend skysub.fits --background none --mode linear --output-dir out/
    astrodeblend evaluate --images DIR --protocol physical --n 200 --output-dir eval/
    astrodeblend sample --n 16 --out samples.png
    astrodeblend demo --output-dir demo/

Every subcommand is a thin call into the library.  Errors that come from bad
input are printed on one line (``astrodeblend: error: ...``) and the exit
status is 2; a batch where some files failed exits with 1; an interrupted
``deblend`` exits with 130 and says how to resume.  ``COMMAND --help``
shows each subcommand's description, options with their defaults, and
examples.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from ._version import __version__
from .errors import AstrodeblendError
from .utils import PRECISIONS

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

# the same as astrodeblend.batch.MODES and FLUX_METHODS (kept here: no imports at start-up)
_MODES = ("auto", "display", "linear")
_FLUX_METHODS = ("weighted", "conserve", "model")


def _int_seed(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, not {text!r}") from None


def _workers(text):
    """``--workers``: a positive integer or ``auto``."""
    return "auto" if text.strip().lower() == "auto" else _positive_int(text)


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


_DEVICE_HELP = "torch device: auto (CUDA when available, else CPU), cpu or cuda"
_NO_PROGRESS_HELP = ("hide progress (a bar on a terminal; otherwise a line every 50 items "
                     "or 30 s on stderr)")


class _HelpFormatter(argparse.HelpFormatter):
    """Fill descriptions by paragraph, keep examples as written, show defaults.

    Like `argparse.ArgumentDefaultsHelpFormatter`, but without the noise of
    ``(default: None)`` and ``(default: False)``: options whose default is
    None say in their own help what happens when they are not given.
    """

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            if paragraph.startswith("examples:"):  # one command per line, unwrapped
                paragraphs.append("\n".join(indent + line for line in paragraph.splitlines()))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width,
                                                initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or not action.option_strings
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def _parser(sub, name, *, summary, description, examples):
    """Add subcommand ``name`` with a one-line summary, a description and examples."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return sub.add_parser(name, help=summary, description=description, epilog=epilog,
                          formatter_class=_HelpFormatter)


# --------------------------------------------------------------------- info
def _add_info(sub):
    p = _parser(sub, "info", summary="describe image files (shape, bands, WCS, masking)",
                description="Print one line per file: shape, bands, sky centre, pixel "
                            "scale, value space and masked fraction.",
                examples=["astrodeblend info cutout.fits galaxy.jpg",
                          "astrodeblend info --hdu SCI mosaic.fits"])
    p.add_argument("files", nargs="+", metavar="FILE", help="FITS, JPG or PNG files")
    p.add_argument("--hdu", default=None,
                   help="HDU name or number to read (FITS; default: the first HDU with image "
                        "data)")
    p.add_argument("--max-image-pixels", type=_positive_int, default=None,
                   help=_MAX_IMAGE_PIXELS_HELP)
    p.set_defaults(func=_cmd_info)


_MAX_IMAGE_PIXELS_HELP = ("refuse files that declare more pixel values than this (bands x "
                          "rows x columns, in any HDU), before decoding them (default: 2**27 "
                          "= 134217728, 512 MiB as float32)")


def _cmd_info(args):
    from .io import describe_image
    from .io.readers import _default_max_pixels

    status = EXIT_OK
    for path in args.files:
        try:
            with _default_max_pixels(getattr(args, "max_image_pixels", None)):
                print(describe_image(path, hdu=args.hdu))
        except AstrodeblendError as exc:
            print(f"astrodeblend: error: {exc}", file=sys.stderr)
            status = EXIT_ERROR
    return status


# ------------------------------------------------------------- make-dataset
def _add_make_dataset(sub):
    p = _parser(sub, "make-dataset", summary="build a training set of blended scenes",
                description="Blend isolated galaxies into scenes with known truth and "
                            "write them to an HDF5 training set (train, validation and test "
                            "splits by galaxy).  Rerunning the same command resumes it.",
                examples=["astrodeblend make-dataset --images gz/images --n 20000 --out reiman.h5",
                          "astrodeblend make-dataset --images gz/images --protocol physical "
                          "\\",
                          "    --n 5000 --n-galaxies 3 --seed 1 --out physical.h5"])
    p.add_argument("--images", required=True, help="folder of galaxy images (JPG/FITS)")
    p.add_argument("--protocol", default="reiman",
                   choices=["paper", "reiman", "physical", "survey"], help="blending protocol")
    p.add_argument("--n", type=_positive_int, required=True,
                   help="number of scenes to make (over all splits)")
    p.add_argument("--seed", type=_int_seed, default=0,
                   help="random seed: the same seed gives the same scenes")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--split", default="0.8,0.1,0.1",
                   help="train,validation,test fractions of the galaxies")
    p.add_argument("--n-galaxies", type=_positive_int, default=None,
                   help="galaxies per scene (physical: default 2; survey: default 0-4 "
                        "drawn per scene)")
    p.add_argument("--psf-fwhm", type=float, default=None,
                   help="Gaussian PSF FWHM in pixels (physical protocol; default: the "
                        "protocol's own)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new file instead of appending/resuming")
    p.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)
    p.set_defaults(func=_cmd_make_dataset)


def _cmd_make_dataset(args):
    from .data import build_dataset

    fractions = _parse_split(args.split)
    kwargs = {} if args.n_galaxies is None else {"n_galaxies": args.n_galaxies}
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
    p = _parser(sub, "train", summary="train the deblending GAN",
                description="Train the conditional generator, the centre detector and "
                            "(optionally) the unconditional sampler on make-dataset files.  "
                            "The run folder gets checkpoints, history.csv and plots; "
                            "--resume continues a run.  Run it under torchrun for several "
                            "GPUs or processes.",
                examples=["astrodeblend train --data reiman.h5 --out runs/r1 --epochs 20",
                          "astrodeblend train --data reiman.h5 physical.h5 --out runs/r2 "
                          "--device cuda",
                          "torchrun --nproc_per_node 4 -m astrodeblend train "
                          "--data reiman.h5 --out runs/r3"])
    p.add_argument("--data", required=True, nargs="+", metavar="FILE",
                   help="training-set HDF5 file(s) (make-dataset); protocols may be mixed")
    p.add_argument("--out", required=True, help="run folder for checkpoints, logs and plots")
    # None = take the value from --config, the resumed run, or TrainConfig's default
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="passes over the training split (default: 20, or --config's)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="scenes per step (per process with torchrun) (default: 32, or "
                        "--config's)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="Adam learning rate (default: 2e-4, or --config's)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help=_DEVICE_HELP)
    p.add_argument("--seed", type=_int_seed, default=None,
                   help="random seed of initialisation, order and augmentation "
                        "(default: 0, or --config's)")
    p.add_argument("--config", default=None,
                   help="JSON file of TrainConfig settings (explicit options above win)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="fine-tune: start a new run from the networks of this checkpoint "
                        "('default': the shipped model; 'default_full': its full checkpoint, "
                        "with a discriminator for adversarial fine-tuning) instead of random "
                        "weights")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--reschedule", action="store_true",
                   help="with --resume and a new --epochs: lay the learning-rate cosine and the "
                        "adversarial warm-up/ramp out again over the new epochs (by default "
                        "the schedule fixed when the run started is kept)")
    p.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args):
    from .train import train_from_cli

    return train_from_cli(args)


# ------------------------------------------------------------------- sample
def _add_sample(sub):
    p = _parser(sub, "sample", summary="draw galaxies from the unconditional generator",
                description="Draw new galaxy images from a trained unconditional generator "
                            "and save them as a PNG grid or a FITS cube.",
                examples=["astrodeblend sample --n 16 --seed 3 --out samples.png",
                          "astrodeblend sample --model runs/r1/checkpoint_best.pt --n 64 "
                          "--out samples.fits"])
    p.add_argument("--model", default=None,
                   help="checkpoint with an unconditional generator (default: the shipped "
                        "model)")
    p.add_argument("--n", type=_positive_int, default=16, help="number of galaxies to draw")
    p.add_argument("--seed", type=_int_seed, default=0,
                   help="random seed: the same seed draws the same galaxies")
    p.add_argument("--out", required=True, help="PNG grid or FITS cube to write")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help=_DEVICE_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args):
    from .train import sample_from_cli

    return sample_from_cli(args)


# ------------------------------------------------------------------ deblend
_DEBLEND_DESCRIPTION = """\
Deblend FITS, JPG or PNG images into one FITS result each
(OUTPUT_DIR/<name>_deblended.fits) and a run log (deblend_log.csv).

Restartable: outputs are written atomically, and outputs that exist and verify
are skipped, so an interrupted run resumes when the same command is run again.
Inputs that fail are reported on one line each and the batch goes on (exit
status 1).  --mode, --background, --flux, --batch-size, --augment, --precision and
--no-halos apply to the gan method."""


def _add_deblend(sub):
    p = _parser(sub, "deblend", summary="deblend FITS or JPG images into FITS results",
                description=_DEBLEND_DESCRIPTION,
                examples=["astrodeblend deblend cutout.fits galaxy.jpg --output-dir results/ "
                          "--png",
                          "astrodeblend deblend survey_cutouts/ @more.txt --output-dir "
                          "results/ --workers 4",
                          "astrodeblend deblend skysub.fits --background none --output-dir "
                          "results/",
                          "astrodeblend deblend jpg_values.fits --mode display --output-dir "
                          "results/"])
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files, globs, folders, or @list.txt files of paths; files of one "
                        "folder with commas between them (g.fits,r.fits,i.fits) are one "
                        "image, one file per band")
    p.add_argument("--output-dir", required=True,
                   help="folder for the results and the run log (created if needed)")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--method", default="gan",
                   help="deblending method: gan, or a baseline: segmentation, fluxshare")
    p.add_argument("--mode", default="auto", choices=list(_MODES),
                   help="value space of the inputs: auto takes JPG/PNG, and FITS that look "
                        "like a JPG's RGB (3 planes of 0-1 or 0-255, no WCS, sky at black), as "
                        "display-stretched and other FITS as linear flux; display is for FITS "
                        "files holding display values (0-1 or 0-255 from a JPG); linear forces "
                        "linear flux")
    p.add_argument("--background", default="auto", metavar="auto|none|VALUE[,VALUE...]",
                   help="sky level: auto estimates it with the sources masked; none means "
                        "the input is already sky-subtracted (0); or numbers, one for all "
                        "bands or one per band")
    p.add_argument("--flux", default=None, choices=list(_FLUX_METHODS),
                   help="how SOURCE pixels are made: weighted combines each source's share "
                        "of the input pixels and its model, pixel by pixel, by their noise "
                        "and error; conserve shares the input pixels (sources + residual = "
                        "input); model takes the generator's noiseless estimate (noise stays "
                        "in the residual) (default: the deblender's default, weighted)")
    p.add_argument("--full-frame", action="store_true",
                   help="write full-size SOURCE HDUs instead of cutouts over each "
                        "source's footprint")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help=_DEVICE_HELP)
    p.add_argument("--hdu", default=None,
                   help="HDU name or number to read (FITS; default: the first HDU with image "
                        "data)")
    p.add_argument("--mask", default=None, metavar="MASK",
                   help="bad-pixel flags (FITS, non-zero = bad), added to each input's own "
                        "mask: one file for all inputs, or a name with {stem} (the input's "
                        "name less its suffix) in each input's folder, e.g. "
                        "'{stem}_mask.fits'")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--png", action="store_true", help="also write a quick-look PNG per input")
    p.add_argument("--workers", type=_workers, default="auto",
                   help="parallel worker processes on this machine, this one included, "
                        "each with its own model copy (a process pool; clusters: "
                        "--scheduler); default auto: one more per 64 inputs, up to 4 and "
                        "the usable cores, one on a GPU")
    p.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler, e.g. tcp://host:8786 "
                        "(default: none, work locally)")
    p.add_argument("--max-pixels", type=_positive_int, default=None,
                   help="largest image deblended, in pixels per band; larger ones fail "
                        "(default: 2**24, a 4096 x 4096 frame)")
    p.add_argument("--max-image-pixels", type=_positive_int, default=None,
                   help=_MAX_IMAGE_PIXELS_HELP)
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="stamps per forward pass of the networks, gathered across images "
                        "(gan only; default: 64 on a CPU, 512 on a GPU)")
    p.add_argument("--augment", type=int, choices=[1, 2, 4, 8], default=None,
                   help="symmetric copies (flips, transpositions) of each stamp whose "
                        "generator outputs are averaged: better sources, the generator's "
                        "time times N (gan only; default: 2)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="arithmetic of the networks (gan only; default: auto, bfloat16 "
                        "autocast on a CPU with native bfloat16, float16 on a GPU, else "
                        "float32)")
    p.add_argument("--no-halos", action="store_true",
                   help="leave the smoothed faint light just outside the footprints (a "
                        "bright galaxy's outer halo) in the residual instead of giving it to "
                        "the sources (gan only)")
    p.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)
    p.set_defaults(func=_cmd_deblend)


def _cmd_deblend(args):
    from .batch import deblend_from_cli

    return deblend_from_cli(args)


# ----------------------------------------------------------------- evaluate
_METHODS = ("gan", "segmentation", "fluxshare")


def _add_evaluate(sub):
    p = _parser(sub, "evaluate", summary="score deblenders on blends with ground truth",
                description="Blend held-out galaxies with a protocol, deblend the scenes "
                            "with each method, and score the sources against the truth "
                            "(PSNR, SSIM, flux, centroid, detection).  Writes JSON and CSV "
                            "summaries, per-scene CSV, a gallery and histograms.",
                examples=["astrodeblend evaluate --images gz/images --protocol physical "
                          "--output-dir eval/",
                          "astrodeblend evaluate --images gz/images --methods gan,fluxshare "
                          "\\",
                          "    --split validation --n 50 --output-dir tune/"])
    p.add_argument("--images", required=True, help="folder of isolated galaxy images")
    p.add_argument("--protocol", default="reiman",
                   choices=["paper", "reiman", "physical", "survey"],
                   help="blending protocol of the scenes")
    p.add_argument("--n", type=_positive_int, default=200, help="number of scenes")
    p.add_argument("--seed", type=_int_seed, default=0,
                   help="random seed: the same seed gives the same scenes")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--methods", default=",".join(_METHODS),
                   help=f"comma-separated methods to compare, from: {', '.join(_METHODS)}")
    p.add_argument("--split", default="test", choices=["test", "validation", "train", "all"],
                   help="which galaxies to use: test (held out from training), validation "
                        "(for tuning), train, or all")
    p.add_argument("--output-dir", required=True,
                   help="folder for the summaries, tables and figures (created if needed)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help=_DEVICE_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation")
    p.add_argument("--allow-training-galaxies", action="store_true",
                   help="score the gan on galaxies its checkpoint was trained on (refused by "
                        "default when the checkpoint records its training galaxies)")
    p.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args):
    from .evaluate import evaluate_from_cli

    return evaluate_from_cli(args)


# --------------------------------------------------------------------- demo
def _add_demo(sub):
    p = _parser(sub, "demo", summary="deblend a built-in blended scene (offline)",
                description="Blend two built-in galaxies, deblend them with the shipped "
                            "model, and write the FITS result and a quick-look PNG.  Needs "
                            "no data and no network.",
                examples=["astrodeblend demo",
                          "astrodeblend demo --output-dir demo/ --device cpu"])
    p.add_argument("--output-dir", default="astrodeblend-demo",
                   help="folder for the demo's FITS result and PNG")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help=_DEVICE_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo's files")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args):
    from .pipeline import run_demo

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
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our output went away (``astrodeblend info x.fits | head``):
        # stop quietly, as Unix tools do
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
