"""Training batches: scenes of one or more training-set files, in model space.

The files are read through the one reader, `astrodeblend.data.SceneFile`;
`TrainingScenes` joins the files of a split, and `TrainingScenes.loader`
feeds them to the loop through a `torch.utils.data.DataLoader`: workers
read and collate batches (padding the sources of every file to the same
``K`` and stretching linear-flux scenes, `LINEAR_PROTOCOLS`, to model
space) while the model trains.  Augmentation (`augment`: flips, transposes
and random integer shifts) stays in the training process, drawn from the
epoch's seeded generator, so a run is reproducible whatever the number of
workers.

Every listed source of a scene is a target: galaxies and, in ``survey``
files, stars (``n_sources`` may be 0 or 1 there; centres past
``n_sources`` are NaN in the files and 0 in the batches).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..data import open_split
from ..errors import DatasetError
from ..models import make_heatmap, robust_peak, stretch

__all__ = ["TrainingScenes", "load_scenes", "LINEAR_PROTOCOLS", "augment", "shift_scene"]

#: Loader workers when a training file is read from disk (`TrainConfig.num_workers` None).
DEFAULT_WORKERS = 2

#: Protocols whose scenes are linear flux (mapped with ``stretch(x / robust_peak(blend))``);
#: the others (``reiman``, ``paper``) are display values, used as they are.
LINEAR_PROTOCOLS = ("physical", "survey")


class TrainingScenes:
    """The scenes of one split of one or more training-set files.

    A map-style dataset: ``[i]`` is scene ``i`` of the files in order, a
    dict of arrays with a ``linear`` flag (the file's protocol is one of
    `LINEAR_PROTOCOLS`) and ``file``, the index of its file in ``paths``.

    Parameters
    ----------
    paths : str, path or list of them
        Training-set files; their scenes must share bands and size, and may
        be of different protocols.
    split : {'train', 'validation', 'test'}
        The split.
    max_memory_gb : float, optional
        Files whose split is smaller than this are read into memory.
    max_scenes : int, optional
        Keep only the first ``max_scenes`` scenes (read into memory).
    max_per_file : int, optional
        Keep only the first ``max_per_file`` scenes of each file (read into
        memory): every file is represented, as validation needs.

    Attributes
    ----------
    protocols : list of str
        Protocol of each file, in the order of ``paths``.

    Raises
    ------
    DatasetError
        If no file is given, a file is missing or malformed, or the files'
        scenes differ in bands or size.
    """

    def __init__(self, paths, split, *, max_memory_gb=float("inf"), max_scenes=None,
                 max_per_file=None):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = list(paths)
        if not self.paths:
            raise DatasetError("no training-set file was given")
        self.files, counts = [], []
        for path in self.paths:
            scenes = open_split(path, split)
            if self.files and scenes.shape != self.files[0].shape:
                raise DatasetError(f"training-set file {scenes.path} has scenes of shape "
                                   f"{scenes.shape} but {self.files[0].path} has "
                                   f"{self.files[0].shape}; all files must share bands and size")
            n = len(scenes)
            if max_per_file is not None:
                n = min(n, int(max_per_file))
            if max_scenes is not None:
                n = min(n, max_scenes - sum(counts))
            if max_scenes is not None or max_per_file is not None:
                scenes.load(n)
            elif scenes.nbytes <= max_memory_gb * 1e9:
                scenes.load()
            self.files.append(scenes)
            counts.append(n)
            if max_scenes is not None and sum(counts) >= max_scenes:
                break
        self.shape = self.files[0].shape
        self.k_max = max(f.max_sources for f in self.files)
        self.in_memory = (max_scenes is not None or max_per_file is not None
                          or all(f.in_memory for f in self.files))
        self.offsets = np.cumsum([0] + counts)
        self.protocols = [f.protocol for f in self.files]

    def __len__(self):
        return int(self.offsets[-1])

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"scene {index} out of range for {len(self)} scenes")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        scenes = self.files[part]
        item = scenes[int(index - self.offsets[part])]
        item["linear"] = scenes.protocol in LINEAR_PROTOCOLS
        item["file"] = part
        return item

    def file_indices(self, part):
        """Return the scene indices of file ``part`` (a `range`)."""
        return range(int(self.offsets[part]), int(self.offsets[part + 1]))

    def galaxy_ids(self):
        """Return the sorted distinct galaxy ids of the scenes (profiles and stars, -1, left out).

        Returns
        -------
        `numpy.ndarray`
            ``int64`` ids.
        """
        found = [np.zeros(0, np.int64)]
        for part, scenes in enumerate(self.files):
            for i in range(len(self.file_indices(part))):
                ids = np.asarray(scenes[i]["ids"], dtype=np.int64)
                found.append(ids[ids >= 0])
        return np.unique(np.concatenate(found))

    def split_fractions(self):
        """Return the galaxy split fractions of each file (None where a file does not say)."""
        out = []
        for scenes in self.files:
            split = scenes.params.get("split")
            out.append([float(v) for v in split] if split is not None else None)
        return out

    def collate(self, items):
        """Stack scenes into a batch of tensors in model space (galaxies zero padded to ``K``).

        Returns
        -------
        dict of `torch.Tensor`
            ``blend (B, C, H, W)``, ``truth (B, K, C, H, W)``, ``centers
            (B, K, 2)`` (0 past ``n_sources``), ``n_sources (B,)``,
            ``linear (B,)`` and ``file (B,)``.
        """
        b, (c, h, w) = len(items), self.shape
        blend = np.zeros((b, c, h, w), np.float32)
        truth = np.zeros((b, self.k_max, c, h, w), np.float32)
        centers = np.zeros((b, self.k_max, 2), np.float32)
        n_src = np.zeros(b, np.int64)
        linear = np.zeros(b, bool)
        file = np.zeros(b, np.int64)
        for row, item in enumerate(items):
            k = item["truth"].shape[0]
            n = min(int(item["n_sources"]), k)
            blend[row] = item["blend"]
            truth[row, :n] = item["truth"][:n]
            centers[row, :n] = item["centers"][:n]   # the padding (NaN in files) stays 0
            n_src[row] = n
            linear[row] = item["linear"]
            file[row] = item.get("file", 0)
        return to_model_space({"blend": torch.from_numpy(blend),
                               "truth": torch.from_numpy(truth),
                               "centers": torch.from_numpy(centers),
                               "n_sources": torch.from_numpy(n_src),
                               "linear": torch.from_numpy(linear),
                               "file": torch.from_numpy(file)})

    def batch(self, indices):
        """Return the scenes ``indices`` as one collated batch."""
        return self.collate([self[int(i)] for i in indices])

    def loader(self, *, batch_size, sampler=None, num_workers=None, pin_memory=False):
        """Return a `torch.utils.data.DataLoader` of collated batches.

        Parameters
        ----------
        batch_size : int
            Scenes per batch (the last one may be smaller).
        sampler : `torch.utils.data.Sampler`, optional
            Order of the scenes (default: the file order).
        num_workers : int, optional
            Worker processes; None: `DEFAULT_WORKERS` when a file is read
            from disk, 0 when all are in memory.
        pin_memory : bool, optional
            Page-locked batches, for fast copies to a GPU.
        """
        from torch.utils.data import DataLoader

        if num_workers is None:
            num_workers = 0 if self.in_memory else min(DEFAULT_WORKERS, os.cpu_count() or 1)
        workers = {"persistent_workers": True, "prefetch_factor": 4} if num_workers else {}
        return DataLoader(self, batch_size=batch_size, sampler=sampler, collate_fn=self.collate,
                          num_workers=num_workers, pin_memory=pin_memory, **workers)

    def close(self):
        """Close the files."""
        for scenes in self.files:
            scenes.close()


def load_scenes(data, split="train", *, max_scenes=None):
    """Read scenes of a training-set split into model space (for inspection and tests).

    Parameters
    ----------
    data : str, path or list of them
        Training-set HDF5 file(s).
    split : str, optional
        ``'train'``, ``'validation'`` or ``'test'``.
    max_scenes : int, optional
        Read at most this many scenes.

    Returns
    -------
    dict of `torch.Tensor`
        ``blend (N, C, H, W)``, ``truth (N, K, C, H, W)``, ``centers (N, K, 2)``,
        ``n_sources (N,)``, ``linear (N,)`` and ``file (N,)``, with the
        linear-flux scenes (``physical``, ``survey``) stretched to model space.

    Raises
    ------
    DatasetError
        If a file is missing, not HDF5, or lacks the split or its arrays.

    Examples
    --------
    >>> load_scenes("no-such.h5")
    Traceback (most recent call last):
    ...
    astrodeblend.errors.DatasetError: training-set file no-such.h5 does not exist
    """
    scenes = TrainingScenes(data, split, max_scenes=max_scenes)
    try:
        return scenes.batch(range(len(scenes)))
    finally:
        scenes.close()


def to_model_space(batch):
    """Stretch the linear-flux scenes of a batch in place: ``stretch(x / robust_peak(blend))``."""
    lin = batch["linear"]
    if bool(lin.any()):
        blend = batch["blend"][lin]
        scale = robust_peak(blend)
        batch["blend"][lin] = stretch(blend / scale[:, None, None, None])
        batch["truth"][lin] = stretch(batch["truth"][lin] / scale[:, None, None, None, None])
    return batch


def _edge_level(images):
    """Per-band median of the outermost ring of pixels: ``images (..., C, H, W) -> (..., C)``."""
    ring = torch.cat([images[..., 0, :], images[..., -1, :], images[..., 1:-1, 0],
                      images[..., 1:-1, -1]], dim=-1)
    return ring.median(dim=-1).values


def shift_scene(blend, truth, centers, n_sources, dx, dy):
    """Shift one scene by whole pixels; sources whose centre leaves the frame are dropped.

    The vacated strips of the blend and of each truth are filled with the
    per-band median of that image's own outermost ring of pixels (the sky
    of a display image, about 0 for a sky-subtracted linear one), the
    constant that `astrodeblend.pipeline` pads stamps with at a frame's
    edge.

    Parameters
    ----------
    blend : `torch.Tensor`
        ``(C, H, W)``.
    truth : `torch.Tensor`
        ``(K, C, H, W)``.
    centers : `torch.Tensor`
        ``(K, 2)`` 0-based ``(x, y)``.
    n_sources : int
        Listed sources (the first ``n_sources`` of ``truth`` and ``centers``).
    dx, dy : int
        Shift in pixels along x (columns) and y (rows).

    Returns
    -------
    blend, truth, centers : `torch.Tensor`
        Shifted; the sources still in the frame come first, the rest of
        ``truth`` and ``centers`` is 0.
    n_sources : int
        Sources whose centre is still inside the frame.

    Examples
    --------
    >>> import torch
    >>> truth = torch.zeros(2, 1, 8, 8); truth[0, 0, 2, 2] = truth[1, 0, 6, 6] = 1
    >>> centers = torch.tensor([[2.0, 2.0], [6.0, 6.0]])
    >>> b, t, c, n = shift_scene(truth.sum(0), truth, centers, 2, 3, 0)
    >>> n, c[0].tolist(), int(b[0, 2, 5])
    (1, [5.0, 2.0], 1)
    """
    h, w = blend.shape[-2:]
    dx, dy = int(dx), int(dy)
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"shift ({dx}, {dy}) is not smaller than the frame ({w}, {h})")

    def move(images):
        out = _edge_level(images)[..., None, None].expand_as(images).clone()
        out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            images[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return out

    blend, truth = move(blend), move(truth)
    moved = centers + torch.tensor([dx, dy], dtype=centers.dtype)
    k_max = truth.shape[0]
    listed = torch.arange(k_max) < int(n_sources)
    inside = (listed & (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0)
              & (moved[:, 1] <= h - 1))
    order = torch.cat([torch.nonzero(inside).flatten(), torch.nonzero(~inside).flatten()])
    n_in = int(inside.sum())
    truth, moved = truth[order], moved[order]
    truth[n_in:] = 0
    moved[n_in:] = 0
    return blend, truth, moved, n_in


def augment(batch, generator, *, max_shift=0):
    """Random flips/transposes and integer shifts per scene, centres moved accordingly.

    Parameters
    ----------
    batch : dict of `torch.Tensor`
        A collated batch (`TrainingScenes.collate`); changed in place.
    generator : `torch.Generator`
        Source of every draw (the epoch's seeded generator).
    max_shift : int, optional
        Largest shift in pixels along each axis (0: no shift, and no draw,
        so that runs without shifts draw exactly what they drew before).
        Shifts are uniform in ``[-max_shift, max_shift]``; see `shift_scene`
        for the vacated border and the sources that leave the frame.

    Returns
    -------
    dict of `torch.Tensor`
        ``batch``.
    """
    blend, truth, centers = batch["blend"], batch["truth"], batch["centers"]
    n_src = batch["n_sources"]
    h, w = blend.shape[-2:]
    flags = torch.randint(0, 2, (blend.shape[0], 3), generator=generator)
    max_shift = int(min(max_shift, h - 1, w - 1))
    shifts = (torch.randint(-max_shift, max_shift + 1, (blend.shape[0], 2), generator=generator)
              if max_shift > 0 else None)
    for i in range(blend.shape[0]):
        transpose, flip_x, flip_y = (bool(v) for v in flags[i])
        b, t, c = blend[i], truth[i], centers[i].clone()
        if transpose and h == w:
            b, t = b.transpose(-1, -2), t.transpose(-1, -2)
            c = c.flip(-1)
        if flip_x:
            b, t = b.flip(-1), t.flip(-1)
            c[:, 0] = (w - 1) - c[:, 0]
        if flip_y:
            b, t = b.flip(-2), t.flip(-2)
            c[:, 1] = (h - 1) - c[:, 1]
        n = int(n_src[i])
        c[n:] = 0                   # padding stays at 0 whatever the flips
        if shifts is not None and (shifts[i] != 0).any():
            b, t, c, n = shift_scene(b, t, c, n, int(shifts[i, 0]), int(shifts[i, 1]))
        blend[i], truth[i], centers[i] = b.clone(), t.clone(), c
        n_src[i] = n
    return batch


def galaxies(batch, device, sigma):
    """Flatten a batch of scenes to one item per source: blend, heatmap, truth, linear flag.

    Scenes without sources give no item (the result may be empty).
    """
    n = batch["n_sources"]
    k_max = batch["truth"].shape[1]
    mask = torch.arange(k_max)[None, :] < n[:, None]
    scene_idx, k_idx = torch.nonzero(mask, as_tuple=True)
    blend = batch["blend"][scene_idx].to(device)
    truth = batch["truth"][scene_idx, k_idx].to(device)
    centers = batch["centers"][scene_idx, k_idx].to(device)
    heat = make_heatmap(centers, blend.shape[-2:], sigma=sigma, dtype=blend.dtype)
    return {"blend": blend, "truth": truth, "heat": heat, "centers": centers,
            "linear": batch["linear"][scene_idx].to(device), "scene": scene_idx}
