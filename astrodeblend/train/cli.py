"""``astrodeblend train`` and ``astrodeblend sample``: thin calls into `train` and `sample`."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import InvalidInputError, OutputExistsError
from .loop import train
from .sampler import sample

__all__ = ["train_from_cli", "sample_from_cli"]


def train_from_cli(args):
    """Run ``astrodeblend train`` from parsed arguments.

    Parameters
    ----------
    args : `argparse.Namespace`
        With ``data`` (one path or a list), ``out``, ``epochs``,
        ``batch_size``, ``lr``, ``device``, ``seed``, ``config``,
        ``init_from`` (optional), ``resume``,
        ``reschedule`` (optional) and ``no_progress``.

    Returns
    -------
    int
        Exit status 0.
    """
    result = train(args.data, args.out, config=args.config, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, device=args.device,
                   seed=args.seed, init_from=getattr(args, "init_from", None),
                   resume=args.resume,
                   reschedule=getattr(args, "reschedule", False),
                   progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result.history[-1] if result.history else {}
        psnr = last.get("val_psnr", math.nan)
        print(f"trained {len(result.history)} epoch(s) in {result.run_dir}: "
              f"val PSNR {psnr:.2f} dB (best {result.best_psnr:.2f} dB at epoch "
              f"{result.best_epoch}); checkpoint {result.checkpoint}")
        cfg = result.config
        if cfg is not None and cfg.schedule_length != cfg.epochs:
            print(f"note: the learning-rate and adversarial schedule stays laid out over "
                  f"{cfg.schedule_length} epochs (fixed when the run started); epochs after "
                  f"it run at the final learning rate. --resume --reschedule lays it out over "
                  f"{cfg.epochs} epochs")
    return 0


def sample_from_cli(args):
    """Run ``astrodeblend sample``: write a PNG grid or a FITS cube of samples.

    Parameters
    ----------
    args : `argparse.Namespace`
        With ``model``, ``n``, ``seed``, ``out``, ``device``, ``overwrite``.

    Returns
    -------
    int
        Exit status 0.
    """
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".fits", ".fit", ".fts"):
        raise InvalidInputError(f"--out {out} must end in .png or .fits")
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out} exists (use --overwrite to replace it)")
    images = sample(args.n, checkpoint=args.model, seed=args.seed, device=args.device)
    if suffix == ".png":
        from ..plotting import plot_image_grid

        plot_image_grid(images, out, overwrite=args.overwrite)
    else:
        from astropy.io import fits

        from ..io import atomic_write

        hdu = fits.PrimaryHDU(images)
        hdu.header["ADBSEED"] = (int(args.seed), "seed of the latent noise")
        hdu.header["ADBDISP"] = (True, "values are display-stretched (model space)")
        hdu.header.add_history(f"astrodeblend sample --n {args.n} --seed {args.seed}")
        with atomic_write(out, overwrite=args.overwrite) as tmp:
            hdu.writeto(tmp)
    print(f"wrote {len(images)} samples to {out}")
    return 0
