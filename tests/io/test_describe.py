"""Tests of `describe_image` (``astrodeblend info``) on results and multi-HDU files."""

import numpy as np
from astropy.io import fits

from astrodeblend import DeblendResult, GalaxyImage
from astrodeblend.cli import main
from astrodeblend.io import describe_image, write_deblended


def _result(n_sources):
    blend = GalaxyImage(np.ones((2, 20, 30), np.float32), bands=["g", "r"])
    cutouts = [np.full((2, 3, 4), 0.1 * (k + 1), np.float32) for k in range(n_sources)]
    origins = [(k, k) for k in range(n_sources)]
    catalog = DeblendResult.make_catalog(blend, cutouts, [k + 1.5 for k in range(n_sources)],
                                         [k + 1.0 for k in range(n_sources)], origins=origins)
    return DeblendResult(blend, cutouts, catalog, np.zeros((20, 30), np.int32),
                         origins=origins, flux_mode="model", model_name="tiny.pt",
                         model_hash="ab" * 32)


def test_result_file_shows_sources_model_format_flux_mode_and_catalog(tmp_path):
    path = write_deblended(_result(7), tmp_path / "out.fits")
    lines = describe_image(path).splitlines()
    assert lines[0] == (f"{path}: astrodeblend result, format 2, 7 sources, model 'tiny.pt' "
                        "(sha256 abababababab...), flux mode model, written by astrodeblend "
                        + __import__("astrodeblend").__version__)
    assert lines[1] == "  HDU 1 (BLEND): shape (2, 20, 30), bands [g, r], no WCS, masked 0.00%"
    assert "  HDU 1 (BLEND): image (2, 20, 30) float32  <- described above" in lines
    # seven SOURCE HDUs on one line
    assert "  HDU 2-8 (SOURCE, 1-7): 7 HDUs, the first image (2, 3, 4) float32" in lines
    assert any(line.startswith("  HDU 11 (CATALOG): table, 7 rows") for line in lines)
    start = lines.index("  catalog (7 rows, first 5):")
    header, first = lines[start + 1].split(), lines[start + 2].split()
    assert header[:6] == ["id", "x_centroid", "y_centroid", "ra", "dec", "flux"]
    assert first == ["1", "1.50", "1.00", "nan", "nan", "2.4"]  # 0.1 x 2 x 3 x 4
    assert len(lines) == start + 7
    assert len(describe_image(path, max_rows=0).splitlines()) == start + 1


def test_result_with_one_source_reads_naturally(tmp_path):
    path = write_deblended(_result(1), tmp_path / "one.fits")
    text = describe_image(path)
    assert "format 2, 1 source," in text and "catalog (1 row):" in text


def test_multi_hdu_input_lists_hdus_and_marks_the_one_read(tmp_path):
    path = tmp_path / "mef.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 5), np.float32), name="SCI"),
                  fits.ImageHDU(np.ones((6, 7), np.int16), name="SCI", ver=2),
                  fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])],
                                                name="TAB")]).writeto(path)
    lines = describe_image(path).splitlines()
    assert lines[0].startswith(f"{path}: shape (1, 4, 5)")
    assert lines[1:] == ["  HDU 0 (PRIMARY): no data",
                         "  HDU 1 (SCI): image (4, 5) float32  <- read (choose with hdu= or "
                         "--hdu)",
                         "  HDU 2 (SCI, 2): image (6, 7) int16",
                         "  HDU 3 (TAB): table, 1 row x 1 column"]
    lines = describe_image(path, hdu="SCI,2").splitlines()
    assert lines[0].startswith(f"{path}: shape (1, 6, 7)")
    assert lines[3].endswith("<- read (choose with hdu= or --hdu)")


def test_single_hdu_and_pictures_stay_one_line(tmp_path):
    fits.PrimaryHDU(np.ones((8, 8), np.float32)).writeto(tmp_path / "a.fits")
    assert "\n" not in describe_image(tmp_path / "a.fits")


def test_info_cli_on_a_result(tmp_path, capsys):
    path = write_deblended(_result(2), tmp_path / "r.fits")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 sources" in out and "flux mode model" in out and "catalog (2 rows):" in out
