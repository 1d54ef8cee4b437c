"""Tests of astrodeblend.io.read_galaxy_zoo."""

import numpy as np
import pytest

from astrodeblend import DatasetError, GalaxyImage
from astrodeblend.io import read_galaxy_zoo


def test_folder_of_jpgs(jpg_folder):
    (jpg_folder / "notes.txt").write_text("not an image")
    (jpg_folder / "thumbnail_1.jpg").write_bytes(b"ignored: not a GalaxyID name")
    zoo = read_galaxy_zoo(jpg_folder)
    assert len(zoo) == 12
    assert zoo.ids.dtype == np.int64 and list(zoo.ids) == list(range(100000, 100012))
    assert [p.name for p in zoo.paths] == [f"{i}.jpg" for i in zoo.ids]
    image = zoo[3]
    assert isinstance(image, GalaxyImage) and image.shape == (3, 96, 96)
    assert image.source.endswith("100003.jpg")
    assert zoo[-1].source.endswith("100011.jpg")
    assert len(zoo[2:4]) == 2
    assert sum(1 for _ in zoo) == 12
    assert zoo.index_of(100005) == 5
    with pytest.raises(KeyError):
        zoo.index_of(5)
    with pytest.raises(IndexError):
        zoo[12]
    table = zoo.table
    assert table.colnames == ["id", "path"] and len(table) == 12
    assert "12 images" in repr(zoo)


def test_solutions_join_with_missing_rows(jpg_folder, tmp_path):
    csv = tmp_path / "training_solutions_rev1.csv"
    csv.write_text("GalaxyID,Class1.1,Class1.2\n100011,0.1,0.9\n100000,0.5,0.5\n999,1,0\n")
    zoo = read_galaxy_zoo(jpg_folder, solutions=csv)
    table = zoo.table
    assert table.colnames == ["id", "path", "Class1.1", "Class1.2"]
    assert table["Class1.1"][0] == 0.5 and table["Class1.2"][11] == 0.9
    assert table["Class1.1"].mask.tolist() == [False] + [True] * 10 + [False]


def test_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_galaxy_zoo(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"no <GalaxyID>\.jpg images"):
        read_galaxy_zoo(tmp_path)
    (tmp_path / "1.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="does not exist"):
        read_galaxy_zoo(tmp_path, solutions=tmp_path / "missing.csv")
    bad = tmp_path / "sol.csv"
    bad.write_text("id,Class1.1\n1,0.5\n")
    with pytest.raises(DatasetError, match="no GalaxyID column"):
        read_galaxy_zoo(tmp_path, solutions=bad)


def test_real_galaxy_zoo(galaxy_zoo_dir):
    zoo = read_galaxy_zoo(galaxy_zoo_dir)
    assert len(zoo) > 1000
    for i in (0, len(zoo) // 2, -1):
        image = zoo[i]
        assert image.shape == (3, 424, 424) and image.meta["ADBDISP"] is True
