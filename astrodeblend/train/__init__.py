"""Training the deblending GAN: data, losses, checkpoints, DDP, logs and plots.

`train` reads one or more training-set files written by
`astrodeblend.data.build_dataset` (HDF5, layout in ``DEVELOPERS.md``) and
trains, in one loop:

- the `~astrodeblend.models.DeblendGenerator` (conditional U-Net), run once
  per galaxy of each scene and conditioned on a Gaussian heatmap at that
  galaxy's centre;
- the `~astrodeblend.models.PatchDiscriminator` (conditional PatchGAN), only
  once the adversarial term is switched on;
- the `~astrodeblend.models.CenterDetector`, with its own optimiser;
- optionally the unconditional `~astrodeblend.models.SampleGenerator`
  (``TrainConfig.train_sampler``/``sampler_only``) on the isolated truths.

Value space
    Scenes of the ``physical`` protocol (linear flux) are mapped to model
    space with ``stretch(x / robust_peak(blend))`` (one scale per scene, for
    the blend and its components); ``reiman``/``paper`` scenes are already
    display-stretched and are used as they are.

Generator loss
    ``w_l1 * L1_scaled + w_adv(epoch) * BCE(D(fake), 1) + w_flux * flux``:

    - ``L1_scaled``: per galaxy ``mean|out - truth| / (mean|truth| + l1_eps)``
      averaged over galaxies, so a faint neighbour counts as much as a
      bright one;
    - adversarial weight 0 for ``adv_warmup_epochs`` (half the run by
      default), then a linear ramp to ``w_adv`` over ``adv_ramp_epochs``;
      the discriminator is only trained while the weight is positive;
    - ``flux`` (physical scenes only): per galaxy, the relative error of the
      total linear flux, ``|sum unstretch(out) - sum unstretch(truth)| /
      (sum |unstretch(truth)| + eps)``.

Detector loss
    Binary cross-entropy between the logits and the target map ``max_k
    make_heatmap(center_k)`` (soft Gaussian targets of ``heatmap_sigma``
    px; unlike CenterNet's focal loss this needs no integer peak pixel, so
    sub-pixel centres are learnt directly).

Reproducibility
    The shuffling and augmentation of epoch ``e`` are drawn from generators
    seeded with ``(seed, e)``; checkpoints hold the model, optimiser and
    scaler states and the global RNG states, so that resuming from the last
    epoch checkpoint gives bit-identical weights on the CPU.

Data
    The files are read through `astrodeblend.data.SceneFile` and fed by a
    `torch.utils.data.DataLoader`: files larger than
    ``TrainConfig.max_memory_gb`` are read by worker processes (each opens
    the HDF5 file itself) while the model trains; smaller ones are read
    into memory once.

Run folder
    ``config.json``, ``history.csv``, ``loss.png``, ``samples_epochNNN.png``,
    ``checkpoint_last.pt`` (+ ``checkpoint_last.sha256``, the generator
    weights hash) and ``checkpoint_best.pt`` (best validation PSNR).

Modules
    ``config`` (`TrainConfig`, config files, resumed runs), ``batches``
    (scenes to model-space batches), ``losses``, ``loop`` (the steps,
    epochs, checkpoints, DDP and AMP), ``sampler`` (`sample`) and ``cli``
    (the ``train`` and ``sample`` subcommands).
"""

from .batches import load_scenes
from .cli import sample_from_cli, train_from_cli
from .config import TrainConfig, TrainResult
from .loop import train
from .sampler import sample

__all__ = ["TrainConfig", "TrainResult", "train", "train_from_cli", "sample",
           "sample_from_cli", "load_scenes"]
