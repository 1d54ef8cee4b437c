"""Tests of ``astrodeblend info``."""

import numpy as np
from astropy.io import fits
from PIL import Image

from astrodeblend.cli import main


def test_info_one_line_per_file(tmp_path, capsys):
    fits.PrimaryHDU(np.ones((3, 8, 9), np.float32)).writeto(tmp_path / "cube.fits")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "pic.jpg")
    assert main(["info", str(tmp_path / "cube.fits"), str(tmp_path / "pic.jpg")]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 2 and out.err == ""
    assert lines[0].startswith(f"{tmp_path / 'cube.fits'}: shape (3, 8, 9)")
    assert "shape (3, 5, 6)" in lines[1] and "display-stretched" in lines[1]


def test_info_marks_a_jpgs_rgb_saved_as_fits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(4, 3, (3, 30, 30)), 0, 255).astype(np.uint8)  # sky at black
    rgb[:, 10:20, 10:20] = 200
    fits.PrimaryHDU(rgb).writeto(tmp_path / "rgb.fits")
    fits.PrimaryHDU(rgb.astype(np.float32) - 4).writeto(tmp_path / "linear.fits")
    assert main(["info", str(tmp_path / "rgb.fits"), str(tmp_path / "linear.fits")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "display values (a JPG's RGB" in lines[0]
    assert "display" not in lines[1]


def test_info_bad_file_exits_2_with_one_stderr_line(tmp_path, capsys):
    fits.PrimaryHDU(np.ones((4, 4), np.float32)).writeto(tmp_path / "good.fits")
    (tmp_path / "bad.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    status = main(["info", str(tmp_path / "good.fits"), str(tmp_path / "bad.fits"),
                   str(tmp_path / "missing.jpg")])
    assert status == 2
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1
    err = out.err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("astrodeblend: error: ") and "bad.fits" in err[0]
    assert "missing.jpg: no such file" in err[1]
    assert "Traceback" not in out.err


def test_info_hdu_option(tmp_path, capsys):
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 5), np.float32), name="SCI"),
                  fits.ImageHDU(np.ones((6, 7), np.float32), name="SCI", ver=2)]
                 ).writeto(tmp_path / "mef.fits")
    assert main(["info", "--hdu", "SCI,2", str(tmp_path / "mef.fits")]) == 0
    assert "shape (1, 6, 7)" in capsys.readouterr().out
    assert main(["info", "--hdu", "2", str(tmp_path / "mef.fits")]) == 0
    assert "shape (1, 6, 7)" in capsys.readouterr().out
    assert main(["info", "--hdu", "XYZ", str(tmp_path / "mef.fits")]) == 2
    assert "no HDU named 'XYZ'" in capsys.readouterr().err
