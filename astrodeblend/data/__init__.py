"""Training-set files: build blended scenes into HDF5, split by galaxy, stream them back.

File layout (``format='astrodeblend-dataset'``, ``version=1``)
---------------------------------------------------------------
Root attributes: ``format``, ``version``, ``protocol``, ``seed`` and
``params`` (JSON: the protocol options, the split fractions, the number of
galaxies per scene, the image shape, the number of galaxies of each split
and a SHA-256 of the sorted galaxy ids), plus ``images`` (the folder the
scenes were made from, for information).  One group per split, ``train``,
``validation`` and ``test``, each with

- ``blend``     float32 ``(N, C, H, W)``
- ``truth``     float32 ``(N, K, C, H, W)``: noiseless galaxies, zero padded
- ``centers``   float32 ``(N, K, 2)``: 0-based ``(x, y)``, NaN padded
- ``n_sources`` int32   ``(N,)``
- ``ids``       int64   ``(N, K)``: galaxy ids, -1 padded
- ``partials``  float32 ``(N, K, C, H, W)``: ``paper`` protocol only
- attribute ``n_complete``: the number of scenes that are completely written

``K`` is the number of galaxies per scene (2, or ``n_galaxies`` for
``physical``); for ``survey`` it is the most sources of a scene (4 galaxies
+ ``max_stars`` stars by default), ``n_sources`` varies from scene to scene,
stars and profile galaxies have id -1, the images' own band count is the
scenes' (``n_bands``) and the defects' mask is not stored (the blend keeps
the defective values).  Datasets are chunked one scene per chunk and resizable.
Images may be stored as float16 (``dtype='float16'``) to halve the file;
`open_split` always returns float32.

Splits and determinism
----------------------
Galaxies are assigned to a split by a stable hash of their id
(`split_galaxies`), independent of seeds and of which other galaxies are
present, so the test galaxies never change.  Each scene *i* of split *k*
draws its galaxies from that split only, with
``numpy.random.default_rng([seed, k, i])``: a file is a pure function of
the image folder and the arguments.

Writing and resuming
--------------------
A file is never changed in place: `build_dataset` writes a new file, or
extends a copy of an existing one, beside it and renames it into place
(`astrodeblend.io.atomic_write`), so a kill at any moment leaves the old
file whole.  Scenes are appended in batches; after each flushed batch the
split's ``n_complete`` attribute is updated.  When a build is interrupted
(Ctrl-C, an error) after some scenes were completed, the file with those
scenes is kept (unless ``overwrite=True`` was replacing a file: that file
stays as it was); running `build_dataset` again with the same arguments (and
a larger ``n``, or after an interruption) truncates each split to its
``n_complete`` scenes and appends the missing ones.  A file made with
another protocol, seed or options is refused unless ``overwrite=True``.
"""

from ._build import DatasetSummary, build_dataset
from ._layout import FORMAT, SPLITS, VERSION
from ._reader import SceneFile, open_split
from ._split import split_galaxies

__all__ = ["FORMAT", "VERSION", "SPLITS", "split_galaxies", "build_dataset", "DatasetSummary",
           "open_split", "SceneFile"]
