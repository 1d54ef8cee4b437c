"""Training the deblending GAN: data, losses, checkpoints, DDP, logs and plots.

`train` reads one or more training-set files written by
`astrodeblend.data.build_dataset` (HDF5, layout in ``DEVELOPERS.md``) and
trains, in one loop:

- the `~astrodeblend.models.DeblendGenerator` (conditional U-Net), run once
  per listed source of each scene (galaxies, and the stars of ``survey``
  scenes) and conditioned on a Gaussian heatmap at that source's centre;
- the `~astrodeblend.models.PatchDiscriminator` (conditional PatchGAN), only
  once the adversarial term is switched on;
- the `~astrodeblend.models.CenterDetector`, with its own optimiser, to
  find every listed source and nothing else (a scene of one source is one
  peak, a scene of none an empty map);
- optionally the unconditional `~astrodeblend.models.SampleGenerator`
  (``TrainConfig.train_sampler``/``sampler_only``) on the isolated truths.

Value space
    Scenes of the ``physical`` and ``survey`` protocols (linear flux,
    ``astrodeblend.train.batches.LINEAR_PROTOCOLS``) are mapped to model
    space with ``stretch(x / robust_peak(blend))`` (one scale per scene, for
    the blend and its components); ``reiman``/``paper`` scenes are already
    display-stretched and are used as they are.  Files of different
    protocols (same bands and size) are mixed in one run.

Generator loss
    ``w_l1 * L1_scaled + w_adv(epoch) * BCE(D(fake), 1) + w_flux * flux``:

    - ``L1_scaled``: per galaxy ``mean|out - truth| / (mean|truth| + l1_eps)``
      averaged over galaxies, so a faint neighbour counts as much as a
      bright one;
    - adversarial weight 0 for ``adv_warmup_epochs`` (half the schedule by
      default), then a linear ramp to ``w_adv`` over ``adv_ramp_epochs``;
      the discriminator is only trained while the weight is positive
      (``w_adv = 0``: never, the ablation without adversarial term);
    - ``flux`` (linear-flux scenes only): per source, the relative error of
      the total linear flux, ``|sum unstretch(out) - sum unstretch(truth)| /
      (sum |unstretch(truth)| + eps)``.

Schedule
    The learning-rate cosine and the default adversarial warm-up and ramp
    are laid out over ``TrainConfig.schedule_epochs``, fixed to ``epochs``
    when a run starts and kept in its checkpoints: resuming with another
    ``epochs`` continues the same schedule (after its end at the final
    learning rate and the full adversarial weight);
    ``train(..., reschedule=True)`` (``--reschedule``) lays it out again.

Augmentation
    The 8 flips and transposes of the square and a random integer shift of
    up to ``shift_fraction`` of the frame side per axis (so that no position
    is special), blend, truths and centres together; sources whose centre
    leaves the frame stop being targets, the vacated border takes the
    per-band median of each image's outer ring.

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

Validation
    The first ``val_max_scenes`` validation scenes of *every* file are
    scored each epoch, per protocol (``val_psnr_survey``,
    ``val_det_recall_reiman``, ...: L1, PSNR, SSIM, the blend's PSNR,
    detector recall, precision and single-peak rate of one-source scenes);
    ``val_psnr`` and the other overall columns are the means over the
    protocols and choose ``checkpoint_best.pt``.

Galaxy split
    Checkpoints record the galaxies of the training scenes
    (``galaxy_split``: the split fractions of the files, the number and a
    sha256 of the ids, and the ids), read from the files' ``ids``;
    `astrodeblend.evaluate.evaluate` refuses to score the model on them.

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
