"""Tests of tools/output_digest.py: a change to any output is named, the same outputs are not."""

import importlib.util
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.modeling.models import Sersic2D

TOOL = Path(__file__).resolve().parents[1] / "tools" / "output_digest.py"


def _tool():
    spec = importlib.util.spec_from_file_location("output_digest", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pair(path, x_b):
    yy, xx = np.mgrid[:64, :64]
    data = (Sersic2D(5, 4, 1, 24, 32)(xx, yy) + Sersic2D(3, 3, 1, x_b, 30)(xx, yy)
            + np.random.default_rng(0).normal(0, 0.05, (64, 64)))
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path, overwrite=True)
    return path


def test_check_names_the_images_whose_outputs_changed(tmp_path, monkeypatch, capsys):
    tool = _tool()
    files = [_pair(tmp_path / "a.fits", 42), _pair(tmp_path / "b.fits", 44)]
    monkeypatch.setattr(tool, "inputs", lambda folder: [(p.name, p) for p in files])
    before = tmp_path / "before.json"
    assert tool.main(["--method", "segmentation", "--write", str(before)]) == 0
    assert tool.main(["--method", "segmentation", "--check", str(before)]) == 0
    assert "2 images" in capsys.readouterr().out.splitlines()[-1]
    _pair(files[1], 46)                          # one input changes: its outputs change
    assert tool.main(["--method", "segmentation", "--check", str(before)]) == 1
    out = capsys.readouterr().out
    assert "changed: b.fits" in out and "a.fits" not in out and "1 changed" in out
