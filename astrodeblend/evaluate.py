"""Score deblenders on blended scenes with known truth: `evaluate`.

`evaluate` builds ``n`` scenes from a folder of isolated galaxy images with
one of the protocols of ``spec/protocols.md`` (`astrodeblend.blend.make_scene`),
runs every requested method on the *same* scenes, pairs each true galaxy
with a returned source and scores the pair with `astrodeblend.metrics`.

Scenes
------
Galaxies come from ``images`` restricted to ``split``: ``'test'`` is the
held-out part of `astrodeblend.data.split_galaxies` (the galaxies no
training set ever uses), ``'all'`` is every image.  Scene ``i`` draws its
galaxies and its own seed from ``numpy.random.default_rng([seed, i])``, so
a scene does not depend on ``n`` or on the methods compared.

Galaxies the model was trained on are refused: when a ``'gan'`` method is
compared and its checkpoint records the galaxies of its training scenes
(``galaxy_split``, `astrodeblend._checkpoint.make_split_record`), a pool
that holds any of them raises `~astrodeblend.errors.DatasetError` before
any scene is made, unless ``allow_training_galaxies=True``
(``--allow-training-galaxies``).  A checkpoint without the record (the
first shipped default model) is not checked.

``survey`` scenes (`astrodeblend.blend.blend_survey`) get up to four
galaxies of the pool each and hold 0 to 4 galaxies and maybe stars: every
galaxy and every star is a true source to find (column ``kind``), and a
scene of one galaxy and no star (``isolated``) is answered right only by
exactly one source.

Matching
--------
Returned sources are paired with the true centres by
`astrodeblend.metrics.match_sources` using the catalog ``x_centroid``,
``y_centroid``, within ``max_distance`` pixels (by default 5 px for an 80 px
scene, scaled with the scene's side, and at least 2 px).  A true galaxy without a partner is
*not found* and is scored against an all-zero image: it costs PSNR, SSIM and
a flux error of -100 %; its centroid and ellipticity errors are undefined
(NaN) and left out of their means and medians.

Metric space
------------
- ``reiman`` and ``paper`` scenes hold display values in [0, 1]: PSNR and
  SSIM use them as they are with ``data_range=1``.
- ``physical`` scenes are linear: PSNR and SSIM are computed after dividing
  prediction and truth by the peak of the blend (``data_range=1``).
- ``survey`` scenes are linear too, divided by the peak of the noiseless
  blend (the sum of the components), since cosmic rays and hot columns can
  be the brightest pixels of the blend.
- Flux errors, centroids and ellipticities always use linear values: the
  raw values of ``physical`` scenes, ``value ** 2.2`` for display scenes
  (``spec/protocols.md``), so that the faint sky of a display image does
  not weigh on the moments.
- ``_norm`` columns repeat PSNR and SSIM with each image divided by its own
  maximum (the BlendingToolKit convention), which hides flux errors.
- Means and medians of PSNR replace ``inf`` (a perfect answer) by
  `astrodeblend.metrics.PSNR_CAP`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from .errors import DatasetError, InvalidInputError, OutputExistsError
from .metrics import (
    PSNR_CAP,
    centroid_error,
    ellipticity_error,
    flux_error,
    match_sources,
    psnr,
    ssim,
)

__all__ = ["evaluate", "evaluate_from_cli", "format_summary", "OUTPUT_FILES", "METRICS"]

#: Files that `evaluate` writes in ``output_dir``.
OUTPUT_FILES = ("evaluation.json", "evaluation.csv", "scenes.csv", "gallery.png",
                "hist_psnr.png", "hist_flux_error.png")

#: Per-galaxy metrics, with the description of their summary columns.
METRICS = {
    "psnr": "PSNR (dB) in the protocol's metric space, inf capped at PSNR_CAP",
    "ssim": "SSIM in the protocol's metric space",
    "psnr_norm": "PSNR (dB) of max-normalised images",
    "ssim_norm": "SSIM of max-normalised images",
    "abs_flux_error": "|relative flux error| on linear values",
    "centroid_error": "centroid error (pixels), found galaxies only",
    "ellipticity_error": "|e_pred - e_true| from second moments, found galaxies only",
}

_COLUMN_TEXT = {
    "method": "deblending method",
    "n_scenes": "number of scenes",
    "n_galaxies": "number of true galaxies",
    "detection_rate": "fraction of true galaxies matched to a returned source",
    "both_found": "fraction of scenes where every galaxy was matched",
    "n_sources_mean": "mean number of sources returned per scene",
    "n_true_mean": "mean number of true sources (galaxies and stars) per scene",
    "spurious_mean": "mean number of returned sources matched to no true source, per scene",
    "star_detection_rate": "fraction of true stars matched (survey; NaN without stars)",
    "isolated_single": "fraction of scenes of one galaxy and no star answered by exactly one "
                       "source (survey; NaN without such scenes)",
    "seconds_per_scene": "mean wall-clock seconds of one deblender call",
}

#: Display protocols: values in [0, 1], gamma-stretched.
_DISPLAY_PROTOCOLS = ("reiman", "paper")
_GAMMA = 2.2
_SPLITS = ("test", "validation", "train", "all")
#: Images offered to each ``survey`` scene (it uses 0 to 4 of them).
_SURVEY_PICK = 4
#: Matching radius (pixels) for an 80 px scene; scaled with the scene side.
_MAX_DISTANCE_80 = 5.0
#: Smallest default matching radius (pixels), for very small scenes.
_MIN_DISTANCE = 2.0


def _resolve_methods(methods, model, device):
    """Return ``[(name, deblender)]`` for method names or ready deblenders."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(methods)
    if not methods:
        raise InvalidInputError("methods is empty: give at least one method to evaluate")
    resolved = []
    for method in methods:
        if callable(method):
            name = str(getattr(method, "name", "") or type(method).__name__)
            resolved.append((name, method))
        else:
            from .pipeline import get_deblender

            resolved.append((str(method), get_deblender(method, model=model, device=device)))
    names = [name for name, _ in resolved]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"methods has repeated names: {names}")
    return resolved


def _galaxy_pool(images, split):
    """Return ``(getter, ids)`` of the galaxies to draw scenes from."""
    if split not in _SPLITS:
        raise InvalidInputError(f"split must be one of {_SPLITS}, not {split!r}")
    if isinstance(images, (str, Path)):
        from .io import read_galaxy_zoo

        dataset = read_galaxy_zoo(images)
        source = f"folder {images}"
    else:
        dataset = images
        source = "the images given"
    ids = np.asarray(getattr(dataset, "ids", np.arange(len(dataset))))
    index = np.arange(len(ids))
    if split != "all":
        from .data import split_galaxies

        chosen = np.asarray(list(split_galaxies(ids)[split]))
        index = index[np.isin(ids, chosen)]
    if len(index) < 2:
        raise DatasetError(f"{source} has {len(index)} galaxies in split {split!r}: "
                           "at least 2 are needed (use split='all' for a small folder)")
    return dataset, ids, index


def _training_overlap(methods, model, ids, pool):
    """Return ``(overlap ids, checkpoint, record)`` of the pool with the gan's training galaxies.

    Empty when no ``'gan'`` method is compared, the images carry no ids, or
    the checkpoint has no ``galaxy_split`` record.
    """
    none = (np.zeros(0, np.int64), None, None)
    names = [m for m in ([methods] if isinstance(methods, str) else methods)
             if isinstance(m, str)]
    names = [n.strip() for m in names for n in m.split(",")]
    if "gan" not in names or ids is None:
        return none
    from ._checkpoint import load_checkpoint, training_galaxy_ids
    from .weights import default_model_path

    path = Path(model) if model is not None else default_model_path()
    payload = load_checkpoint(path)
    trained = training_galaxy_ids(payload)
    if trained is None:
        return none
    overlap = np.intersect1d(np.asarray(ids)[pool].astype(np.int64), trained)
    return overlap, path, payload.get("galaxy_split")


def _output_paths(output_dir, overwrite):
    """Return the output paths, refusing existing ones before any work is done."""
    if output_dir is None:
        return None
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"output_dir {folder} exists and is not a folder")
    paths = {name: folder / name for name in OUTPUT_FILES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} exist (use overwrite=True / "
                                "--overwrite to replace them)")
    folder.mkdir(parents=True, exist_ok=True)
    return paths


def _scene_space(scene):
    """Return ``(metric_scale, linearise)`` for a scene's protocol."""
    if scene.protocol in _DISPLAY_PROTOCOLS:
        return 1.0, lambda a: np.clip(a, 0, None) ** _GAMMA
    if scene.protocol == "survey":  # defects may be the brightest pixels of the blend
        peak = float(scene.components.sum(axis=0).max()) if scene.n_sources else 0.0
    else:
        peak = float(np.max(scene.blend.filled(0.0)))
    return (peak if peak > 0 else 1.0), lambda a: a


def _score(pred, truth, scale, linearise):
    """Return the metric dict of one (prediction, truth) pair."""
    pred_m, truth_m = pred / scale, truth / scale
    found = bool(np.any(pred))
    lin_pred, lin_truth = linearise(pred), linearise(truth)
    return {
        "psnr": psnr(pred_m, truth_m, data_range=1.0),
        "ssim": ssim(pred_m, truth_m, data_range=1.0),
        "psnr_norm": psnr(pred, truth, normalize="max"),
        "ssim_norm": ssim(pred, truth, normalize="max"),
        "flux_error": flux_error(lin_pred, lin_truth) if lin_truth.sum() > 0 else np.nan,
        "centroid_error": centroid_error(lin_pred, lin_truth) if found else np.nan,
        "ellipticity_error": ellipticity_error(lin_pred, lin_truth) if found else np.nan,
    }


def _stat(values, how):
    """NaN-aware mean or median without warnings (NaN when nothing is finite)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.nan
    return float(np.mean(values) if how == "mean" else np.median(values))


def _summary_row(rows, name, n_scenes, seconds, n_returned, scenes):
    """One summary row (dict) of a method from its per-galaxy rows and per-scene counts."""
    out = {"method": name, "n_scenes": n_scenes, "n_galaxies": len(rows)}
    found = np.array([r["found"] for r in rows], dtype=bool)
    scene = np.array([r["scene"] for r in rows])
    star = np.array([r["kind"] == "star" for r in rows], dtype=bool)
    out["detection_rate"] = float(found.mean()) if len(found) else np.nan
    out["both_found"] = (float(np.mean([found[scene == s].all() for s in np.unique(scene)]))
                         if len(found) else np.nan)
    out["n_sources_mean"] = float(np.mean(n_returned)) if n_returned else np.nan
    out["n_true_mean"] = float(np.mean([s["n_true"] for s in scenes])) if scenes else np.nan
    out["spurious_mean"] = (float(np.mean([s["n_returned"] - s["n_matched"] for s in scenes]))
                            if scenes else np.nan)
    out["star_detection_rate"] = float(found[star].mean()) if star.any() else np.nan
    single = [s["n_returned"] == 1 for s in scenes if s["isolated"]]
    out["isolated_single"] = float(np.mean(single)) if single else np.nan
    out["seconds_per_scene"] = float(np.mean(seconds)) if seconds else np.nan
    galaxy = np.array([r["galaxy"] for r in rows])
    for metric in METRICS:
        if metric == "abs_flux_error":
            values = np.abs([r["flux_error"] for r in rows])
        else:
            values = np.array([r[metric] for r in rows], dtype=float)
        if metric.startswith("psnr"):
            values = np.minimum(values, PSNR_CAP)
        for who, select in (("a", galaxy == "A"), ("b", galaxy == "B"),
                            ("all", np.ones(len(rows), bool))):
            for how in ("mean", "median"):
                out[f"{metric}_{how}_{who}"] = _stat(values[select], how)
    return out


def evaluate(images, *, protocol="reiman", n=200, seed=0, methods=("gan", "segmentation",
             "fluxshare"), model=None, split="test", device="auto", output_dir=None,
             overwrite=False, progress=True, max_distance=None, n_gallery=4,
             protocol_options=None, allow_training_galaxies=False):
    """Compare deblenders on ``n`` blended scenes with known truth.

    Parameters
    ----------
    images : str, `~pathlib.Path` or sequence
        Folder of isolated galaxy images (read with
        `astrodeblend.io.read_galaxy_zoo`), or a sequence of images
        (`~astrodeblend.image.GalaxyImage` or arrays) used as they are.
    protocol : {'reiman', 'physical', 'paper', 'survey'}, optional
        Blending protocol (``spec/protocols.md``; ``survey``:
        `astrodeblend.blend.blend_survey`, 96 px scenes of 1-5 bands).
    n : int, optional
        Number of scenes.
    seed : int, optional
        Seed of the scenes: scene ``i`` uses ``default_rng([seed, i])``.
    methods : sequence of str or deblender, optional
        Names for `astrodeblend.pipeline.get_deblender` (``'gan'``,
        ``'segmentation'``, ``'fluxshare'``) or callables
        ``deblender(image) -> DeblendResult`` with a ``name``.
    model : str or path, optional
        Checkpoint of the ``'gan'`` method (the shipped model by default).
    split : {'test', 'validation', 'train', 'all'}, optional
        ``'test'``: only galaxies of the held-out split (never seen in
        training); ``'validation'``: the split to tune settings on;
        ``'train'``; ``'all'``: every image.
    device : str, optional
        Device of the ``'gan'`` method.
    output_dir : str or path, optional
        Write ``evaluation.json``, ``evaluation.csv`` (summary),
        ``scenes.csv`` (one row per scene, galaxy and method), a gallery PNG
        and PSNR / flux-error histograms there.
    overwrite : bool, optional
        Replace existing output files (refused by default, before any work).
    progress : bool, optional
        Show a progress bar.
    max_distance : float, optional
        Matching radius in pixels; by default 5 px scaled by the scene side
        over 80 px (8 px for 128 px ``paper`` scenes), at least 2 px.
    n_gallery : int, optional
        Number of scenes shown in the gallery.
    protocol_options : dict, optional
        Options of the protocol function (`astrodeblend.blend.make_scene`),
        e.g. ``{"image_fraction": 1.0}`` for ``survey`` scenes made of the
        given galaxies only; recorded in ``meta['protocol_options']``.
    allow_training_galaxies : bool, optional
        Score the ``'gan'`` method on galaxies its checkpoint was trained on
        (refused by default; the number used is recorded in
        ``meta['training_galaxies']``).

    Returns
    -------
    `~astropy.table.Table`
        One row per method: ``method``, ``n_scenes``, ``n_galaxies``,
        ``detection_rate`` (fraction of true galaxies matched),
        ``both_found`` (fraction of scenes where every galaxy was matched),
        ``n_sources_mean``, ``n_true_mean``, ``spurious_mean`` (returned
        sources matched to nothing), ``star_detection_rate``,
        ``isolated_single`` (one galaxy, no star: exactly one source
        returned), ``seconds_per_scene`` (each method is called
        once on the first scene untimed before timing starts), and for
        every metric of
        `METRICS` the columns ``{metric}_{mean|median}_{a|b|all}`` (galaxy
        A, galaxy B, every galaxy).  ``meta['scenes']`` holds the
        per-galaxy table (signed ``flux_error``, ``found``,
        ``match_distance``, ...), the other ``meta`` keys the settings
        (``meta['models']`` each learned method's weights hash,
        ``meta['precision']`` the arithmetic of its networks).

    Raises
    ------
    DatasetError
        If fewer than two galaxies are available, or the galaxies of
        ``split`` include galaxies the ``'gan'`` checkpoint was trained on
        (its ``galaxy_split`` record) and ``allow_training_galaxies`` is
        False.
    InvalidInputError
        For an unknown protocol, split or method.
    OutputExistsError
        If an output file exists and ``overwrite`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.modeling.models import Sersic2D
    >>> yy, xx = np.mgrid[:96, :96]
    >>> galaxies = [np.clip(Sersic2D(1, r, 1.5, 47.5, 47.5, e, t)(xx, yy), 0, 1) ** (1 / 2.2)
    ...             for r, e, t in [(6, 0.2, 0.3), (8, 0.5, 1.0), (5, 0.1, 2.0)]]
    >>> table = evaluate(galaxies, protocol="physical", n=2, split="all",
    ...                  methods=["fluxshare"], progress=False)
    >>> str(table["method"][0]), int(table["n_galaxies"][0]), len(table.meta["scenes"])
    ('fluxshare', 4, 4)
    """
    from .blend import make_scene
    from .utils import progress as progress_bar

    options = dict(protocol_options or {})
    n = int(n)
    if n < 1:
        raise InvalidInputError(f"n must be a positive number of scenes, not {n}")
    dataset, ids, pool = _galaxy_pool(images, split)
    has_ids = isinstance(images, (str, Path)) or hasattr(dataset, "ids")
    overlap, checkpoint, record = _training_overlap(methods, model, ids if has_ids else None,
                                                    pool)
    if overlap.size and not allow_training_galaxies:
        where = f"folder {images}" if isinstance(images, (str, Path)) else "the images given"
        fractions = (record or {}).get("fractions")
        trained = "/".join(f"{f:g}" for f in fractions) if fractions else "unknown"
        raise DatasetError(
            f"{overlap.size} of the {len(pool)} galaxies of split {split!r} of {where} were in "
            f"the training scenes of model {checkpoint} (split fractions {trained}, "
            f"{(record or {}).get('n_train_galaxies', '?')} training galaxies): use split='test' "
            f"(--split test) or allow_training_galaxies=True (--allow-training-galaxies)")
    paths = _output_paths(output_dir, overwrite)
    deblenders = _resolve_methods(methods, model, device)
    n_pick = min(_SURVEY_PICK, len(pool)) if protocol == "survey" else 2
    rows = []
    seconds = {name: [] for name, _ in deblenders}
    returned = {name: [] for name, _ in deblenders}
    per_scene = {name: [] for name, _ in deblenders}
    gallery = []
    used_distance = None
    for i in progress_bar(range(n), enable=progress, desc=f"evaluate {protocol}", unit="scene"):
        rng = np.random.default_rng([seed, i])
        picks = rng.choice(pool, size=n_pick, replace=False)
        scene_seed = int(rng.integers(0, 2**31 - 1))
        galaxies = [dataset[int(k)] for k in picks]
        scene = make_scene(galaxies, protocol=protocol, seed=scene_seed, **options)
        truth = np.asarray(scene.components, dtype=np.float64)
        centers = np.asarray(scene.centers, dtype=float).reshape(-1, 2)
        kinds, source_ids = _source_kinds(scene, ids, picks)
        side = min(scene.blend.shape[1:])
        distance = (max(_MAX_DISTANCE_80 * side / 80, _MIN_DISTANCE) if max_distance is None
                    else float(max_distance))
        used_distance = distance
        scale, linearise = _scene_space(scene)
        shown = {"blend": scene.blend.filled(0.0), "truth": truth, "methods": {}}
        if i == 0:
            for _, deblender in deblenders:  # untimed: imports, caches, device warm-up
                deblender(scene.blend)
        for name, deblender in deblenders:
            start = time.perf_counter()
            result = deblender(scene.blend)
            seconds[name].append(time.perf_counter() - start)
            returned[name].append(result.n_sources)
            found_xy = (np.column_stack([np.asarray(result.catalog["x_centroid"], float),
                                         np.asarray(result.catalog["y_centroid"], float)])
                        if result.n_sources else np.zeros((0, 2)))
            usable = np.flatnonzero(np.isfinite(found_xy).all(axis=1))
            per_scene[name].append({"n_true": len(truth), "n_returned": int(result.n_sources),
                                    "isolated": bool(scene.params.get("isolated", False))})
            matches = match_sources(centers, found_xy[usable], max_distance=distance)
            partner = dict(zip(matches.pairs[:, 0].tolist(),
                               usable[matches.pairs[:, 1]].tolist(), strict=True))
            gap = dict(zip(matches.pairs[:, 0].tolist(), matches.distances.tolist(),
                           strict=True))
            per_scene[name][-1]["n_matched"] = len(partner)
            preds = np.zeros_like(truth)
            for j in range(len(truth)):
                if j in partner:
                    preds[j] = result.sources[partner[j]]
                row = {"scene": i, "galaxy": _galaxy_name(j), "kind": kinds[j],
                       "galaxy_id": source_ids[j],
                       "method": name, "found": j in partner,
                       "match_distance": gap.get(j, np.nan),
                       "n_sources": result.n_sources, "seconds": seconds[name][-1]}
                row.update(_score(preds[j], truth[j], scale, linearise))
                rows.append(row)
            if len(gallery) < n_gallery:
                shown["methods"][name] = {"sources": preds,
                                          "residual": result.residual.filled(0.0)}
        if len(gallery) < n_gallery:
            gallery.append(shown)

    per_galaxy = Table(rows=rows, names=list(rows[0])) if rows else Table()
    summary = Table(rows=[_summary_row([r for r in rows if r["method"] == name], name, n,
                                       seconds[name], returned[name], per_scene[name])
                          for name, _ in deblenders])
    for column, text in _COLUMN_TEXT.items():
        summary[column].description = text
    for column in summary.colnames:
        for metric, text in METRICS.items():
            if column.startswith(metric + "_") and column[len(metric) + 1:].split("_")[0] in (
                    "mean", "median"):
                summary[column].description = text
    summary.meta.update({
        "protocol": protocol, "protocol_options": options, "n": n, "seed": int(seed),
        "split": split, "training_galaxies": int(overlap.size),
        "max_distance": used_distance, "psnr_cap": PSNR_CAP,
        "metric_space": ("display values, data_range 1" if protocol in _DISPLAY_PROTOCOLS
                         else "linear values divided by the noiseless blend peak, data_range 1"
                         if protocol == "survey"
                         else "linear values divided by the blend peak, data_range 1"),
        "models": {name: str(getattr(d, "model_hash", "") or "") for name, d in deblenders},
        "precision": {name: d.precision for name, d in deblenders if hasattr(d, "precision")},
        "scenes": per_galaxy,
    })
    if paths is not None:
        _write_outputs(summary, per_galaxy, gallery, paths, overwrite=overwrite)
        summary.meta["files"] = [str(p) for p in paths.values()]
    return summary


def _source_kinds(scene, ids, picks):
    """Return the kind (``'galaxy'``/``'star'``) and the galaxy id (-1: none) of each source."""
    records = scene.params.get("components") if scene.protocol == "survey" else None
    if records is None:
        return (["galaxy"] * scene.n_sources,
                [int(ids[picks[j]]) if j < len(picks) else -1 for j in range(scene.n_sources)])
    kinds = [str(r["kind"]) for r in records]
    source_ids = [int(ids[picks[r["image"]]]) if r.get("source") == "image" else -1
                  for r in records]
    return kinds, source_ids


def _galaxy_name(j):
    """Return the label of galaxy ``j``: ``'A'``, ``'B'``, ``'C'``, ..."""
    return chr(ord("A") + j) if j < 26 else f"G{j}"


def _json_value(value):
    """Make ``value`` JSON-friendly (NaN -> None, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else (None if np.isnan(value) else str(value))
    return value if isinstance(value, str) or value is None else str(value)


def _write_outputs(summary, per_galaxy, gallery, paths, *, overwrite):
    """Write the JSON, the CSVs and the figures through `atomic_write`."""
    from ._version import __version__
    from .io import atomic_write
    from .plotting import plot_evaluation_gallery, plot_metric_histogram, save_figure

    meta = {k: v for k, v in summary.meta.items() if k != "scenes"}
    document = {
        "format": "astrodeblend-evaluation", "version": 1,
        "software": f"astrodeblend {__version__}", **meta,
        "columns": {c: summary[c].description or "" for c in summary.colnames},
        "summary": [{c: row[c] for c in summary.colnames} for row in summary],
    }
    with atomic_write(paths["evaluation.json"], overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(_json_value(document), indent=2) + "\n")
    plain = summary.copy(copy_data=False)
    plain.meta.clear()
    with atomic_write(paths["evaluation.csv"], overwrite=overwrite) as tmp:
        plain.write(tmp, format="ascii.csv", overwrite=True)
    with atomic_write(paths["scenes.csv"], overwrite=overwrite) as tmp:
        per_galaxy.write(tmp, format="ascii.csv", overwrite=True)
    methods = list(summary["method"])
    figures = {
        "gallery.png": plot_evaluation_gallery(
            [g["blend"] for g in gallery], [g["truth"] for g in gallery],
            {m: [g["methods"][m]["sources"] for g in gallery] for m in methods},
            {m: [g["methods"][m]["residual"] for g in gallery] for m in methods},
            linear=summary.meta["protocol"] not in _DISPLAY_PROTOCOLS),
        "hist_psnr.png": plot_metric_histogram(
            per_galaxy, "psnr", xlabel="PSNR (dB)", clip=(None, PSNR_CAP)),
        "hist_flux_error.png": plot_metric_histogram(
            per_galaxy, "flux_error", xlabel="relative flux error"),
    }
    for name, figure in figures.items():
        save_figure(figure, paths[name], overwrite=overwrite)


_SHOWN_COLUMNS = ("method", "detection_rate", "both_found", "star_detection_rate",
                  "isolated_single", "spurious_mean", "psnr_mean_all",
                  "psnr_median_all", "ssim_mean_all", "psnr_norm_mean_all",
                  "abs_flux_error_median_all", "centroid_error_median_all",
                  "ellipticity_error_median_all", "seconds_per_scene")


def format_summary(table):
    """Return a compact text table of the main summary columns.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The table returned by `evaluate`.

    Returns
    -------
    str
        The method, detection rates, mean and median PSNR, mean SSIM, mean
        max-normalised PSNR, median flux, centroid and ellipticity errors
        and the time per scene, one line per method.

    Examples
    --------
    >>> from astropy.table import Table
    >>> table = Table({"method": ["fluxshare"], "detection_rate": [0.75],
    ...                "psnr_mean_all": [23.456]})
    >>> print(format_summary(table))
      method  detection_rate psnr_mean_all
    --------- -------------- -------------
    fluxshare          0.750         23.46
    """
    shown = table[[c for c in _SHOWN_COLUMNS if c in table.colnames
                   and (c == "method" or not np.all(np.isnan(np.asarray(table[c], float))))]]
    shown = shown.copy(copy_data=True)
    shown.meta.clear()
    for column in shown.colnames[1:]:
        shown[column].info.format = ".3f" if "psnr" not in column else ".2f"
    return "\n".join(shown.pformat(max_lines=-1, max_width=-1))


def evaluate_from_cli(args):
    """Run ``astrodeblend evaluate`` from parsed command-line arguments.

    Parameters
    ----------
    args : `argparse.Namespace`
        The arguments of the ``evaluate`` subcommand (`astrodeblend.cli`).

    Returns
    -------
    int
        Exit status, 0 on success.
    """
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    table = evaluate(args.images, protocol=args.protocol, n=args.n, seed=args.seed,
                     methods=methods, model=args.model, split=args.split,
                     device=args.device, output_dir=args.output_dir,
                     overwrite=args.overwrite, progress=not args.no_progress,
                     allow_training_galaxies=getattr(args, "allow_training_galaxies", False))
    print(f"{args.protocol} protocol, {args.n} scenes, seed {args.seed}, split {args.split}, "
          f"matching within {table.meta['max_distance']:.1f} px")
    print(format_summary(table))
    print(f"wrote {', '.join(OUTPUT_FILES)} in {args.output_dir}")
    return 0
