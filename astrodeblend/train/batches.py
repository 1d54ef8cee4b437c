"""Training batches: scenes of one or more training-set files, in model space.

The files are read through the one reader, `astrodeblend.data.SceneFile`;
`TrainingScenes` joins the files of a split, and `TrainingScenes.loader`
feeds them to the loop through a `torch.utils.data.DataLoader`: workers
read and collate batches (padding the galaxies of every file to the same
``K`` and stretching physical scenes to model space) while the model
trains.  Augmentation stays in the training process, drawn from the
epoch's seeded generator, so a run is reproducible whatever the number of
workers.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..data import open_split
from ..errors import DatasetError
from ..models import make_heatmap, robust_peak, stretch

__all__ = ["TrainingScenes", "load_scenes"]

#: Loader workers when a training file is read from disk (`TrainConfig.num_workers` None).
DEFAULT_WORKERS = 2


class TrainingScenes:
    """The scenes of one split of one or more training-set files.

    A map-style dataset: ``[i]`` is scene ``i`` of the files in order, a
    dict of arrays with a ``physical`` flag.

    Parameters
    ----------
    paths : str, path or list of them
        Training-set files; their scenes must share bands and size.
    split : {'train', 'validation', 'test'}
        The split.
    max_memory_gb : float, optional
        Files whose split is smaller than this are read into memory.
    max_scenes : int, optional
        Keep only the first ``max_scenes`` scenes (read into memory).

    Raises
    ------
    DatasetError
        If no file is given, a file is missing or malformed, or the files'
        scenes differ in bands or size.
    """

    def __init__(self, paths, split, *, max_memory_gb=float("inf"), max_scenes=None):
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
            if max_scenes is not None:
                n = min(n, max_scenes - sum(counts))
                scenes.load(n)
            elif scenes.nbytes <= max_memory_gb * 1e9:
                scenes.load()
            self.files.append(scenes)
            counts.append(n)
            if max_scenes is not None and sum(counts) >= max_scenes:
                break
        self.shape = self.files[0].shape
        self.k_max = max(f.max_sources for f in self.files)
        self.in_memory = max_scenes is not None or all(f.in_memory for f in self.files)
        self.offsets = np.cumsum([0] + counts)

    def __len__(self):
        return int(self.offsets[-1])

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"scene {index} out of range for {len(self)} scenes")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        scenes = self.files[part]
        item = scenes[int(index - self.offsets[part])]
        item["physical"] = scenes.protocol == "physical"
        return item

    def collate(self, items):
        """Stack scenes into a batch of tensors in model space (galaxies zero padded to ``K``).

        Returns
        -------
        dict of `torch.Tensor`
            ``blend (B, C, H, W)``, ``truth (B, K, C, H, W)``, ``centers
            (B, K, 2)``, ``n_sources (B,)``, ``physical (B,)``.
        """
        b, (c, h, w) = len(items), self.shape
        blend = np.zeros((b, c, h, w), np.float32)
        truth = np.zeros((b, self.k_max, c, h, w), np.float32)
        centers = np.zeros((b, self.k_max, 2), np.float32)
        n_src = np.zeros(b, np.int64)
        physical = np.zeros(b, bool)
        for row, item in enumerate(items):
            k = item["truth"].shape[0]
            blend[row] = item["blend"]
            truth[row, :k] = item["truth"]
            centers[row, :k] = item["centers"]
            n_src[row] = min(item["n_sources"], k)
            physical[row] = item["physical"]
        return to_model_space({"blend": torch.from_numpy(blend),
                               "truth": torch.from_numpy(truth),
                               "centers": torch.from_numpy(centers),
                               "n_sources": torch.from_numpy(n_src),
                               "physical": torch.from_numpy(physical)})

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
        ``n_sources (N,)``, ``physical (N,)`` with physical scenes stretched
        to model space.

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
    """Stretch the physical scenes of a batch in place: ``stretch(x / robust_peak(blend))``."""
    phys = batch["physical"]
    if bool(phys.any()):
        blend = batch["blend"][phys]
        scale = robust_peak(blend)
        batch["blend"][phys] = stretch(blend / scale[:, None, None, None])
        batch["truth"][phys] = stretch(batch["truth"][phys] / scale[:, None, None, None, None])
    return batch


def augment(batch, generator):
    """Random flips/transposes per scene, with the centres moved accordingly."""
    blend, truth, centers = batch["blend"], batch["truth"], batch["centers"]
    h, w = blend.shape[-2:]
    flags = torch.randint(0, 2, (blend.shape[0], 3), generator=generator)
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
        blend[i], truth[i], centers[i] = b.clone(), t.clone(), c
    return batch


def galaxies(batch, device, sigma):
    """Flatten a batch of scenes to one item per galaxy: blend, heatmap, truth, physical."""
    n = batch["n_sources"]
    k_max = batch["truth"].shape[1]
    mask = torch.arange(k_max)[None, :] < n[:, None]
    scene_idx, k_idx = torch.nonzero(mask, as_tuple=True)
    blend = batch["blend"][scene_idx].to(device)
    truth = batch["truth"][scene_idx, k_idx].to(device)
    centers = batch["centers"][scene_idx, k_idx].to(device)
    heat = make_heatmap(centers, blend.shape[-2:], sigma=sigma, dtype=blend.dtype)
    return {"blend": blend, "truth": truth, "heat": heat, "centers": centers,
            "physical": batch["physical"][scene_idx].to(device), "scene": scene_idx}
