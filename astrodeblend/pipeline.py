"""The deblending pipeline: `Deblender`, `deblend` and the demo.

(``astrodeblend.deblend`` is the function `deblend`; this module is its home.)

A `Deblender` turns an image of any size and band count into a
`~astrodeblend.result.DeblendResult`:

1. **Value space.**  Display-stretched images (JPG/PNG, header card
   ``ADBDISP``) are used as they are ("display" mode).  Linear images (FITS)
   have their sky level removed (`~astrodeblend.detect.estimate_sky`)
   and are mapped to the model's space by dividing by a robust peak and
   applying the power-law stretch ``sign(x) |x| ** (1 / 2.2)``
   (`~astrodeblend.models.stretch`) — the same mapping that training uses for
   ``physical`` scenes ("linear" mode).
2. **Sky and masks.**  The sky is estimated once, with significant sources
   masked (`~astrodeblend.detect.estimate_sky`); masked, NaN and BLANK
   pixels are filled for the networks (never with minus the sky) and go to
   no source.
3. **Groups and detection.**  Blend groups are found over the whole frame
   (`~astrodeblend.detect.find_groups`).  The learned centre detector runs
   on shifted stamps of each group (or shifted tilings of crowded frames);
   its peaks count where the stamps agree or the data peak, so that its
   layout prior (a galaxy at the stamp centre) invents nothing.  photutils
   peaks are added where the models leave light unexplained.
4. **Extraction.**  The conditional generator runs on a stamp centred on
   each source, of its group's size (downsampled to the working size for
   large groups and resampled back), tapered to zero at the stamp border.
5. **Footprints and flux** (`astrodeblend.footprints`).  Each source owns a
   footprint; models are scaled band by band to the data, and each band's
   footprint pixels are shared in proportion to the models
   (``flux='conserve'``), replaced by them (``flux='model'``), or (the
   default, ``flux='weighted'``) each pixel is the inverse-variance weighted
   mean of the source's share and its model.  Sources are
   cutouts over their footprints; the rest of the frame stays in the
   residual.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._sources import (
    _JOIN_RATIO,
    _close_pairs,
    _flux_midpoint,
    _join_halves,
    _merge_duplicates,
    _model_centre,
    _needed,
    _separate,
    _unexplained,
)
from ._version import __version__
from .errors import CheckpointError, InvalidInputError
from .footprints import HALO_SIGMA, MODEL_ERROR, WEIGHTED_SIGMA
from .image import GalaxyImage, as_galaxy_image, looks_display
from .result import DeblendResult
from .utils import plural, resolve_device, resolve_precision
from .weights import default_model_path

__all__ = ["Deblender", "deblend", "get_deblender", "default_model_path", "run_demo",
           "band_mapping", "demo_scene", "METHODS"]

#: Names accepted by `get_deblender`.
METHODS = ("gan", "segmentation", "fluxshare")

#: Display images: the confirmation (`_needed`) tests the groups whose stamp
#: is more than this many times the working size, and only their detector
#: peaks must be peaks of the data (`_snap_to_peaks`).  The detector was
#: trained on Galaxy Zoo JPGs downsampled by about 3; a whole 424 px JPG's
#: galaxy, seen on a stamp downsampled by more than 2, shows its arms and
#: knots as peaks, while the pairs of the seed paper's 128 px scenes (stamps
#: of 1.0-1.7 times the working size in 95 % of them) lost a companion to
#: either test: to the confirmation, both found in 93.5 % of 200 ``paper``
#: scenes against 91.5 % when every group larger than the working size was
#: tested; to the peaks of the data (a fainter galaxy on a brighter one's
#: light, which the pixel-wise maximum of the blend leaves no peak), 96.0 %
#: against 95.5 % (test split; validation 95.5 against 94.0 %).
_DISPLAY_CONFIRM_SCALE = 2.0


def _is_display(image):
    return bool(image.meta.get("ADBDISP", False))


def _display_scale(image, bad):
    """Return the full scale of display values: 1 (0-1), 255 (8 bits) or 65535 (16 bits)."""
    values = image.data[~bad]
    top = float(values.max()) if values.size else 0.0
    for scale in (1.0, 255.0, 65535.0):
        if top <= scale:
            return scale
    raise InvalidInputError(f"{image.source or 'image'}: display values up to {top:.4g} "
                            "(above 65535) are not 8- or 16-bit display values: read it "
                            "as linear flux (mode='linear', --mode linear)")


class Deblender:
    """Deblend images with a trained conditional generator and centre detector.

    Use `Deblender.load` rather than the constructor.

    Parameters
    ----------
    generator : `torch.nn.Module`
        A `~astrodeblend.models.DeblendGenerator`.
    detector : `torch.nn.Module` or None
        A `~astrodeblend.models.CenterDetector`; photutils is used when None.
    config : `~astrodeblend.models.ModelConfig`
        The models' configuration (working size, heatmap width, ...).
    device : `torch.device`
        Where the models run.
    name : str, optional
        Model name written to ``ADBMODEL``.
    model_hash : str, optional
        sha256 of the generator's and detector's weights together,
        written to ``ADBMHASH``.
    mode : {'auto', 'display', 'linear'}, optional
        Value space; ``'auto'`` picks display for images with ``ADBDISP``
        (JPG/PNG) and those that `~astrodeblend.image.looks_display` takes
        for a JPG's RGB saved as FITS, and linear otherwise.  Display values
        of 0-255 (or 0-65535) are divided by their full scale for the
        networks, and the sources multiplied back.
    detect_threshold : float, optional
        Minimum peak of the detector's centre heatmap (0..1); `load` takes
        the one a model was exported with (``deblender`` entry of the
        checkpoint) unless given, else 0.3.
    min_snr : float, optional
        Minimum signal-to-noise ratio, in a 3x3 aperture summed over bands,
        of the blend at a detected centre.
    batch_size : int, optional
        Stamps per forward pass of the networks, gathered across the images
        of `deblend_many`; default 64 on a CPU and 512 on a GPU.
    max_pixels : int, optional
        Largest image accepted, in pixels per band (default ``2**24``, a
        4096 x 4096 frame, about 1.5 GiB of working memory for three
        bands); larger images are refused with `InvalidInputError`.
    background : 'auto', float or array-like, optional
        Sky level subtracted: ``'auto'`` estimates it with the sources
        masked (`~astrodeblend.detect.estimate_sky`: a 2-D background on
        large images, a plane on small ones); give ``0`` for images
        known to be sky-subtracted, or one value per band.  The noise is
        always estimated.
    flux : {'weighted', 'conserve', 'model'}, optional
        How source pixels are made (`~astrodeblend.footprints.share_flux`):
        ``'conserve'`` splits each input pixel inside the footprints among
        the sources in proportion to their models, band by band (sources +
        residual = input, each source keeps its share of the noise);
        ``'model'`` writes the model's noiseless estimate (the noise stays
        in the residual); ``'weighted'`` (the default) takes in each pixel
        the inverse-variance weighted mean of the two, the share where the
        model is bright against the noise and the model where it is faint,
        with each band's flux that of the share (:ref:`flux-conservation`;
        real-galaxy scenes 48.8 / 46.4 dB against 46.5 / 44.2 with
        ``'conserve'``, median flux errors 5.2 / 4.9 % against 5.8 / 5.1 %).
        Display images (JPG) always use ``'model'``.
    monotonic : bool, optional
        Make each linear model decrease outwards from its centre where it is
        nearer to another source (`~astrodeblend.footprints.monotonic`)
        before the flux is shared, so that light the generator leaked from a
        neighbour goes back to it.
    confirm : bool, optional
        Keep a detector source that shares its group with
        a brighter one only where the other sources' models leave its light
        standing out of the residual by ``min_snr`` (the test of
        ``_unexplained``): the tip of an elongated galaxy, a knot or a noise
        peak in its outskirts is light the galaxy's model already explains.
        In display images only groups whose stamp is more than twice the
        working size are tested (a large galaxy seen downsampled, whose
        arms pass for peaks).
        Settable per model (``deblender`` entry of an exported checkpoint).
    separable : bool, optional
        In linear images of several bands, give each source's model one
        shape in every band (its bands summed) times a colour, refitted
        band by band, before the flux is shared (scarlet's morphology x
        SED): the generator's plane of a faint band picks up a few per cent
        of a neighbour bright in that band, which the summed shape dilutes.
        Two galaxies of opposite colours 10 px apart: worst band's median
        flux error 5.4 % against 9.8 % (3 bands), 6.4 % against 9.0 % (5).
    augment : {1, 2, 4, 8}, optional
        Symmetric copies of each stamp (flips, then transpositions:
        `~astrodeblend.models.symmetric_copies`) given to the
        generator, whose outputs, each turned back, are averaged (in linear
        flux for linear images): the network was trained on flipped and
        rotated scenes, and the mean of its estimates has less of their
        error.  The generator's time grows N times.  With 2 (the default),
        against 1: Galaxy Zoo ``reiman`` 31.20 / 30.51 dB against 31.08 /
        30.35, ``physical`` 40.27 / 40.62 against 39.93 / 40.38; real-galaxy
        scenes 48.9 / 46.4 dB and median flux errors 4.9 / 4.9 % against
        48.8 / 46.4 dB and 5.2 / 4.9 % (:ref:`symmetric copies <augment>`).
    halos : bool, optional
        In linear images, give each source the faint light just outside the
        footprints, smoothed (`~astrodeblend.footprints.sweep_halos`): the
        outer halo of a bright galaxy, below the noise of one pixel, which
        otherwise stays in the residual as a ring (:ref:`halos <halos>`;
        real-galaxy scenes 49.6 / 46.6 dB and median flux errors 3.9 /
        3.5 % against 49.5 / 46.7 dB and 4.1 / 4.5 % without).
    precision : {'auto', 'float32', 'bfloat16', 'float16'}, optional
        The arithmetic of the networks (`~astrodeblend.utils.resolve_precision`):
        ``'auto'`` runs them under float16 autocast on a GPU and bfloat16
        autocast on a CPU that multiplies bfloat16 natively (AVX-512 BF16 or
        AMX), where they are about twice as fast as in float32; everything
        around the networks stays in float32 or float64.  The outputs differ
        from float32's far below the noise, and the evaluation figures are
        the same but for a decision at a threshold in one scene of 150
        (:ref:`precision <precision>`).  ``'float32'`` for bit-for-bit
        the results of a CPU without bfloat16.

    Examples
    --------
    ``Deblender.load()`` gives the shipped model; a deblender can also wrap
    networks built in memory (here untrained, tiny ones):

    >>> from astrodeblend.models import ModelConfig, build_models
    >>> cfg = ModelConfig(generator_channels=4, detector_channels=4, discriminator_channels=4)
    >>> nets = build_models(cfg)
    >>> Deblender(nets["generator"], nets["detector"], cfg, device="cpu")
    <Deblender 'custom' bands=3 size=80 device=cpu mode=auto>
    """

    def __init__(self, generator, detector, config, *, device, name="custom", model_hash="",
                 mode="auto", detect_threshold=0.3, min_snr=5.0, batch_size=None,
                 max_pixels=None, background="auto", flux="weighted", monotonic=True,
                 confirm=False, separable=True, augment=2, halos=True, precision="auto"):
        if mode not in ("auto", "display", "linear"):
            raise InvalidInputError(f"mode must be 'auto', 'display' or 'linear', not {mode!r}")
        import torch

        # channels-last weights run the convolutions 15-40 % faster on CPUs
        # (benchmarks/bench_deblend.py); the networks convert their inputs
        fast = torch.channels_last
        self.generator = generator.to(device, memory_format=fast).eval()
        self.detector = (None if detector is None
                         else detector.to(device, memory_format=fast).eval())
        self.config = config
        self.device = device
        self.precision = resolve_precision(precision, torch.device(device))
        self.name = str(name)
        self.model_hash = str(model_hash)
        self.mode = mode
        self.detect_threshold = float(detect_threshold)
        self.min_snr = float(min_snr)
        if batch_size is None:
            batch_size = 512 if torch.device(device).type == "cuda" else 64
        self.batch_size = _check_batch_size(batch_size)
        self.size = int(getattr(config, "image_size", 80) or 80)
        self.n_bands = int(config.n_bands)
        self.heatmap_sigma = float(getattr(config, "heatmap_sigma", 1.5))
        self.max_pixels = int(max_pixels) if max_pixels else 2 ** 24
        self.flux = _check_flux(flux)
        self.monotonic = bool(monotonic)
        self.halos = bool(halos)
        self.confirm = bool(confirm)
        self.separable = bool(separable)
        self.augment = _check_augment(augment)
        if not (isinstance(background, str) and background == "auto"):
            try:
                background = np.atleast_1d(np.asarray(background, dtype=np.float64))
            except (TypeError, ValueError):
                raise InvalidInputError(f"background must be 'auto' or numbers, not "
                                        f"{background!r}") from None
        self.background = background

    # --------------------------------------------------------------- loading
    @classmethod
    def load(cls, path=None, *, device="auto", **kwargs):
        """Load a checkpoint, or the default model shipped in the package.

        Parameters
        ----------
        path : str or `pathlib.Path`, optional
            A checkpoint written by `astrodeblend.train` (``checkpoint_*.pt``)
            or a stripped model file.  The shipped default model when None.
        device : str, optional
            ``'auto'``, ``'cpu'`` or ``'cuda'``.
        **kwargs
            Passed to `Deblender` (``mode``, ``detect_threshold``, ...).

        Returns
        -------
        Deblender

        Raises
        ------
        CheckpointError
            If the file is missing, unsafe, corrupt or of another architecture.
        DeviceError
            If CUDA is requested and not available.

        Examples
        --------
        >>> deblender = Deblender.load(device="cpu")
        >>> deblender.name
        'default'
        """
        from ._checkpoint import load_checkpoint, load_models, models_hash

        device = resolve_device(device)
        if path is None:
            path = default_model_path()
            name = "default"
            if not path.is_file():
                raise CheckpointError(f"the default model {path} is missing from the "
                                      "installation")
        else:
            path = Path(path)
            name = path.name
        payload = load_checkpoint(path, map_location="cpu")
        stored = payload.get("models") if isinstance(payload.get("models"), dict) else {}
        if "generator" not in stored:
            raise CheckpointError(f"checkpoint {path} holds no deblending generator")
        names = [n for n in ("generator", "detector") if n in stored]
        models, config = load_models(payload, device=device, names=names)
        # the networks that deblend: a new detector is a new model (ADBMHASH)
        model_hash = models_hash({n: models[n].state_dict() for n in names})
        # settings the model was exported with (its detector's calibrated threshold)
        settings = payload.get("deblender") if isinstance(payload.get("deblender"), dict) else {}
        for key, kind in (("detect_threshold", float), ("confirm", bool), ("separable", bool)):
            if key in settings and key not in kwargs:
                kwargs[key] = kind(settings[key])
        return cls(models["generator"], models.get("detector"), config, device=device,
                   name=name, model_hash=model_hash, **kwargs)

    # ------------------------------------------------------------ interface
    def __call__(self, image, *, mode=None, flux=None):
        """Deblend one image.

        Parameters
        ----------
        image : `~astrodeblend.image.GalaxyImage`, `~astropy.nddata.NDData` or array
            ``(H, W)`` or ``(C, H, W)`` pixels of any band count (mapped to
            the model's bands by `band_mapping` and back).
        mode : {'auto', 'display', 'linear'}, optional
            Overrides the deblender's mode for this call.
        flux : {'weighted', 'conserve', 'model'}, optional
            Overrides the deblender's ``flux`` for this call.

        Returns
        -------
        `~astrodeblend.result.DeblendResult`

        Raises
        ------
        InvalidInputError
            If every pixel is masked, or an option is out of range.

        Examples
        --------
        >>> import numpy as np
        >>> from astropy.modeling.models import Gaussian2D
        >>> yy, xx = np.mgrid[:64, :64]
        >>> plane = Gaussian2D(1, 24, 32, 3, 3)(xx, yy) + Gaussian2D(0.6, 42, 30, 3, 2)(xx, yy)
        >>> noise = np.random.default_rng(0).normal(0, 0.01, (3, 64, 64))
        >>> result = Deblender.load(device="cpu")(np.stack([plane] * 3) + noise)
        >>> result.n_sources
        2
        """
        return self.deblend_many([image], mode=mode, flux=flux)[0]

    def deblend_many(self, images, *, mode=None, flux=None, return_exceptions=False):
        """Deblend several images together, their network inputs batched across images.

        The images are processed side by side: the stamps that the centre
        detector and the generator need for all of them are gathered into
        batches of up to ``batch_size`` before each network runs, so that
        small images keep the networks as busy as one large image would.
        The results are those of calling the deblender on each image alone
        (up to rounding in the batched convolutions).

        Parameters
        ----------
        images : iterable
            Images as accepted by `Deblender.__call__`.  All are held in
            memory together: pass a bounded number (a few dozen stamps'
            worth; `~astrodeblend.batch.deblend_files` does this for files).
        mode, flux : optional
            As `Deblender.__call__`, for every image.
        return_exceptions : bool, optional
            Put the exception of an image that cannot be deblended in its
            place of the list instead of raising it (the others are still
            deblended).

        Returns
        -------
        list of `~astrodeblend.result.DeblendResult`
            In the order of ``images`` (an exception in the place of a failed
            image with ``return_exceptions``).

        Raises
        ------
        InvalidInputError
            The first image's error, without ``return_exceptions``.

        Examples
        --------
        >>> import numpy as np
        >>> from astropy.modeling.models import Gaussian2D
        >>> yy, xx = np.mgrid[:48, :48]
        >>> rng = np.random.default_rng(1)
        >>> scenes = [np.stack([Gaussian2D(1, x, 24, 3, 3)(xx, yy)] * 3)
        ...           + rng.normal(0, 0.01, (3, 48, 48)) for x in (16, 24, 30)]
        >>> results = Deblender.load(device="cpu").deblend_many(scenes)
        >>> [r.n_sources for r in results]
        [1, 1, 1]
        """
        import torch

        steps = [self._steps(image, mode, flux) for image in images]
        with torch.inference_mode():
            outcomes = self._drive(steps)
        if not return_exceptions:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        return outcomes

    def _drive(self, steps):
        """Run the step generators of several images, batching their network requests.

        Each generator yields requests ``(network name, input tensors)`` and
        receives the network's output for them; the requests of all images
        for the same network are concatenated, run in batches of
        ``batch_size`` and split back.  Returns each generator's return
        value, or the exception it raised.
        """
        import torch

        outcomes, waiting = [None] * len(steps), {}

        def advance(index, value):
            try:
                waiting[index] = steps[index].send(value)
            except StopIteration as stop:
                waiting.pop(index, None)
                outcomes[index] = stop.value
            except Exception as exc:  # noqa: BLE001 - the image's own failure, kept for it
                waiting.pop(index, None)
                outcomes[index] = exc

        for index in range(len(steps)):
            advance(index, None)
        while waiting:
            # the detector's requests first: every image detects before it extracts
            name = "detector" if any(r[0] == "detector" for r in waiting.values()) \
                else "generator"
            asking = [(i, r[1]) for i, r in waiting.items() if r[0] == name]
            inputs = [torch.cat([r[k] for _, r in asking]) for k in range(len(asking[0][1]))]
            out = self._batched(getattr(self, name), *inputs)
            start = 0
            for index, request in asking:
                n = len(request[0])
                advance(index, out[start:start + n])
                start += n
        return outcomes

    def _steps(self, image, mode, flux):
        """Deblend one image: a generator that yields its network requests (see `_drive`)."""
        from .detect import NO_DATA_PIXELS, estimate_sky, find_groups, find_no_data
        from .footprints import (
            fill_masked,
            fit_amplitudes,
            grow_footprint,
            inpainted_regions,
            monotonic,
            share_flux,
            sweep_halos,
        )

        image = as_galaxy_image(image)
        mode = mode or self.mode
        flux = _check_flux(flux or self.flux)
        started = time.perf_counter()
        c, h, w = image.shape
        if h * w > self.max_pixels:
            raise InvalidInputError(f"{image.source or 'image'}: {w} x {h} pixels is more than "
                                    f"max_pixels={self.max_pixels} per band")
        bad = ~np.isfinite(image.data)
        if image.mask is not None:
            bad |= image.mask
        notes = []
        if mode == "auto" and _is_display(image):
            mode = "display"
        elif mode == "auto" and looks_display(image, bad):
            mode = "display"
            notes.append("mode: display (auto): three planes of 0-1 or 0-255 values without "
                         "WCS, none negative, the faintest at a black point (a JPG's RGB "
                         "saved as FITS; --mode linear to override)")
        elif mode == "auto":
            mode = "linear"
        scale = _display_scale(image, bad) if mode == "display" else 1.0
        given = image
        if scale != 1.0:
            # the networks work on display values of 0-1: a JPG's 0-255 saved as
            # FITS is scaled for them, its sources back to the input's units
            image = image.with_data(image.data / np.float32(scale), mask=image.mask,
                                    uncertainty=None if image.uncertainty is None
                                    else image.uncertainty / np.float32(scale))
            notes.append(f"display values of 0-{scale:g}: divided by {scale:g} for the "
                         "networks, sources multiplied back")
        if mode == "linear":
            # regions of one repeated value (drizzle edges, chip gaps) are
            # masked like NaN: taken as sky they turned every noise peak into a source
            empty = find_no_data(image.data) & ~bad
            if empty.any():
                bad |= empty
                image = image.with_data(image.data, mask=bad.copy(),
                                        uncertainty=image.uncertainty)
                notes.append(f"no data: {int(empty.sum())} pixel values masked, regions of "
                             f"{NO_DATA_PIXELS}+ pixels of one exact value (find_no_data)")
        if bad.all():
            raise InvalidInputError(f"{image.source or 'image'}: every pixel is masked or "
                                    "non-finite")
        history = [f"read: {image.source or 'in-memory image'} shape={image.shape} "
                   f"bands={','.join(image.bands)} masked={bad.mean():.2%}", *notes]
        bands = band_mapping(c, self.n_bands)
        if c != self.n_bands:
            history.append(f"bands: {c} image bands mapped to the model's "
                           f"{self.n_bands} (band_mapping) and back; flux shared per band")
        sky = estimate_sky(image, mask=bad.all(axis=0), display=mode == "display")
        level, noise = sky.level, sky.noise
        if not isinstance(self.background, str):
            if self.background.size not in (1, c):
                raise InvalidInputError(f"background has {self.background.size} values for "
                                        f"{plural(c, 'band')}")
            given = np.broadcast_to(self.background, (c,)).astype(np.float32)
            level = np.broadcast_to(given[:, None, None], image.shape)
            levels = ", ".join(f"{b:.4g}" for b in given)
            history.append(f"background: given by the caller ({levels})")
        else:
            history.append(f"background: {sky.method}; mean "
                           f"{', '.join(f'{b:.4g}' for b in level.mean(axis=(1, 2)))}")
        how = "pixel differences" if sky.filled else "sigma-clipped"
        history.append(f"noise: {', '.join(f'{n:.4g}' for n in noise)} ({how})")
        data = np.where(bad, np.float32(0.0), image.data)
        signal = fill_masked(data - level, bad, noise=noise)
        # what the networks see: linear images sky-subtracted, display images as they are
        work = signal if mode == "linear" else fill_masked(data, bad)
        pad = np.zeros(c, np.float32) if mode == "linear" else level.mean(axis=(1, 2))
        relative = _relative_noise(image, bad, sky.source_mask) if mode == "linear" else None
        if relative is None:
            snr_plane = np.einsum("chw,c->hw", signal, 1.0 / noise.astype(np.float32))
        else:  # deeper and shallower parts of the frame: each pixel by its own noise
            snr_plane = np.einsum("chw,c->hw", signal / relative, 1.0 / noise.astype(np.float32))
            history.append(f"noise: per pixel from the input's uncertainty (its "
                           f"{relative.min():.2g}-{relative.max():.2g} times the sky's median)")
        snr_plane /= np.sqrt(c)
        masked, masked_any = bad.all(axis=0), bad.any(axis=0)
        # masked blocks inpainted for the networks: of every band (they join
        # groups) and of any band (their detections need their border's S/N)
        blocks = inpainted_regions(masked)
        blocks_any = (blocks if np.array_equal(masked, masked_any)
                      else inpainted_regions(masked_any))
        groups, smoothed = find_groups(snr_plane, masked, n_sigma=3.0, n_pixels=10,
                                       filled=blocks)
        # a display stamp (a Galaxy Zoo JPG of the working size) often has no
        # sky to measure the aperture noise on: a galaxy's smooth light passes
        # for noise there, so its S/N assumes white noise; larger display
        # images have sky, its noise skewed by the black clip: its upper tail
        if mode == "linear" and not sky.filled:
            how = "differences"
        elif mode == "linear":
            how = "clipped"
        elif h > self.size or w > self.size:
            how = "tail"
        else:
            how = "white"
        aperture = _significance(snr_plane, groups > 0, noise=how)
        # the light inpainted into a masked block is no evidence of its own
        aperture = _cap_in_blocks(aperture, blocks_any)
        plans = self._plan(groups, image.shape[1:])
        # the detector's peaks: their S/N also in wider apertures (a resolved
        # companion spreads beyond 3x3 pixels, more so in a downsampled stamp)
        wide = (_wide_significance(snr_plane, groups, plans, self.size, how, blocks_any)
                if self.detector is not None else {})
        # frame-size planes no longer needed (memory of large images); display
        # images keep their data, which their sources share
        del snr_plane, sky, level
        if mode == "linear":
            data = None
        n_groups = int(groups.max())
        history.append(f"groups: {n_groups} (10 connected pixels above 3 sigma of the "
                       "smoothed S/N, as photutils detect_sources)")
        centers, candidates, methods, n_edge, n_outside = yield from self._detect(
            work, pad, groups, plans, smoothed, aperture, wide, mode, bands)
        if n_outside:
            history.append(f"detect: {plural(n_outside, 'detector peak')} outside every group "
                           f"kept (a display stamp; all three runs agree, S/N >= "
                           f"{self.min_snr:g}: a galaxy on light the sky level took in)")
        del wide
        models = yield from self._models(work, pad, centers, plans, mode, bands, groups)
        n_found = len(models)
        if self.detector is not None and masked_any.any():
            # a masked block on a galaxy's core: the detector, seeing its
            # inpainted light, can put two centres in it, which get the same
            # model.  Elsewhere sources whose models look alike stay: the
            # generator often returns the brighter galaxy for a faint
            # companion beside it, and that test dropped two true galaxies
            # for every knot (30 merges in 1,200 Galaxy Zoo scenes); a
            # galaxy's halves are joined by fit (_join), its knots tested by
            # _needed
            models = _merge_duplicates(models, sky=None if mode == "linear" else pad,
                                       where=masked_any)
        merged = n_found - len(models)
        sky_in_model = None if mode == "linear" else pad
        # weighted sources take their faint pixels from the model, not the
        # noisy data: their footprints can reach further into the wings
        reach = ({"n_sigma": WEIGHTED_SIGMA} if mode == "linear" and flux == "weighted"
                 else {})
        for model in models:
            grow_footprint(model, groups, noise, sky=sky_in_model, **reach)
        if mode == "linear":
            fit_amplitudes(signal, bad, models)
        unneeded = 0
        # linear images: outside its footprint, a model explains another
        # group's light only with its monotonic wings (the generator passes a
        # neighbour's light through: a star beside a galaxy was taken for the
        # galaxy's light); display models carry the sky and their light is not
        # additive: the whole model
        territory = groups if mode == "linear" else None
        wings = {}  # the models' monotonic copies, made once
        if self.confirm and self.detector is not None:
            n_before = len(models)
            # display images: only groups seen downsampled by more than
            # _DISPLAY_CONFIRM_SCALE (a whole JPG's galaxy at its native scale,
            # whose arms and knots pass for peaks); in blends near the scale
            # of training (the seed paper's 128 px scenes) a companion's
            # display light is not additive, and its extracted neighbour
            # often keeps a ghost of it
            tested = None if mode == "linear" else {
                label for label, (side, _) in plans.items()
                if side > _DISPLAY_CONFIRM_SCALE * self.size}
            models = _needed(models, signal, noise, aperture, self.min_snr, sky=sky_in_model,
                             groups=tested, group_map=territory, wings=wings)
            unneeded = n_before - len(models)
        added = _unexplained(candidates, models, signal, noise, aperture, self.min_snr,
                             group_map=territory, wings=wings)
        # not used again: the monotonic copies and two frame-size planes freed
        wings.clear()
        del aperture, smoothed
        if added:
            methods.add("photutils")
            extra = yield from self._models(work, pad, added, plans, mode, bands, groups)
            # two photutils peaks of one galaxy the models left unexplained
            models += _merge_duplicates(extra, sky=None if mode == "linear" else pad, reach=2.0)
        history.append(f"detect: {' + '.join(sorted(methods)) or 'nothing to search'} "
                       f"(CenterDetector threshold={self.detect_threshold}, agreement of "
                       f"shifted stamps, min S/N {self.min_snr} in 3x3 apertures or the "
                       f"detector's peaks in 5x5, 7x7 or the stamp's scale; photutils "
                       f"peaks where it finds nothing, and {len(added)} more whose light the "
                       f"models leave unexplained; {n_edge} dropped on the body of a galaxy "
                       f"cut by the frame's edge, no peak of the data; {merged} merged in a "
                       f"masked block whose model repeats a brighter neighbour's, {unneeded} "
                       f"dropped whose light a brighter neighbour's model explains) found "
                       f"{plural(len(models), 'source')}")
        for model in models:
            # footprints from the generator's models (the sources added last
            # have none yet): they reach into the wings
            if model.footprint is None:
                grow_footprint(model, groups, noise, sky=sky_in_model, **reach)
        if mode == "linear" and self.detector is not None and len(models) > 1:
            models, n_joined = yield from self._join(models, signal, bad, noise, work, pad,
                                                     plans, bands, groups, reach)
            if n_joined:
                history.append(f"joined: {plural(n_joined, 'pair')} of sources of one group "
                               f"that the generator's one source between them fits far "
                               f"better (chi^2 below {_JOIN_RATIO:.0%} of the pair's: halves "
                               f"of one galaxy)")
        if mode == "linear" and self.monotonic:
            # after the candidates' test (which trusts the generator: a knot
            # it gives to its galaxy is explained), light leaked from a
            # neighbour goes back to it
            for model in models:
                monotonic(model, [m.center for m in models if m is not model])
            history.append("models: made monotonic from each centre where nearer to another "
                           "source (scarlet's constraint, own structure kept)")
        if mode == "linear" and self.separable and c > 1:
            for model in models:
                _separate(model)
            history.append("models: one shape per source for every band (its bands summed), "
                           "times a colour per band")
        if mode == "linear":
            fit_amplitudes(signal, bad, models)
            history.append("models: amplitude per band fitted to the data in the footprints "
                           "(non-negative least squares)")
        else:
            flux = "model"  # display values do not add: each source is its model
            if h <= self.size and w <= self.size:
                # one stamp holds the whole image: the model's output is the
                # source, the sky it reproduces included
                for model in models:
                    model.footprint = np.ones(model.footprint.shape, dtype=bool)
        # positions: the detector's centre of a large galaxy can sit a few
        # pixels off its nucleus; its model's nearest peak does not
        xy = np.array([_model_centre(m, sky_in_model) for m in models],
                      dtype=float).reshape(-1, 2)
        history.append("positions: the nearest peak of each source's model (mean shift, "
                       "Gaussian window of 3 px)")
        cutouts, origins, segmap = share_flux(signal if mode == "linear" else data, bad,
                                              models, noise, flux=flux)
        del models  # the sources are their cutouts from here: the models' memory is freed
        if mode == "linear" and self.halos:
            cutouts, origins, segmap = sweep_halos(signal, bad, cutouts, origins, segmap, noise,
                                                   xy)
            history.append(f"halos: the smoothed light outside the footprints (Gaussian of "
                           f"3 px, above {HALO_SIGMA:g} sigma, touching a footprint) given to "
                           f"the source of largest flux / distance**2")
        how = {"weighted": f"each footprint pixel the inverse-variance weighted mean of the "
                           f"source's share of the input (noise) and its model (error "
                           f"{MODEL_ERROR:.0%}), the model's part scaled to the share's flux",
               "conserve": "each band's footprint pixels split in proportion to the models "
                           "(sources + residual = input)",
               "model": "each source is its model inside its footprint (noise in the "
                        "residual)"}[flux]
        history.append(f"flux: {flux}: {how}")
        history.append(f"extraction: generator on "
                       f"{plural(self.augment, 'symmetric copy', 'symmetric copies')} of each "
                       f"stamp (flips, transpositions), averaged; networks in {self.precision}")
        history.append(f"model: {self.name} sha256={self.model_hash[:16]}... "
                       f"astrodeblend {__version__}, {time.perf_counter() - started:.2f} s")
        if scale != 1.0:  # the input as given, its sources in its display values
            cutouts = [cutout * np.float32(scale) for cutout in cutouts]
            image = given
        catalog = DeblendResult.make_catalog(image, cutouts, xy[:, 0], xy[:, 1],
                                             origins=origins)
        return DeblendResult(image, cutouts, catalog, segmap, origins=origins, flux_mode=flux,
                             model_name=self.name, model_hash=self.model_hash,
                             history=history)

    def __repr__(self):
        return (f"<Deblender {self.name!r} bands={self.n_bands} size={self.size} "
                f"device={self.device} mode={self.mode}>")

    # -------------------------------------------------------------- helpers
    def _stamp(self, work, pad, center, side):
        """Cut a ``side`` x ``side`` stamp centred on ``center``; outside the frame is ``pad``.

        Returns the stamp ``(C, side, side)`` and its first pixel ``(y0, x0)``
        in the frame (possibly negative).
        """
        c, h, w = work.shape
        x0 = int(round(center[0] - (side - 1) / 2))
        y0 = int(round(center[1] - (side - 1) / 2))
        stamp = np.empty((c, side, side), dtype=np.float32)
        stamp[:] = pad[:, None, None]
        ys, xs = max(y0, 0), max(x0, 0)
        ye, xe = min(y0 + side, h), min(x0 + side, w)
        if ye > ys and xe > xs:
            stamp[:, ys - y0:ye - y0, xs - x0:xe - x0] = work[:, ys:ye, xs:xe]
        return stamp, (y0, x0)

    def _to_model(self, stamps, mode, to_model):
        """Map a list of ``(C, s, s)`` stamps to ``(B, M, size, size)`` model inputs.

        Stamps larger than the working size are area-averaged to it.
        Returns the tensor and the linear scale (robust peak) of each stamp.
        """
        import torch
        import torch.nn.functional as F

        from .models.stretch import robust_peak, stretch

        tensors = []
        for stamp in stamps:
            mapped = np.einsum("mc,chw->mhw", to_model, stamp).astype(np.float32)
            t = torch.from_numpy(mapped).to(self.device)[None]
            if t.shape[-1] != self.size:
                t = F.interpolate(t, size=(self.size, self.size), mode="area")
            tensors.append(t)
        tensor = torch.cat(tensors)
        if mode == "linear":
            peak = robust_peak(tensor).reshape(-1, 1, 1, 1)
            tensor = stretch(tensor / peak)
        else:
            peak = torch.ones((len(tensor), 1, 1, 1), device=tensor.device)
        return tensor, peak

    def _batched(self, net, *inputs):
        """Run ``net`` over equal-length tensors in batches of ``batch_size``.

        The networks run under autocast in ``precision`` (mixed precision:
        float16 on a GPU, bfloat16 on a CPU that has it); outputs are float32.
        """
        import torch

        dtype = None if self.precision == "float32" else getattr(torch, self.precision)
        with torch.autocast(torch.device(self.device).type, dtype=dtype,
                            enabled=dtype is not None):
            out = [net(*(t[i:i + self.batch_size] for t in inputs)).float()
                   for i in range(0, len(inputs[0]), self.batch_size)]
        return torch.cat(out) if out else None

    def _plan(self, groups, shape):
        """Stamp side (frame pixels) and centre of each group; one stamp for small frames."""
        from scipy.ndimage import find_objects

        h, w = shape
        plans = {}
        for label, sl in enumerate(find_objects(groups), start=1):
            if sl is None:
                continue
            extent = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
            side = max(self.size, int(np.ceil(1.25 * extent + 16)))
            if h <= self.size and w <= self.size:
                side = self.size  # the image fits one stamp at its own scale
            center = ((sl[1].start + sl[1].stop - 1) / 2, (sl[0].start + sl[0].stop - 1) / 2)
            plans[label] = (side, center)
        return plans

    def _detect(self, work, pad, groups, plans, smoothed, aperture, wide, mode, bands):
        """Detect the sources of every group.

        Detection: the centre detector runs on three stamps of each group,
        centred on it and shifted by an eighth of the stamp against each
        other (downsampled to the working size for large groups); in crowded
        fields, where that would cost more than twice as much, groups that
        fit the working size are searched instead on four tilings of the
        frame, shifted by a quarter of a tile against each other (peaks near
        a tile's inner border are left to the other tilings).  A peak counts
        where two runs agree (the detector's layout prior, a source at the
        stamp centre, moves with the stamp and is voted out; a group's peaks
        seen on another group's stamps vote too, beside one of its own),
        lies in a group and is significant: ``min_snr`` in the 3x3 apertures of
        ``aperture`` or in the wider ones of ``wide`` (`_wide_significance`);
        in a group stamped larger than the working size (display images:
        more than ``_DISPLAY_CONFIRM_SCALE`` times), a peak must also be
        one of the data seen at the stamp's scale, or move to it
        (`_snap_to_peaks`); on a galaxy cut by the frame's edge, a second
        peak on its body that is no peak of the data is dropped
        (`_edge_duplicates`).  A display image that fits one stamp also
        keeps the peaks outside every group that all three runs agree on
        (`_outside_groups`).  Groups where it finds nothing get
        photutils' brightest multi-threshold peak
        (`~astrodeblend.detect.split_group`) as a candidate; photutils' other
        peaks are candidates too.  Candidates are kept later only where the
        models leave their light unexplained.

        A generator (see `_drive`): yields the detector's requests and
        returns the centres ``(x, y, group)``, the candidates, the set of
        detection methods used, the number of detections dropped by
        `_edge_duplicates` and the number kept by `_outside_groups`.
        ``plans``: the stamp of each group (`_plan`).
        """
        from scipy.ndimage import find_objects

        from .detect import split_group
        from .models import find_peaks

        if not plans:
            return [], [], set(), 0, 0
        h, w = groups.shape
        jobs, stamps = [], []  # (group or None for a tile, side, origin, run)
        small = [g for g, (side, _) in plans.items() if side == self.size]
        native = np.isin(groups, small)
        tiles = []
        for run, offset in enumerate(range(0, self.size, self.size // 4)):
            for y0 in range(-offset, h, self.size):
                for x0 in range(-offset, w, self.size):
                    if native[max(y0, 0):y0 + self.size, max(x0, 0):x0 + self.size].any():
                        tiles.append(((x0 + (self.size - 1) / 2, y0 + (self.size - 1) / 2),
                                      run))
        # each group its own stamps (the detector is best with its group near
        # the centre) unless tiles are cheaper by far (crowded fields)
        tiled = 3 * len(small) > 2 * len(tiles)
        single = h <= self.size and w <= self.size
        middle = ((w - 1) / 2 + (self.size - w) / 2, (h - 1) / 2 + (self.size - h) / 2)
        if single:
            # the whole image fits one stamp: the stamp as in training (run 0)
            # and two shifted copies
            tiles = [((middle[0] + dx, middle[1] + dy), run) for run, (dx, dy)
                     in enumerate([(0, 0), (self.size / 8, self.size / 8),
                                   (-self.size / 8, self.size / 8)])]
            tiled = True
        for center, run in tiles if tiled else []:
            stamp, origin = self._stamp(work, pad, center, self.size)
            jobs.append((None, self.size, origin, run))
            stamps.append(stamp)
        for label, (side, center) in plans.items():
            if tiled and side == self.size:
                continue
            # larger groups: their own stamp, downsampled, shifted three ways
            step = side / 8
            for run, (dx, dy) in enumerate([(0.0, 0.0), (1.0, 1.0), (-1.0, 1.0)]):
                stamp, origin = self._stamp(work, pad, (center[0] + dx * step,
                                                        center[1] + dy * step), side)
                jobs.append((label, side, origin, run))
                stamps.append(stamp)
        methods = set()
        found = {label: [] for label in plans}
        outside = []  # a display stamp's peaks in no group (_outside_groups)
        if self.detector is not None:
            for start in range(0, len(stamps), 4 * self.batch_size):
                chunk = stamps[start:start + 4 * self.batch_size]
                tensor, _ = self._to_model(chunk, mode, bands[0])
                logits = yield ("detector", (tensor,))
                peaks = find_peaks(logits, threshold=self.detect_threshold)
                for k, pk in enumerate(peaks):
                    label, side, (y0, x0), run = jobs[start + k]
                    scale = side / self.size
                    for x, y in pk.cpu().numpy():
                        fx = (x + 0.5) * scale - 0.5 + x0
                        fy = (y + 0.5) * scale - 0.5 + y0
                        col, row = int(round(fx)), int(round(fy))
                        if not (0 <= col < w and 0 <= row < h):
                            continue
                        group, vote = label, run
                        if label is None and not single:
                            # near a tile's inner border a galaxy is cut: other tilings see it
                            inner = self.size // 10
                            if not (inner <= x < self.size - inner or col < inner
                                    or col >= w - inner) or not (
                                    inner <= y < self.size - inner or row < inner
                                    or row >= h - inner):
                                continue
                        if label is None:
                            group = int(groups[row, col]) or None
                        elif int(groups[row, col]) not in (0, label):
                            # on another group: a vote of this stamp for that one
                            # (its own stamps, centred elsewhere, can miss a galaxy
                            # on a brighter one's light that this one sees)
                            group, vote = int(groups[row, col]), (label, run)
                        if group in found:
                            found[group].append((fx, fy, vote))
                        elif single and mode == "display":
                            outside.append((fx, fy, run))
        from scipy.ndimage import maximum_filter

        local_max = (smoothed == maximum_filter(smoothed, size=5)) & (groups > 0)

        def confirm_single(x, y, runs):
            # an image in one stamp: the stamp as in training (run 0) is trusted,
            # except at the centre of a linear image, where the detector's
            # layout prior puts a source whether or not there is one (a peak of
            # the data confirms it); display images (Galaxy Zoo JPGs) are
            # centred on a galaxy by construction
            if _near_peak(local_max, x, y):
                return True
            return runs == {0} and (mode == "display"
                                    or np.hypot(x - middle[0], y - middle[1]) > 4)

        border = set(np.unique(np.concatenate([groups[0], groups[-1], groups[:, 0],
                                               groups[:, -1]])).tolist())
        boxes = find_objects(groups)  # each group's box, in one pass over the frame
        centers, candidates, n_edge = [], [], 0
        for label, (side, _) in plans.items():
            def significant(points, label=label, votes=True):
                # the detector's peaks in any aperture, photutils' in 3x3
                plane, y0, x0 = wide.get(label, (aperture, 0, 0)) if votes else (aperture, 0, 0)
                return [(x, y) for x, y in points
                        if 0 <= round(x) < w and 0 <= round(y) < h
                        and groups[round(y), round(x)] == label
                        and max(aperture[round(y), round(x)],
                                plane[round(y) - y0, round(x) - x0]) >= self.min_snr]

            tol = max(2.5, 1.5 * side / self.size)
            kept = significant(_votes(found[label], tol=tol,
                                      confirm=confirm_single if single else None))
            if side > self.size * (_DISPLAY_CONFIRM_SCALE if mode == "display" else 1):
                # at scales it was not trained for, the detector's peaks must be
                # peaks of the data seen at the stamp's scale (one off by up
                # to 2 tol moves to it: two on either side of a nucleus are one);
                # display blends near the scale of training are left alone
                kept = significant(_snap_to_peaks(kept, smoothed, side / self.size, tol))
            n_kept = len(kept)
            kept = _edge_duplicates(kept, aperture, local_max, label in border)
            n_edge += n_kept - len(kept)
            if kept:
                methods.add("detector")
            peaks = significant(split_group(smoothed, groups, label, n_pixels=5,
                                            box=boxes[label - 1]), votes=False)
            peaks = [(x, y) for x, y in peaks if all(np.hypot(x - u, y - v) > 2 * tol
                                                      for u, v in kept)]
            if self.detector is None:
                kept, peaks = peaks, []  # photutils is the detector
                if kept:
                    methods.add("photutils")
            elif not kept and peaks:
                # the detector saw nothing here (a star, a faint source, the
                # outskirts of a large galaxy): photutils' brightest peak, kept
                # if no other source's model explains its light
                peaks.sort(key=lambda p: -aperture[round(p[1]), round(p[0])])
                peaks = peaks[:1]
            centers += [(x, y, label) for x, y in kept]
            candidates += [(x, y, label) for x, y in peaks]
        n_outside = 0
        if outside:
            added = _outside_groups(outside, groups, aperture, centers, min_snr=self.min_snr,
                                    tol=2.5)
            centers += added
            n_outside = len(added)
        return centers, candidates, methods, n_edge, n_outside

    def _join(self, models, signal, bad, noise, work, pad, plans, bands, groups, reach):
        """Join the halves of one galaxy in a linear image: a generator, as `_models`.

        Each close pair of sources of one group (`~astrodeblend._sources._close_pairs`)
        is tested against the generator's one source at their flux-weighted
        midpoint, its footprint grown with ``reach`` (`grow_footprint`'s
        options); `~astrodeblend._sources._join_halves` decides.  Returns
        ``(models, n_joined)``.
        """
        from .footprints import grow_footprint

        close = _close_pairs(models)
        if not close:
            return models, 0
        mids = [(*_flux_midpoint(models[a], models[b]), models[a].group) for a, b in close]
        singles = yield from self._models(work, pad, mids, plans, "linear", bands, groups)
        for single in singles:
            grow_footprint(single, groups, noise, **reach)
        return _join_halves(models, close, singles, signal, bad, noise)

    def _models(self, work, pad, centers, plans, mode, bands, groups):
        """Extract each source with the generator on a stamp centred on it.

        The stamp has its group's size (area-averaged to the working size
        when larger, the output resampled back) and the output is tapered
        to zero at the stamp's border.  A generator (see `_drive`): yields
        the generator's requests and returns a list of
        `~astrodeblend.footprints.SourceModel`.
        """
        import torch
        import torch.nn.functional as F

        from .footprints import SourceModel, taper
        from .models import make_heatmap, mean_of_copies, symmetric_copies
        from .models.stretch import unstretch

        h, w = work.shape[1:]
        # an image that fits one stamp is extracted from that stamp, as in training
        single = h <= self.size and w <= self.size
        middle = ((w - 1) / 2 + (self.size - w) / 2, (h - 1) / 2 + (self.size - h) / 2)
        models = []
        for start in range(0, len(centers), self.batch_size):
            chunk = centers[start:start + self.batch_size]
            cut = [self._stamp(work, pad, (x, y) if not single else middle, plans[label][0])
                   for x, y, label in chunk]
            by_side = {}
            for k, (_, _, label) in enumerate(chunk):
                by_side.setdefault(plans[label][0], []).append(k)
            for side, members in by_side.items():
                batch = [cut[k][0] for k in members]
                tensor, peak = self._to_model(batch, mode, bands[0])
                scale = side / self.size
                xy = torch.tensor([[(chunk[k][0] - cut[k][1][1] + 0.5) / scale - 0.5,
                                    (chunk[k][1] - cut[k][1][0] + 0.5) / scale - 0.5]
                                   for k in members], dtype=tensor.dtype)
                heat = torch.cat([make_heatmap(p[None], tensor.shape[-2:],
                                               sigma=self.heatmap_sigma, device=self.device)
                                  for p in xy])
                n = self.augment
                out = yield ("generator", (symmetric_copies(tensor, n),
                                           symmetric_copies(heat, n)))
                if mode == "linear":
                    # sign kept: the sky's noise averages out; the copies are
                    # averaged in linear flux, where light adds
                    out = mean_of_copies(unstretch(out), n) * peak
                else:
                    out = mean_of_copies(out, n)
                if side != self.size:
                    out = F.interpolate(out, size=(side, side), mode="bilinear",
                                        align_corners=False)
                out = np.einsum("cm,bmhw->bchw", bands[1], out.float().cpu().numpy())
                window = taper(side, max(4.0, side / 10))
                for k, est in zip(members, out, strict=True):
                    x, y, label = chunk[k]
                    y0, x0 = cut[k][1]
                    ys, xs = max(y0, 0), max(x0, 0)
                    ye, xe = min(y0 + side, h), min(x0 + side, w)
                    est = est[:, ys - y0:ye - y0, xs - x0:xe - x0]
                    window_part = window[ys - y0:ye - y0, xs - x0:xe - x0]
                    sky = groups[ys:ye, xs:xe] == 0
                    if mode == "linear" and sky.sum() > 50:
                        # the generator leaves a faint pedestal over the sky: remove it
                        est = est - np.median(est[:, sky], axis=1)[:, None, None]
                    if not single:  # a stamp inside a larger image ends smoothly
                        est = est * window_part
                    model = SourceModel((float(x), float(y)), (ys, ye, xs, xe),
                                        np.ascontiguousarray(est, dtype=np.float32),
                                        group=int(label))
                    models.append(model)
        return models


#: a galaxy whose nucleus lies this close to the frame's edge (pixels) is cut by it
_EDGE_MARGIN = 12.0

#: a second detection on such a galaxy's body holds this part of its nucleus's S/N, or more
_BODY = 0.15


def _outside_groups(peaks, groups, aperture, centers, *, min_snr, tol):
    """Keep the detector's peaks of a display stamp that lie in no group, where certain.

    A Galaxy Zoo JPG filled by a large galaxy has no sky: its sky level is
    the galaxy's outskirts, and a small galaxy on them, or the large
    galaxy's own faint body under a bright neighbour, stays below the
    groups' threshold, which then vetoed what the detector found (2 of 200
    ``reiman`` test scenes lost a galaxy so; the three runs of the detector
    agreed on it at probabilities of 0.7-0.8).  A peak outside every group
    is kept when all three runs of ``peaks`` (``(x, y, run)``) agree within
    ``tol``, its 3x3 ``aperture`` S/N reaches ``min_snr`` and it is not
    within ``tol`` of one of ``centers``; it is given the nearest group's
    label (whose stamp it shares: the image is one stamp).  Returns
    ``(x, y, label)`` triples.
    """
    from scipy.ndimage import distance_transform_edt

    h, w = groups.shape
    kept = [(x, y) for x, y in _votes(peaks, tol=tol, n_votes=3)
            if 0 <= round(x) < w and 0 <= round(y) < h
            and aperture[round(y), round(x)] >= min_snr
            and all(np.hypot(x - u, y - v) > tol for u, v, _ in centers)]
    if not kept or not groups.any():
        return []
    _, (rows, cols) = distance_transform_edt(groups == 0, return_indices=True)
    return [(x, y, int(groups[rows[round(y), round(x)], cols[round(y), round(x)]]))
            for x, y in kept]


def _near_peak(local_max, x, y, r=2):
    """Tell whether ``local_max`` (bool image) has a peak within ``r`` pixels of ``(x, y)``."""
    row, col, r = int(round(y)), int(round(x)), int(np.ceil(r))
    return bool(local_max[max(row - r, 0):row + r + 1, max(col - r, 0):col + r + 1].any())


def _edge_duplicates(points, aperture, local_max, touches_edge, *, margin=_EDGE_MARGIN,
                     body=_BODY):
    """Drop the detector's second peaks on the body of a galaxy cut by the frame's edge.

    The detector saw whole galaxies in training; on one that the frame's
    edge cuts (its group reaches the edge and its brightest detection, the
    nucleus, lies within ``margin`` pixels of it) it often puts a second
    peak on the visible body.  Such a detection is no peak of the smoothed
    S/N (``local_max`` within 2 pixels) and sits where the 3x3-aperture S/N
    is ``body`` times the nucleus's or more; a companion is a peak of the
    data, or fainter than that, and is kept.

    Parameters
    ----------
    points : list of tuple
        ``(x, y)`` detections of one group.
    aperture : `numpy.ndarray`
        ``(H, W)`` 3x3-aperture S/N (`_significance`).
    local_max : `numpy.ndarray`
        ``bool (H, W)``, local maxima of the smoothed S/N.
    touches_edge : bool
        Whether the group reaches the frame's edge.

    Returns
    -------
    list of tuple
        The detections kept, in their order.
    """
    if len(points) < 2 or not touches_edge:
        return points
    h, w = aperture.shape
    snr = [float(aperture[int(round(y)), int(round(x))]) for x, y in points]
    top = int(np.argmax(snr))
    bx, by = points[top]
    if min(bx, by, w - 1 - bx, h - 1 - by) >= margin:
        return points
    return [p for k, p in enumerate(points)
            if k == top or _near_peak(local_max, *p) or snr[k] < body * snr[top]]


#: the range of an uncertainty map, relative to its median on the sky, that detection uses
_RELATIVE_NOISE = (0.25, 4.0)


def _relative_noise(image, bad, sources):
    """Each pixel's noise relative to the sky's median, from the input's uncertainty.

    A mosaic's depth varies (fewer exposures at its edges, chip gaps): one
    noise level for the frame turns the noise of the shallow parts into
    sources and misses faint ones in the deep parts.  Where the input has
    an uncertainty (``ERR``, ``VAR``, ``IVAR`` extensions) that varies by
    more than 10 % over the sky, the detection S/N divides each pixel by
    it, scaled to 1 at the sky's median (the measured noise keeps the
    scale) and kept within `_RELATIVE_NOISE`.  Returns ``(C, H, W)``, or
    None where there is no uncertainty or it is flat.
    """
    if image.uncertainty is None:
        return None
    unc = np.asarray(image.uncertainty.array, dtype=np.float32).reshape(image.shape)
    sky = ~bad & ~sources[None] & np.isfinite(unc) & (unc > 0)
    out = np.ones(image.shape, dtype=np.float32)
    varies = False
    for band in range(image.shape[0]):
        values = unc[band][sky[band]]
        if values.size < 100:
            continue
        low, median, high = np.percentile(values, [5, 50, 95])
        if not median > 0 or high - low <= 0.1 * median:
            continue
        varies = True
        ratio = np.where(np.isfinite(unc[band]) & (unc[band] > 0), unc[band] / median, 1.0)
        out[band] = np.clip(ratio, *_RELATIVE_NOISE)
    return out if varies else None


def _snap_to_peaks(points, image, scale, tol):
    """Match detections to the peaks of ``image`` smoothed to ``scale`` pixels.

    A point within ``tol`` of a peak is kept as it is; one within ``2 * tol``
    moves to its nearest peak, unless a kept point already lies within
    ``tol`` of it (the detector's two centres on either side of a resolved
    nucleus become one, on it); the others go (an arm or a knot of a
    large galaxy, at a scale the detector was not trained for).  Returns the
    points ``[(x, y), ...]``.
    """
    from scipy.ndimage import gaussian_filter, maximum_filter

    kept, moved = [], []
    r = int(np.ceil(2 * tol + 4 * scale))
    for x, y in points:
        row, col = int(round(y)), int(round(x))
        y0, x0 = max(row - r, 0), max(col - r, 0)
        crop = gaussian_filter(image[y0:row + r + 1, x0:col + r + 1], scale)
        yy, xx = np.nonzero(crop == maximum_filter(crop, size=2 * int(np.ceil(scale)) + 1))
        distance = np.hypot(xx + x0 - x, yy + y0 - y)
        if not distance.size or distance.min() > 2 * tol:
            continue
        if distance.min() <= tol:
            kept.append((x, y))
        else:
            k = int(np.argmin(distance))
            moved.append((float(xx[k] + x0), float(yy[k] + y0)))
    for u, v in moved:
        if all(np.hypot(u - x, v - y) > tol for x, y in kept):
            kept.append((u, v))
    return kept


def _check_flux(flux):
    from .footprints import FLUX_MODES

    if flux not in FLUX_MODES:
        raise InvalidInputError(f"flux must be one of {', '.join(FLUX_MODES)}, not {flux!r}")
    return flux


def _check_augment(augment):
    if isinstance(augment, bool) or augment not in (1, 2, 4, 8):
        raise InvalidInputError(f"augment must be 1, 2, 4 or 8 symmetric copies, not "
                                f"{augment!r}")
    return int(augment)


def _check_batch_size(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, not {batch_size!r}")
    return int(batch_size)


def _votes(peaks, *, tol, n_votes=2, confirm=None):
    """Merge ``(x, y, run)`` peaks within ``tol``; keep those seen by ``n_votes`` runs.

    A peak seen by fewer runs is kept when ``confirm(x, y, runs)`` is true.
    A ``run`` that is a tuple (``(group, run)``: a stamp of another group)
    counts as a vote, but a peak needs one run that is not.
    """
    kept, used = [], [False] * len(peaks)
    for i, (x, y, _) in enumerate(peaks):
        if used[i]:
            continue
        members = [j for j, (u, v, _) in enumerate(peaks)
                   if not used[j] and np.hypot(u - x, v - y) <= tol]
        for j in members:
            used[j] = True
        x = float(np.mean([peaks[j][0] for j in members]))
        y = float(np.mean([peaks[j][1] for j in members]))
        runs = {peaks[j][2] for j in members}
        if all(isinstance(run, tuple) for run in runs):
            continue
        if len(runs) >= n_votes or (confirm and confirm(x, y, runs)):
            kept.append((x, y))
    return kept


def band_mapping(n_image, n_model):
    """Return the matrices that map an image's bands to a model's and back.

    Bands are taken as ordered by wavelength.  With more image bands than
    model bands, each model band is the mean of a contiguous group of image
    bands (5 HSC bands -> 3: ``g``, ``r+i``... by position) and each image
    band takes its group's output; with fewer, image bands are repeated (a
    single band feeds all three channels of an RGB model) and each image band
    takes the mean of the outputs of its copies.

    Parameters
    ----------
    n_image, n_model : int
        Number of bands of the image and of the model.

    Returns
    -------
    to_model : `numpy.ndarray`
        ``(n_model, n_image)``, rows summing to 1.
    to_image : `numpy.ndarray`
        ``(n_image, n_model)``, rows summing to 1.

    Examples
    --------
    >>> to_model, to_image = band_mapping(1, 3)
    >>> to_model.ravel().tolist(), (3 * to_image).tolist()
    ([1.0, 1.0, 1.0], [[1.0, 1.0, 1.0]])
    >>> band_mapping(3, 3)[0].tolist() == np.eye(3).tolist()
    True
    """
    if n_image >= n_model:
        group = np.arange(n_image) * n_model // n_image  # model band of each image band
        to_image = np.eye(n_model)[group]
        to_model = to_image.T.copy()
    else:
        group = np.arange(n_model) * n_image // n_model  # image band of each model band
        to_model = np.eye(n_image)[group]
        to_image = to_model.T.copy()
    to_model /= to_model.sum(axis=1, keepdims=True)
    to_image /= to_image.sum(axis=1, keepdims=True)
    return to_model.astype(np.float32), to_image.astype(np.float32)


# quantile of the sky's 3x3-aperture sums whose distance from their median sets the
# aperture noise of display images (_significance's "tail": the JPEG noise's upper tail,
# clipped at black, is wider than its clipped spread): 0.99, 2.33 Gaussian sigma.  Whole
# Galaxy Zoo JPGs give 770 sources on 30 images against 1,620 with the clipped spread; the
# 128 px paper scenes 5.05 spurious sources per scene against 5.37, both galaxies found in
# 91.5 % as before
_TAIL_QUANTILE = 0.99
# fewest sky apertures from which that quantile is taken (ten beyond it at least)
_TAIL_MIN = 1000


#: aperture sizes (pixels) in which the detector's peaks may reach ``min_snr``, beside 3x3
_VOTE_APERTURES = (5, 7)


def _wide_significance(snr, groups, plans, size, noise, blocks):
    """Aperture S/N of each group's detector peaks in apertures wider than 3x3.

    The 3x3 aperture of `_significance` holds a ninth of a resolved
    source's core: faint companions of a few pixels' radius, which the
    detector finds, stayed below ``min_snr`` (in 2-6 % of the scenes of
    real-galaxy pairs 6-24 px apart, in 8-9 % of the same pairs resampled
    2x and 4x).  Each group's S/N is the largest over apertures of
    ``_VOTE_APERTURES`` and, for a group whose stamp is ``scale = side /
    size`` times the working size (downsampled for the networks), of
    ``k = 2 * floor(1.5 * scale) + 1`` pixels (about ``3 * scale``), each
    with its noise measured as `_significance` does (``noise``) and capped
    in masked ``blocks`` (`_cap_in_blocks`).  Returns ``{label: (plane, y0,
    x0)}``: the S/N over the group's bounding box, whose first pixel is
    ``(y0, x0)``; groups with no aperture wider than 3x3 are left out.
    """
    from scipy.ndimage import find_objects

    sizes = {}
    for label, (side, _) in plans.items():
        sizes[label] = {*_VOTE_APERTURES, 2 * int(1.5 * side / size) + 1} - {3}
    slices = find_objects(groups)
    wide = {}
    # one frame-size plane at a time (memory of large frames): each group
    # keeps the largest S/N over its bounding box
    for k in sorted(set().union(*sizes.values())):
        plane = _cap_in_blocks(_significance(snr, groups > 0, noise=noise, size=k), blocks)
        for label, wanted in sizes.items():
            if k in wanted:
                rows, cols = slices[label - 1]
                if label in wide:
                    np.maximum(wide[label][0], plane[rows, cols], out=wide[label][0])
                else:
                    wide[label] = (plane[rows, cols].copy(), rows.start, cols.start)
        del plane
    return wide


def _cap_in_blocks(aperture, blocks, *, ring=2):
    """Cap the aperture S/N inside masked blocks by the largest on their border.

    The networks see masked blocks inpainted from their surroundings
    (`~astrodeblend.footprints.inpainted_regions`); a block over empty sky
    can then hold a bump continued from the noise at its border.  Inside
    each block the S/N is at most the largest of the unmasked pixels within
    ``ring`` pixels of it: a galaxy whose core the block covers is as
    significant as its light around the block, a bump on the sky is not.
    """
    from scipy.ndimage import maximum

    from .footprints import block_borders

    if not blocks.any():
        return aperture
    labels, n, _, border = block_borders(blocks, ring)
    top = np.asarray(maximum(aperture, labels=border, index=np.arange(1, n + 1)))
    capped = aperture.copy()
    inside = labels > 0
    capped[inside] = np.minimum(aperture[inside], top[labels[inside] - 1])
    return capped


def _significance(snr, sources, *, noise="differences", size=3):
    """Signal-to-noise ``(H, W)`` of ``size`` x ``size`` apertures, in units of their noise.

    The aperture sums are scaled by their own scatter outside ``sources``,
    so correlated noise (drizzled or resampled images) does not pass for
    signal.  ``noise``:

    - ``"differences"``: the scatter of second differences of apertures
      ``size`` pixels apart (`~astrodeblend.detect._difference_noise`):
      independent apertures, and the smooth outskirts of galaxies beyond
      the sources, which the clipped spread of the apertures themselves
      counts as noise, cancel (linear images with sky);
    - ``"clipped"``: the sigma-clipped spread of the apertures (frames
      filled by a galaxy, whose "sky" is its own structure);
    - ``"tail"``: the same, or, where larger, the width of the apertures'
      upper tail: the distance from their median to their
      ``_TAIL_QUANTILE`` quantile, in units of a Gaussian's (display images,
      JPG and PNG: their noise is correlated over the JPEG's 8 px blocks
      beyond what differences 3 pixels apart see, and skewed, the sky
      clipped at black, so that false detections come from an upper tail
      1.1-1.4 times wider than the clipped spread on the Galaxy Zoo JPGs;
      with fewer than ``_TAIL_MIN`` apertures, the clipped spread alone);
    - ``"white"``: white noise (the mean of ``size**2`` pixels has noise
      ``1 / size``), also where fewer than 100 pixels are left outside
      ``sources``.
    """
    from scipy.ndimage import uniform_filter
    from scipy.special import ndtri

    from .detect import _clipped, _difference_noise

    aperture = uniform_filter(snr.astype(np.float32), size=size, mode="nearest")
    sky = sources | ~np.isfinite(aperture)
    if noise == "white" or (~sky).sum() < 100:
        return np.float32(size) * aperture
    if noise in ("clipped", "tail"):
        scatter = float(_clipped(aperture[None], sky)[1][0])
        if noise == "tail" and (~sky).sum() >= _TAIL_MIN:
            values = aperture[~sky]
            upper = np.quantile(values, _TAIL_QUANTILE) - np.median(values)
            scatter = max(scatter, float(upper / ndtri(_TAIL_QUANTILE)))
    else:
        scatter = float(_difference_noise(np.where(sky, 0, aperture)[None], sky, lag=size)[0])
    if not scatter > 0:
        return np.float32(size) * aperture
    return aperture / np.float32(scatter)


def get_deblender(method="gan", *, model=None, device="auto", max_pixels=None, **options):
    """Return a deblender by name: the GAN or a classic baseline.

    Parameters
    ----------
    method : {'gan', 'segmentation', 'fluxshare'}
        ``'gan'`` is `Deblender` (``model`` or the shipped default);
        the others are `astrodeblend.baselines` methods.
    model : str or path, optional
        Checkpoint for ``'gan'``.
    device : str, optional
        ``'auto'``, ``'cpu'`` or ``'cuda'`` (GAN only).
    max_pixels : int, optional
        See `Deblender`.
    **options
        More `Deblender` options for ``'gan'`` (``mode``, ``background``,
        ``flux``, ...); the baselines take none.

    Returns
    -------
    callable
        ``deblender(image) -> DeblendResult`` with ``name`` and ``model_hash``.

    Raises
    ------
    InvalidInputError
        For an unknown method, or options given to a baseline.

    Examples
    --------
    >>> get_deblender("segmentation").name
    'segmentation'
    """
    if method == "gan":
        return Deblender.load(model, device=device, max_pixels=max_pixels, **options)
    if method in METHODS and options:
        raise InvalidInputError(f"the {method} method takes no options "
                                f"({', '.join(sorted(options))})")
    if method == "segmentation":
        from .baselines import SegmentationDeblender

        return SegmentationDeblender()
    if method == "fluxshare":
        from .baselines import FluxShareDeblender

        return FluxShareDeblender()
    raise InvalidInputError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")


def deblend(path_or_image, *, model=None, device="auto", hdu=None, mode="auto"):
    """Deblend a file or an image with the GAN (the default model unless ``model``).

    For many images, load a `Deblender` once and call it, or use
    `astrodeblend.batch.deblend_files`, instead of calling this function in a loop.

    Parameters
    ----------
    path_or_image : str, path, `~astrodeblend.image.GalaxyImage`, NDData or array
        A FITS/JPG/PNG file or an image in memory.
    model : str or path, optional
        Checkpoint; the shipped default model when None.
    device : str, optional
        ``'auto'``, ``'cpu'`` or ``'cuda'``.
    hdu : int or str, optional
        FITS HDU to read.
    mode : {'auto', 'display', 'linear'}, optional
        See `Deblender`.

    Returns
    -------
    `~astrodeblend.result.DeblendResult`

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.modeling.models import Gaussian2D
    >>> yy, xx = np.mgrid[:48, :48]
    >>> plane = Gaussian2D(1, 20, 24, 3, 3)(xx, yy) + Gaussian2D(1, 30, 24, 3, 3)(xx, yy)
    >>> deblend(plane, device="cpu").n_sources >= 1
    True
    """
    if isinstance(path_or_image, (str, Path)):
        from .io import read_image

        image = read_image(path_or_image, hdu=hdu)
    else:
        image = as_galaxy_image(path_or_image)
    return Deblender.load(model, device=device, mode=mode)(image)


def demo_scene(seed=3):
    """Make the demo's blended scene from generated galaxy profiles (no data files).

    Two Sersic galaxies of different colours (astropy.modeling), blended
    with the ``physical`` protocol (linear sum, Gaussian PSF, noise) in
    three bands on an 80x80 grid with a TAN WCS.

    Parameters
    ----------
    seed : int, optional
        Seed of the blend's random draws.

    Returns
    -------
    `~astrodeblend.blend.Scene`

    Examples
    --------
    >>> demo_scene().blend.shape
    (3, 80, 80)
    """
    from astropy.modeling.models import Sersic2D
    from astropy.wcs import WCS

    from .blend import blend_physical

    yy, xx = np.mgrid[:424, :424]
    galaxies = []
    for r_eff, n, ellip, theta, colour in [(14, 1.0, 0.45, 0.6, (0.6, 1.0, 1.3)),
                                           (10, 2.5, 0.2, 2.0, (1.2, 1.0, 0.8))]:
        plane = Sersic2D(1.0, r_eff, n, 211.5, 211.5, ellip, theta)(xx, yy)
        cube = np.asarray(colour)[:, None, None] * plane[None] / plane.max()
        galaxies.append(GalaxyImage(cube.astype(np.float32), bands=("g", "r", "i")))
    scene = blend_physical(galaxies, seed=seed)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [40.5, 40.5]
    wcs.wcs.cdelt = [-0.4 / 3600, 0.4 / 3600]
    blend = scene.blend
    scene.blend = GalaxyImage(blend.data, wcs=wcs, meta=blend.meta, bands=("g", "r", "i"),
                              source="astrodeblend demo scene", unit=blend.unit)
    return scene


def run_demo(output_dir="astrodeblend-demo", *, device="auto", overwrite=False):
    """Run the demo: blend two generated galaxies, deblend them, write FITS and PNG.

    Parameters
    ----------
    output_dir : str or path, optional
        Folder for ``demo_blend.fits``, ``demo_blend_deblended.fits`` and
        ``demo_blend_deblended.png`` (created when missing).
    device : str, optional
        ``'auto'``, ``'cpu'`` or ``'cuda'``.
    overwrite : bool, optional
        Replace the outputs of an earlier demo.

    Returns
    -------
    int
        0 (the exit status of ``astrodeblend demo``).
    """
    from .io import atomic_write, write_deblended
    from .metrics import flux_error, match_sources
    from .plotting import plot_deblend_result, save_figure

    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from .errors import WriteError

        raise WriteError(f"cannot create output folder {out}: {exc.strerror}") from None
    scene = demo_scene()
    blend_path = out / "demo_blend.fits"
    from astropy.io import fits

    header = scene.blend.wcs.to_header()
    header["BANDS"] = ",".join(scene.blend.bands)
    with atomic_write(blend_path, overwrite=overwrite) as tmp:
        fits.PrimaryHDU(scene.blend.data, header=header).writeto(tmp, checksum=True)
    from .io import read_image

    image = read_image(blend_path)
    deblender = Deblender.load(device=device)
    result = deblender(image)
    result_path = write_deblended(result, out / "demo_blend_deblended.fits",
                                  overwrite=overwrite)
    png_path = out / "demo_blend_deblended.png"
    save_figure(plot_deblend_result(result, truth=scene.components,
                                    truth_centers=scene.centers),
                png_path, overwrite=overwrite)
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    pairs = match_sources(scene.centers, found).pairs
    print(f"astrodeblend {__version__} demo: two generated galaxies blended "
          f"({scene.protocol} protocol), deblended with the {deblender.name} model")
    print(f"  found {plural(result.n_sources, 'source')}; true galaxies matched: "
          f"{len(pairs)} of {len(scene.centers)}")
    for t, f in pairs:
        err = flux_error(result.source_image(f, full_frame=True).data, scene.components[t])
        x, y = found[f]
        print(f"  source {int(result.catalog['id'][f])} (truth galaxy {t + 1}): "
              f"x={x:.1f} y={y:.1f} flux error {100 * err:+.1f} %")
    print(f"  input:  {blend_path}")
    print(f"  result: {result_path}")
    print(f"  figure: {png_path}")
    return 0
