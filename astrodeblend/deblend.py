"""The deblending pipeline: `Deblender`, `deblend` and the demo.

A `Deblender` turns an image of any size and band count into a
`~astrodeblend.result.DeblendResult`:

1. **Value space.**  Display-stretched images (JPG/PNG, header card
   ``ADBDISP``) are used as they are ("display" mode).  Linear images (FITS)
   have their sky level removed (`~astrodeblend.detect.background_and_noise`)
   and are mapped to the model's space by dividing by a robust peak and
   applying the power-law stretch ``sign(x) |x| ** (1 / 2.2)``
   (`~astrodeblend.models.stretch`) — the same mapping that training uses for
   ``physical`` scenes ("linear" mode).
2. **Stamps.**  Small images (up to ``max_pixels``, by default twice the
   model's working size on a side) form one stamp, processed at their own
   pixel scale (the networks are fully convolutional).  Larger images are
   cut into stamps around the blend groups found by photutils
   (`~astrodeblend.detect.find_centers`, tile by tile); a stamp larger than
   the working size is resampled to it (area averaging), so that a group
   fills the frame as in training, and the model's output is resampled back
   (bilinear).
3. **Detection.**  A learned centre detector (`~astrodeblend.models.CenterDetector`)
   finds the galaxies of each stamp, close pairs included; photutils peaks
   serve as a fallback when it finds nothing.
4. **Extraction.**  The conditional generator runs once per detected centre.
5. **Flux conservation** (linear mode).  The model's outputs, mapped back to
   linear flux, are used as weights that split every sky-subtracted input
   pixel among the sources (a faint floor shares pixels the model leaves
   dark by distance), so ``sum(sources) + residual == input`` exactly, the
   residual is the sky level, and noise enters each source with zero mean.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import CheckpointError, InvalidInputError
from .image import GalaxyImage, as_galaxy_image
from .result import DeblendResult
from .utils import resolve_device
from .weights import default_model_path

__all__ = ["Deblender", "deblend", "get_deblender", "default_model_path", "run_demo",
           "band_mapping", "demo_scene", "METHODS"]

#: Names accepted by `get_deblender`.
METHODS = ("gan", "segmentation", "fluxshare")


def _is_display(image):
    return bool(image.meta.get("ADBDISP", False))


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
        sha256 of the generator weights, written to ``ADBMHASH``.
    mode : {'auto', 'display', 'linear'}, optional
        Value space; ``'auto'`` picks display for images with ``ADBDISP``
        (JPG/PNG) and linear otherwise.
    detect_threshold : float, optional
        Minimum peak of the detector's centre heatmap (0..1).
    min_snr : float, optional
        Minimum signal-to-noise ratio, in a 3x3 aperture summed over bands,
        of the blend at a detected centre.
    batch_size : int, optional
        Generator inputs per forward pass.
    max_pixels : int, optional
        Images with more pixels per band than this are processed stamp by
        stamp around photutils blend groups instead of as one stamp, which
        bounds the memory the models use (default 4 times the working area).
    background : 'auto', float or array-like, optional
        Sky level subtracted in linear mode: ``'auto'`` estimates it per band
        with the sources masked (`~astrodeblend.detect.background_and_noise`);
        give ``0`` for cutouts known to be sky-subtracted, or one value per
        band.  The noise is always estimated.
    tile_pixels : int, optional
        The memory cap of the detection step on large images: sources are
        searched in tiles of at most this many pixels (plus a margin of the
        working size), default ``2048 * 2048``.

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
                 mode="auto", detect_threshold=0.3, min_snr=5.0, batch_size=64,
                 max_pixels=None, tile_pixels=2048 * 2048, background="auto"):
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
        self.name = str(name)
        self.model_hash = str(model_hash)
        self.mode = mode
        self.detect_threshold = float(detect_threshold)
        self.min_snr = float(min_snr)
        self.batch_size = int(batch_size)
        self.size = int(getattr(config, "image_size", 80) or 80)
        self.n_bands = int(config.n_bands)
        self.heatmap_sigma = float(getattr(config, "heatmap_sigma", 1.5))
        self.max_pixels = int(max_pixels) if max_pixels else 4 * self.size * self.size
        self.tile_pixels = int(tile_pixels)
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
        from ._checkpoint import load_checkpoint, load_models, weights_hash

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
        model_hash = weights_hash(models["generator"].state_dict())
        return cls(models["generator"], models.get("detector"), config, device=device,
                   name=name, model_hash=model_hash, **kwargs)

    # ------------------------------------------------------------ interface
    def __call__(self, image, *, mode=None):
        """Deblend one image.

        Parameters
        ----------
        image : `~astrodeblend.image.GalaxyImage`, `~astropy.nddata.NDData` or array
            ``(H, W)`` or ``(C, H, W)`` pixels of any band count (mapped to
            the model's bands by `band_mapping` and back).
        mode : {'auto', 'display', 'linear'}, optional
            Overrides the deblender's mode for this call.

        Returns
        -------
        `~astrodeblend.result.DeblendResult`

        Examples
        --------
        >>> import numpy as np
        >>> from astropy.modeling.models import Gaussian2D
        >>> yy, xx = np.mgrid[:64, :64]
        >>> plane = Gaussian2D(1, 24, 32, 3, 3)(xx, yy) + Gaussian2D(0.6, 42, 30, 3, 2)(xx, yy)
        >>> result = Deblender.load(device="cpu")(np.stack([plane] * 3))
        >>> result.n_sources
        2
        """
        import torch

        image = as_galaxy_image(image)
        mode = mode or self.mode
        if mode == "auto":
            mode = "display" if _is_display(image) else "linear"
        started = time.perf_counter()
        data = image.filled(0.0)
        bands = band_mapping(image.n_bands, self.n_bands)
        history = [f"read: {image.source or 'in-memory image'} shape={image.shape} "
                   f"bands={','.join(image.bands)}"]
        if image.n_bands != self.n_bands:
            history.append(f"bands: {image.n_bands} image bands mapped to the model's "
                           f"{self.n_bands} (band_mapping) and back")
        from .detect import background_and_noise

        background, noise = background_and_noise(image, mask_sources=True)
        if not isinstance(self.background, str):
            if self.background.size not in (1, image.n_bands):
                raise InvalidInputError(f"background has {self.background.size} values for "
                                        f"{image.n_bands} bands")
            background = np.broadcast_to(self.background, (image.n_bands,)).copy()
        sky = background[:, None, None].astype(np.float32)
        snr = _significance(data - sky, noise)
        if mode == "linear":
            work = data - sky
            how = ("sigma-clipped median per band, sources masked,"
                   if isinstance(self.background, str) else "given by the caller,")
            history.append(f"background: {how} subtracted "
                           f"({', '.join(f'{b:.4g}' for b in background)})")
        else:
            work = data
        stamps = self._plan_stamps(image, work)
        history.append(f"stamps: {len(stamps)} of working size {self.size} px "
                       f"(mode={mode})")
        h, w = image.height, image.width
        outputs, centers = [], []
        with torch.inference_mode():
            results, methods = self._run_stamps(work, stamps, mode, snr, bands)
        for box, est, xy in results:
            # overlapping stamps may see the same galaxy twice: keep the first
            if any(np.hypot(xy[0] - x, xy[1] - y) < 2.0 for x, y in centers):
                continue
            outputs.append((box, est))
            centers.append(xy)
        history.append(f"detect: {' + '.join(sorted(methods)) or 'nothing to search'} "
                       f"(CenterDetector threshold={self.detect_threshold}, photutils where "
                       f"it finds nothing) found {len(centers)} sources")
        estimates = np.zeros((len(outputs), image.n_bands, h, w), dtype=np.float32)
        for i, ((y0, y1, x0, x1), est) in enumerate(outputs):
            estimates[i, :, y0:y1, x0:x1] = est
        if mode == "linear":
            width = 0.25 * min(max(h, w), 4 * self.size)
            sources = _share_flux(work, estimates, centers, noise, width)
            history.append("flux: every input pixel split in proportion to the model's "
                           "linear estimates (sources + residual = input, residual = sky)")
        else:
            sources = np.clip(estimates, 0.0, None)
        history.append(f"generator: {self.name} sha256={self.model_hash[:16]}... "
                       f"astrodeblend {__version__}, {time.perf_counter() - started:.2f} s")
        xy = np.asarray(centers, dtype=float).reshape(-1, 2)
        segmap = _segmap(sources, noise)
        catalog = DeblendResult.make_catalog(image, sources, xy[:, 0], xy[:, 1])
        return DeblendResult(image, sources, catalog, segmap, model_name=self.name,
                             model_hash=self.model_hash, history=history)

    def map(self, inputs, output_dir, **kwargs):
        """Deblend many files into ``output_dir`` with this (already loaded) model.

        A thin wrapper of `astrodeblend.batch.deblend_files` with
        ``deblender=self``; see there for the options.

        Parameters
        ----------
        inputs : list of str or path
            Files, globs, folders or ``@list.txt`` files.
        output_dir : str or path
            Folder for the FITS results and the run log.
        **kwargs
            Passed to `~astrodeblend.batch.deblend_files`.

        Returns
        -------
        `~astrodeblend.batch.BatchSummary`
        """
        from .batch import deblend_files

        return deblend_files(inputs, output_dir, deblender=self, **kwargs)

    def __repr__(self):
        return (f"<Deblender {self.name!r} bands={self.n_bands} size={self.size} "
                f"device={self.device} mode={self.mode}>")

    # -------------------------------------------------------------- helpers
    def _plan_stamps(self, image, work):
        """Return stamp boxes ``(y0, y1, x0, x1, native)`` covering the blend groups.

        Small images are one stamp, processed at their own pixel scale.
        Larger ones are searched for sources (photutils, without deblending:
        one segment per blend group) tile by
        tile, each tile at most ``tile_pixels`` pixels plus a margin, so the
        detection's memory stays bounded whatever the image size; a group
        belongs to the tile whose core holds its centre.
        """
        h, w = image.height, image.width
        if h * w <= self.max_pixels:
            return [(0, h, 0, w, True)]
        from .detect import find_centers

        tile = max(int(np.sqrt(self.tile_pixels)), 2 * self.size)
        margin = self.size
        boxes = []
        for ty in range(0, h, tile):
            for tx in range(0, w, tile):
                y0, y1 = max(ty - margin, 0), min(ty + tile + margin, h)
                x0, x1 = max(tx - margin, 0), min(tx + tile + margin, w)
                sub = GalaxyImage(work[:, y0:y1, x0:x1], bands=image.bands)
                for row in find_centers(sub, deblend=False).catalog:
                    cx, cy = float(row["x_centroid"]) + x0, float(row["y_centroid"]) + y0
                    if not (tx <= cx < tx + tile and ty <= cy < ty + tile):
                        continue  # the neighbouring tile owns it
                    extent = max(int(row["bbox_xmax"]) - int(row["bbox_xmin"]),
                                 int(row["bbox_ymax"]) - int(row["bbox_ymin"])) + 1
                    side = min(max(int(1.5 * extent), self.size // 2), max(h, w))
                    bx = int(np.clip(round(cx - side / 2), 0, max(w - side, 0)))
                    by = int(np.clip(round(cy - side / 2), 0, max(h - side, 0)))
                    boxes.append((by, min(by + side, h), bx, min(bx + side, w), False))
        return boxes

    def _to_model(self, stamp, mode, native, to_model):
        """Map a ``(C, h, w)`` stamp to model space.

        Returns the ``(1, C, H', W')`` tensor, the linear scale (peak), the
        resampling factor (stamp pixels per model pixel) and the side of the
        square the stamp was padded to.  A ``native`` stamp keeps its pixels
        (the networks are fully convolutional); others are padded to a square
        and area-averaged down to the working size when larger.
        """
        import torch
        import torch.nn.functional as F

        from .models.stretch import robust_peak, stretch

        c, h, w = stamp.shape
        mapped = np.einsum("mc,chw->mhw", to_model, stamp).astype(np.float32)
        tensor = torch.from_numpy(mapped).to(self.device)[None]
        if mode == "linear":
            peak = float(robust_peak(tensor).reshape(-1)[0])
            tensor = stretch(tensor / peak)
        else:
            peak = 1.0
        if native:
            return tensor, peak, 1.0, max(h, w)
        side = max(h, w)
        tensor = F.pad(tensor, (0, side - w, 0, side - h))
        if side > self.size:
            tensor = F.interpolate(tensor, size=(self.size, self.size), mode="area")
            return tensor, peak, side / self.size, side
        tensor = F.pad(tensor, (0, self.size - side, 0, self.size - side))
        return tensor, peak, 1.0, side

    def _batched(self, net, tensors, *extra):
        """Run ``net`` over a list of ``(1, ...)`` tensors in batches of equal shape."""
        import torch

        results = [None] * len(tensors)
        by_shape = {}
        for i, t in enumerate(tensors):
            by_shape.setdefault(tuple(t.shape), []).append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                args = [torch.cat([t[i] for i in chunk]) for t in (tensors, *extra)]
                out = net(*args)
                for j, i in enumerate(chunk):
                    results[i] = out[j:j + 1]
        return results

    def _detect(self, logits, stamp, scale, snr):
        """Centres ``(x, y)`` in model pixels inside the part of the tensor the stamp covers.

        The detector's peaks are kept where the blend is significant: the
        3x3-aperture signal-to-noise ``snr`` (stamp pixels) must reach
        ``min_snr``, so that noise in faint stamps, stretched, does not
        turn into sources.  Where the detector finds nothing, photutils
        (`~astrodeblend.detect.find_centers`) does the search.
        """
        from .models import find_peaks

        found, method = [], "detector"
        h, w = stamp.shape[1:]
        if logits is not None:
            for x, y in find_peaks(logits, threshold=self.detect_threshold)[0].cpu().numpy():
                col = int(np.clip(round((x + 0.5) * scale - 0.5), 0, w - 1))
                row = int(np.clip(round((y + 0.5) * scale - 0.5), 0, h - 1))
                if snr[row, col] >= self.min_snr:
                    found.append((float(x), float(y)))
        if not found:
            from .detect import find_centers

            method = "photutils"
            catalog = find_centers(stamp).catalog
            found = [((float(r["x_centroid"]) + 0.5) / scale - 0.5,
                      (float(r["y_centroid"]) + 0.5) / scale - 0.5) for r in catalog]
        inside = [p for p in found if p[0] < w / scale - 0.5 and p[1] < h / scale - 0.5]
        return inside, method

    def _run_stamps(self, work, boxes, mode, snr, bands):
        """Detect and extract the sources of every stamp, batching the networks.

        ``bands`` are the two matrices of `band_mapping`.  Returns a list of
        ``(box, estimate (C, h, w), (x, y))`` in image pixels and the set of
        detection methods used.
        """
        import torch
        import torch.nn.functional as F

        from .models import make_heatmap
        from .models.stretch import unstretch

        stamps = []
        for y0, y1, x0, x1, native in boxes:
            stamp = work[:, y0:y1, x0:x1]
            stamps.append((stamp, (y0, y1, x0, x1),
                           *self._to_model(stamp, mode, native, bands[0])))
        tensors = [s[2] for s in stamps]
        logits = (self._batched(self.detector, tensors) if self.detector is not None
                  else [None] * len(stamps))
        jobs, methods = [], set()
        for k, (stamp, (y0, y1, x0, x1), _, _, scale, _) in enumerate(stamps):
            centers, method = self._detect(logits[k], stamp, scale, snr[y0:y1, x0:x1])
            methods.add(method)
            jobs += [(k, xy) for xy in centers]
        if not jobs:
            return [], methods
        heatmaps = [make_heatmap(torch.tensor([xy], dtype=tensors[k].dtype),
                                 tensors[k].shape[-2:], sigma=self.heatmap_sigma,
                                 device=self.device) for k, xy in jobs]
        outputs = self._batched(self.generator, [tensors[k] for k, _ in jobs], heatmaps)
        results = []
        for (k, (x, y)), out in zip(jobs, outputs, strict=True):
            stamp, (y0, y1, x0, x1), _, peak, scale, side = stamps[k]
            if mode == "linear":
                out = unstretch(out.clamp(min=0)) * peak
            if scale > 1:
                out = F.interpolate(out, size=(side, side), mode="bilinear",
                                    align_corners=False)
            h, w = stamp.shape[1:]
            est = np.einsum("cm,mhw->chw", bands[1],
                            out[0, :, :h, :w].float().cpu().numpy()).astype(np.float32)
            xy = ((x + 0.5) * scale - 0.5 + x0, (y + 0.5) * scale - 0.5 + y0)
            results.append(((y0, y1, x0, x1), est, xy))
        return results, methods


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


def _share_flux(work, estimates, centers, noise, width):
    """Split every pixel of ``work`` among the sources in proportion to their estimates.

    Each source's weight is its model estimate plus a faint floor: a broad
    Gaussian around its centre at 1 % of the noise.  Where the models
    predict light, the estimates decide; in the sky, the floor shares the
    pixel by distance (``width`` is the Gaussian's sigma).  Every pixel is
    shared, so noise enters each source with zero mean: excluding the pixels
    where the estimates vanish would keep positive noise fluctuations (which
    the model reads as faint light) and drop negative ones, biasing every
    flux upwards.
    """
    n, c, h, w = estimates.shape
    if n == 0:
        return estimates
    positive = np.clip(estimates, 0.0, None)
    yy, xx = np.mgrid[:h, :w]
    floor = np.stack([np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * width**2))
                      for x, y in centers]).astype(np.float32)
    level = 0.01 * np.maximum(np.asarray(noise, dtype=np.float32), 1e-12)
    weights = positive + floor[:, None] * level[None, :, None, None]
    total = weights.sum(axis=0, keepdims=True)
    # far from every source on a large image the floor underflows: such
    # pixels stay in the residual
    np.divide(weights, total, out=weights, where=total > 0)
    weights[:, total[0] <= 0] = 0.0
    return (weights * work[None]).astype(np.float32)


def _significance(data, noise):
    """Signal-to-noise map ``(H, W)`` of 3x3 apertures, combined over bands."""
    from scipy.ndimage import uniform_filter

    noise = np.maximum(np.asarray(noise, dtype=np.float32), 1e-30)
    snr = np.zeros(data.shape[1:], dtype=np.float32)
    for plane, sigma in zip(data, noise, strict=True):
        # the mean of 9 pixels has noise sigma / 3
        snr += uniform_filter(plane, size=3, mode="nearest") / (sigma / 3)
    return snr / np.sqrt(len(data))


def _segmap(sources, noise):
    """Label each pixel with the brightest source, where that source is significant."""
    h, w = sources.shape[2:]
    if len(sources) == 0:
        return np.zeros((h, w), dtype=np.int32)
    planes = sources.sum(axis=1)
    if noise is not None:
        threshold = float(np.sqrt(np.sum(np.square(noise))))
    else:
        threshold = 0.02 * sources.shape[1]
    best = planes.argmax(axis=0)
    significant = planes.max(axis=0) > threshold
    return np.where(significant, best + 1, 0).astype(np.int32)


def get_deblender(method="gan", *, model=None, device="auto", max_pixels=None):
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

    Returns
    -------
    callable
        ``deblender(image) -> DeblendResult`` with ``name`` and ``model_hash``.

    Raises
    ------
    InvalidInputError
        For an unknown method.

    Examples
    --------
    >>> get_deblender("segmentation").name
    'segmentation'
    """
    if method == "gan":
        return Deblender.load(model, device=device, max_pixels=max_pixels)
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
    `Deblender.map`, instead of calling this function in a loop.

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
    save_figure(plot_deblend_result(result, truth=scene.components), png_path,
                overwrite=overwrite)
    found = np.column_stack([result.catalog["x_centroid"], result.catalog["y_centroid"]])
    pairs = match_sources(scene.centers, found).pairs
    print(f"astrodeblend {__version__} demo: two generated galaxies blended "
          f"({scene.protocol} protocol), deblended with the {deblender.name} model")
    print(f"  found {result.n_sources} sources; true galaxies matched: {len(pairs)} of "
          f"{len(scene.centers)}")
    for t, f in pairs:
        err = flux_error(result.sources[f], scene.components[t])
        x, y = found[f]
        print(f"  galaxy {'AB'[t] if t < 2 else t}: x={x:.1f} y={y:.1f} "
              f"flux error {100 * err:+.1f} %")
    print(f"  input:  {blend_path}")
    print(f"  result: {result_path}")
    print(f"  figure: {png_path}")
    return 0


class _CallableModule(types.ModuleType):
    """The module, made callable: ``astrodeblend.deblend(...)`` is `deblend` (the function).

    The package exposes both the module ``astrodeblend.deblend`` and the
    function `deblend`; Python binds the package attribute to the module as
    soon as it is imported, so the module forwards calls to the function.
    """

    def __call__(self, *args, **kwargs):
        return deblend(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
