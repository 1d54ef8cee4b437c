"""Tests of the training-set builder and reader (astrodeblend.data)."""

import json
import pickle

import h5py
import numpy as np
import pytest
from PIL import Image

from astrodeblend import DatasetError, InvalidInputError
from astrodeblend.cli import main
from astrodeblend.data import SPLITS, build_dataset, open_split, split_galaxies

FRACTIONS = (0.5, 0.25, 0.25)  # 12 galaxies of jpg_folder -> 5 / 5 / 2


def build(folder, out, **kwargs):
    kwargs.setdefault("split", FRACTIONS)
    kwargs.setdefault("progress", False)
    return build_dataset(folder, out, **kwargs)


def read_all(path):
    out = {}
    for name in SPLITS:
        with open_split(path, name) as scenes:
            out[name] = [scenes[i] for i in range(len(scenes))]
    return out


def test_split_is_stable_disjoint_and_independent_of_other_ids():
    ids = np.arange(200000, 203000)
    parts = split_galaxies(ids)
    assert sum(len(p) for p in parts.values()) == len(ids)
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["validation"]) & set(parts["test"])
    assert len(parts["test"]) == pytest.approx(300, abs=60)
    subset = split_galaxies(ids[::7])
    for name in SPLITS:
        assert set(subset[name]) == set(parts[name]) & set(ids[::7])
    with pytest.raises(InvalidInputError, match="fractions"):
        split_galaxies(ids, (0.5, 0.5, 0.5))


def test_build_layout_and_reader(jpg_folder, tmp_path):
    out = tmp_path / "set.h5"
    summary = build(jpg_folder, out, n=12, seed=3)
    assert summary.counts == {"train": 6, "validation": 3, "test": 3}
    assert "train" in str(summary) and "reiman" in str(summary)
    with h5py.File(out, "r") as h5:
        assert h5.attrs["format"] == "astrodeblend-dataset" and h5.attrs["version"] == 1
        assert h5.attrs["protocol"] == "reiman" and h5.attrs["seed"] == 3
        group = h5["train"]
        n, c, h, w = group["blend"].shape
        assert (n, c) == (6, 3) and group["truth"].shape == (6, 2, 3, h, w)
        assert group["blend"].chunks == (1, 3, h, w)
        assert group["centers"].shape == (6, 2, 2) and group["ids"].dtype == np.int64
        assert group.attrs["n_complete"] == 6
    scenes = read_all(out)
    ids = {name: {int(i) for s in scenes[name] for i in s["ids"]} for name in SPLITS}
    parts = split_galaxies(range(100000, 100012), FRACTIONS)
    for name in SPLITS:  # each split draws from its own galaxies only
        assert ids[name] <= set(parts[name].tolist())
    item = scenes["train"][0]
    assert item["blend"].dtype == np.float32 and item["truth"].shape == (2, 3, h, w)
    assert item["n_sources"] == 2
    np.testing.assert_array_equal(item["blend"], item["truth"].max(axis=0))


def test_resume_appends_exactly_the_missing_scenes(jpg_folder, tmp_path):
    once = tmp_path / "once.h5"
    twice = tmp_path / "twice.h5"
    build(jpg_folder, once, n=12, seed=1)
    build(jpg_folder, twice, n=8, seed=1)
    summary = build(jpg_folder, twice, n=12, seed=1)
    assert sum(summary.added.values()) == 4
    a, b = read_all(once), read_all(twice)
    for name in SPLITS:
        assert len(a[name]) == len(b[name])
        for x, y in zip(a[name], b[name], strict=True):
            np.testing.assert_array_equal(x["blend"], y["blend"])
            np.testing.assert_array_equal(x["ids"], y["ids"])
    again = build(jpg_folder, twice, n=12, seed=1)  # nothing left to do
    assert sum(again.added.values()) == 0


def test_interrupted_batch_is_truncated_on_resume(jpg_folder, tmp_path):
    out = tmp_path / "set.h5"
    build(jpg_folder, out, n=8, seed=2)
    with h5py.File(out, "r+") as h5:  # simulate a batch that was resized but not committed
        for key in h5["train"]:
            h5["train"][key].resize(h5["train"][key].shape[0] + 3, axis=0)
    with open_split(out, "train") as scenes:
        assert len(scenes) == 4  # the reader trusts n_complete
    build(jpg_folder, out, n=12, seed=2)
    reference = tmp_path / "ref.h5"
    build(jpg_folder, reference, n=12, seed=2)
    with open_split(out, "train") as x, open_split(reference, "train") as y:
        assert len(x) == len(y) == 6
        np.testing.assert_array_equal(x[5]["truth"], y[5]["truth"])


def test_a_killed_build_leaves_the_old_file_whole(jpg_folder, tmp_path, monkeypatch):
    import astrodeblend.data._build as data  # where build_dataset appends its batches

    out = tmp_path / "set.h5"
    build(jpg_folder, out, n=4, seed=1)
    before = out.read_bytes()
    real_append, calls = data._append, []

    def killed(group, batch, k_max):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_append(group, batch, k_max)

    monkeypatch.setattr(data, "_append", killed)
    with pytest.raises(KeyboardInterrupt):  # killed in its second batch
        build(jpg_folder, out, n=4, seed=2, overwrite=True)
    assert out.read_bytes() == before and calls == [2, 1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    calls.clear()
    with pytest.raises(KeyboardInterrupt):  # resuming: the first batch is kept
        build(jpg_folder, out, n=12, seed=1)
    with open_split(out, "train") as scenes:
        assert len(scenes) == 6
    monkeypatch.setattr(data, "_append", real_append)
    build(jpg_folder, out, n=12, seed=1)
    reference = tmp_path / "ref.h5"
    build(jpg_folder, reference, n=12, seed=1)
    for name in SPLITS:
        with open_split(out, name) as x, open_split(reference, name) as y:
            assert len(x) == len(y)
            for a, b in zip(x, y, strict=True):
                np.testing.assert_array_equal(a["blend"], b["blend"])


def test_existing_file_with_other_settings_is_refused(jpg_folder, tmp_path):
    out = tmp_path / "set.h5"
    build(jpg_folder, out, n=4, seed=1)
    with pytest.raises(DatasetError, match="seed=1, not 2"):
        build(jpg_folder, out, n=4, seed=2)
    with pytest.raises(DatasetError, match="protocol"):
        build(jpg_folder, out, n=4, seed=1, protocol="paper", shift=20)
    summary = build(jpg_folder, out, n=4, seed=2, overwrite=True)
    assert summary.seed == 2
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("hello")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        build(jpg_folder, not_h5, n=4)


def test_physical_three_galaxies_and_paper_partials(jpg_folder, tmp_path):
    out = tmp_path / "phys.h5"
    build(jpg_folder, out, protocol="physical", n=4, n_galaxies=3, psf_fwhm=1.5,
          split=(0.5, 0.5, 0.0))
    with open_split(out, "train") as scenes:
        item = scenes[0]
        assert item["truth"].shape[0] == 3 and item["n_sources"] == 3
        np.testing.assert_allclose(item["truth"].sum(axis=0), item["blend"], atol=0.05)
    paper = tmp_path / "paper.h5"
    build(jpg_folder, paper, protocol="paper", n=2, shift=20, working_size=32)
    with open_split(paper, "train") as scenes:
        assert scenes[0]["partials"].shape == (2, 3, 32, 32)
        assert scenes.protocol == "paper"


def test_scene_file_pickles_and_reopens(jpg_folder, tmp_path):
    out = tmp_path / "set.h5"
    build(jpg_folder, out, n=4)
    scenes = open_split(out, "train")
    first = scenes[0]["blend"]
    clone = pickle.loads(pickle.dumps(scenes))
    np.testing.assert_array_equal(clone[0]["blend"], first)
    assert len(clone) == len(scenes) and clone[-1]["n_sources"] == 2
    with pytest.raises(IndexError):
        scenes[len(scenes)]
    scenes.close()
    clone.close()


def test_bad_inputs_fail_cleanly(jpg_folder, tmp_path):
    out = tmp_path / "set.h5"
    with pytest.raises(DatasetError, match="does not exist"):
        build(tmp_path / "missing", out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no JPG, PNG or FITS"):
        build(empty, out)
    with pytest.raises(InvalidInputError, match="seed"):
        build(jpg_folder, out, seed=1.5)
    with pytest.raises(DatasetError, match="needs 2"):
        build(jpg_folder, out, split=(0.8, 0.1, 0.1))  # test split has < 2 galaxies
    with pytest.raises(InvalidInputError, match="bogus"):
        build(jpg_folder, out, bogus=3)
    with pytest.raises(InvalidInputError, match="n_galaxies"):
        build(jpg_folder, out, protocol="reiman", n_galaxies=3)
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(jpg_folder / "999999.jpg")
    with pytest.raises(DatasetError, match="mixed size"):
        build(jpg_folder, out)
    assert not out.exists()  # nothing half-written
    with pytest.raises(DatasetError, match="does not exist"):
        open_split(tmp_path / "none.h5", "train")
    with pytest.raises(InvalidInputError, match="split must be"):
        open_split(tmp_path / "none.h5", "training")


def test_cli_make_dataset(jpg_folder, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    rc = main(["make-dataset", "--images", str(jpg_folder), "--n", "4", "--out", str(out),
               "--split", "0.5,0.25,0.25", "--no-progress", "--seed", "4"])
    assert rc == 0 and "scenes" in capsys.readouterr().out
    with open_split(out, "validation") as scenes:
        assert len(scenes) == 1 and scenes.seed == 4


def test_physical_build_redraws_blank_galaxies(jpg_folder, tmp_path):
    from PIL import Image

    from astrodeblend.data import build_dataset, open_split

    blank = np.full((96, 96, 3), 20, dtype=np.uint8)
    for i in range(3):
        Image.fromarray(blank).save(jpg_folder / f"{200000 + i}.jpg", quality=95)
    out = tmp_path / "phys.h5"
    build_dataset(jpg_folder, out, protocol="physical", n=30, seed=4, progress=False,
                  split=(1.0, 0.0, 0.0))
    with open_split(out, "train") as scenes:
        assert len(scenes) > 0
        for i in range(len(scenes)):
            assert not ({200000, 200001, 200002} & set(scenes[i]["ids"].tolist()))


def test_survey_build_has_variable_sources_and_component_ids(jpg_folder, tmp_path):
    out = tmp_path / "survey.h5"
    rc = main(["make-dataset", "--images", str(jpg_folder), "--protocol", "survey", "--n", "12",
               "--out", str(out), "--no-progress", "--seed", "2", "--split", "0.5,0.25,0.25"])
    assert rc == 0
    galaxy_ids = set(range(100000, 100012))
    counts = []
    with h5py.File(out, "r") as h5:
        assert h5.attrs["protocol"] == "survey"
        params = json.loads(h5.attrs["params"])
        assert params["options"]["n_bands"] == 3 and params["n_per_scene"] == 6
        assert params["options"]["max_zoom"] == 1.0  # blend_survey's default, recorded
    # a file drawn under another max_zoom (an earlier default) is not extended
    with pytest.raises(DatasetError, match="options differ"):
        build_dataset(jpg_folder, out, protocol="survey", n=12, seed=2, split=(0.5, 0.25, 0.25),
                      max_zoom=None, progress=False)
    for name in SPLITS:
        with open_split(out, name) as scenes:
            for i in range(len(scenes)):
                item = scenes[i]
                n = int(item["n_sources"])
                counts.append(n)
                assert item["truth"].shape[:2] == (6, 3) and item["blend"].shape == (3, 96, 96)
                assert set(int(g) for g in item["ids"][:n]) <= galaxy_ids | {-1}
                assert np.all(item["ids"][n:] == -1) and np.all(item["truth"][n:] == 0)
    assert len(set(counts)) > 1
