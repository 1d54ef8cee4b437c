"""Tests of the deblended FITS output (spec/fits-output.md) and atomic writes."""

import os
import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import StdDevUncertainty
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from astrodeblend import DeblendResult, GalaxyImage, OutputExistsError, ReadError, WriteError
from astrodeblend.io import (
    atomic_write,
    default_output_path,
    read_deblended,
    read_image,
    sha256_file,
    write_deblended,
)


def make_wcs_header(shape, *, ra=150.1, dec=2.2, scale_arcsec=0.2):
    h, w = shape
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    header["CRPIX1"], header["CRPIX2"] = w / 2 + 0.5, h / 2 + 0.5
    header["CD1_1"], header["CD1_2"] = -scale_arcsec / 3600, 1e-6
    header["CD2_1"], header["CD2_2"] = 2e-6, scale_arcsec / 3600
    return header


def make_result(blend, *, n=2, model_name="default", model_hash="0" * 64, history=None):
    data = blend.filled(0.0)
    weights = np.linspace(1.0, 2.0, n)
    weights = weights / weights.sum()
    sources = np.stack([w * data for w in weights]) if n else np.zeros((0, *blend.shape))
    xs = np.linspace(1, blend.width - 2, n)
    ys = np.linspace(1, blend.height - 2, n)
    catalog = DeblendResult.make_catalog(blend, sources, xs, ys)
    segmap = np.zeros(blend.shape[1:], np.int32)
    if n:
        segmap[: blend.height // 2] = 1
        segmap[blend.height // 2:] = n
    return DeblendResult(blend, sources, catalog, segmap, model_name=model_name,
                         model_hash=model_hash,
                         history=history if history is not None else ["read: test", "deblend"])


def assert_checksums_ok(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path, checksum=True) as hdul:
            for hdu in hdul:
                assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header, hdu.name
                _ = hdu.data
                assert hdu.verify_checksum() == 1, hdu.name
                assert hdu.verify_datasum() == 1, hdu.name
    from astropy.io.fits.scripts import fitscheck

    assert fitscheck.main([str(path)]) == 0


# ---------------------------------------------------------------- atomic_write
def test_atomic_write_success_and_failure(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.txt.tmp-")
        assert not tmp.exists()
        tmp.write_text("one")
    assert target.read_text() == "one"
    with pytest.raises(OutputExistsError, match="out.txt exists"):
        with atomic_write(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic_write(target, overwrite=True) as tmp:
            tmp.write_text("two")
            raise RuntimeError("boom")
    assert target.read_text() == "one"
    with atomic_write(target, overwrite=True) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_errors(tmp_path):
    with pytest.raises(WriteError, match=r"folder .*missing does not exist"):
        with atomic_write(tmp_path / "missing" / "a.txt"):
            pass
    with pytest.raises(WriteError, match="is a folder"):
        with atomic_write(tmp_path):
            pass
    with pytest.raises(WriteError, match="nothing was written"):
        with atomic_write(tmp_path / "empty.txt"):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_atomic_write_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="ro"):
            with atomic_write(folder / "a.txt") as tmp:
                tmp.write_text("x")
    finally:
        folder.chmod(0o755)


def test_sha256_file(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert sha256_file(tmp_path / "a") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    with pytest.raises(ReadError, match="cannot read"):
        sha256_file(tmp_path / "missing")


def test_default_output_path():
    assert default_output_path("a/b/img.fits", "o") == default_output_path("img.fits.fz", "o")
    assert default_output_path("x.fits.gz", "out").name == "x_deblended.fits"
    assert default_output_path("x.fz", "out").name == "x_deblended.fits"
    assert default_output_path("123.JPG", "out").name == "123_deblended.fits"
    assert default_output_path("weird.name.v2.fits", "out").name == "weird.name.v2_deblended.fits"


# -------------------------------------------------------------------- layout
def test_layout_and_primary_cards(tmp_path):
    data = np.random.default_rng(1).normal(size=(3, 24, 20)).astype(np.float32) + 5
    header = make_wcs_header((24, 20))
    header["BUNIT"] = "nanomaggy"
    blend = GalaxyImage(data, wcs=None, meta=header, bands=["g", "r", "i"],
                        source=str(tmp_path / "field.fits"))
    from astropy.wcs import WCS

    blend = GalaxyImage(data, wcs=WCS(header), meta=header, bands=["g", "r", "i"],
                        unit="nmgy", source=str(tmp_path / "field.fits"))
    long_line = "deblend: " + ", ".join(f"param{i}={i}" for i in range(30))
    result = make_result(blend, n=3, model_name="run7.pt", model_hash="ab" * 32,
                         history=["read field.fits", long_line])
    out = write_deblended(result, tmp_path / "field_deblended.fits")
    assert out == tmp_path / "field_deblended.fits"
    assert_checksums_ok(out)
    with fits.open(out) as hdul:
        names = [(h.name, h.header.get("EXTVER", 1)) for h in hdul]
        assert names == [("PRIMARY", 1), ("BLEND", 1), ("SOURCE", 1), ("SOURCE", 2),
                         ("SOURCE", 3), ("RESIDUAL", 1), ("SEGMAP", 1), ("CATALOG", 1)]
        ph = hdul[0].header
        assert hdul[0].data is None
        assert ph["ORIGIN"] == "astrodeblend"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", ph["DATE"])
        assert re.fullmatch(r"astrodeblend \d+\.\d+\.\d+.*", ph["PROCSOFT"])
        assert ph["ADBFMT"] == 1 and ph["NSOURCE"] == 3
        assert ph["ADBMODEL"] == "run7.pt" and ph["ADBMHASH"] == "ab" * 32
        assert ph["PROV1"] == "field.fits"
        history = [str(v) for v in ph["HISTORY"]]
        assert history[0] == "read field.fits" and len(history) >= 3
        assert all(len(v) <= 72 for v in history)
        bh = hdul["BLEND"].header
        assert hdul["BLEND"].data.dtype == np.dtype(">f4")
        assert hdul["BLEND"].data.shape == (3, 24, 20)
        assert bh["BANDS"] == "g,r,i" and bh["BUNIT"] == "nmgy"
        for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
            assert bh[key] == header[key]
        for i in (1, 2, 3):
            sh = hdul["SOURCE", i].header
            row = result.catalog[i - 1]
            assert sh["X_CENT"] == row["x_centroid"] and sh["Y_CENT"] == row["y_centroid"]
            assert sh["RA_CENT"] == pytest.approx(row["ra"]) and np.isfinite(sh["DEC_CENT"])
            assert sh["FLUX"] == pytest.approx(result.sources[i - 1].sum(dtype=np.float64),
                                               rel=1e-6)
            assert sh["CTYPE1"] == "RA---TAN" and sh["BUNIT"] == "nmgy"
        np.testing.assert_allclose(hdul["RESIDUAL"].data, result.residual.data, atol=1e-6)
        assert hdul["SEGMAP"].data.dtype == np.dtype(">i4")
        assert "CTYPE1" in hdul["RESIDUAL"].header and "CTYPE1" in hdul["SEGMAP"].header
        cat = hdul["CATALOG"].data
        assert cat.columns.names[:10] == ["id", "x_centroid", "y_centroid", "ra", "dec", "flux",
                                          "bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax"]
        assert cat["flux"].shape == (3, 3)
    back = read_deblended(out)
    assert back.history == ["read field.fits", long_line]


def test_wcs_cards_identical_through_read_and_write(tmp_path):
    header = make_wcs_header((30, 28))
    path = tmp_path / "wcs.fits"
    fits.PrimaryHDU(np.ones((30, 28), np.float32), header=header).writeto(path)
    header = fits.getheader(path)  # the values as the file holds them
    result = make_result(read_image(path))
    out = write_deblended(result, tmp_path / "wcs_deblended.fits")
    from astropy.wcs import WCS

    with fits.open(out) as hdul:
        for name in ("BLEND", "SOURCE", "RESIDUAL", "SEGMAP"):
            h = hdul[name].header
            assert h["CRVAL1"] == header["CRVAL1"] and h["CRVAL2"] == header["CRVAL2"]
            assert h["CRPIX1"] == header["CRPIX1"] and h["CRPIX2"] == header["CRPIX2"]
            for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
                assert h[key] == header[key]
            cd = WCS(h).pixel_scale_matrix
            np.testing.assert_array_equal(cd, [[header["CD1_1"], header["CD1_2"]],
                                               [header["CD2_1"], header["CD2_2"]]])
    back = read_deblended(out)
    np.testing.assert_array_equal(back.blend.wcs.wcs.crval, [150.1, 2.2])


def test_one_band_is_2d_and_no_wcs_gives_nan_radec(tmp_path):
    blend = GalaxyImage(np.ones((1, 10, 12)), bands=["r"])
    result = make_result(blend, n=2)
    out = write_deblended(result, tmp_path / "one.fits")
    with fits.open(out) as hdul:
        assert hdul["BLEND"].data.shape == (10, 12)
        assert hdul["SOURCE", 1].data.shape == (10, 12)
        assert "RA_CENT" not in hdul["SOURCE", 1].header
        assert np.isnan(hdul["CATALOG"].data["ra"]).all()
        assert "PROV1" not in hdul[0].header
    back = read_deblended(out)
    assert back.catalog["flux"].shape == (2, 1)
    assert back.sources.shape == (2, 1, 10, 12)


def test_zero_sources(tmp_path):
    blend = GalaxyImage(np.ones((2, 6, 6)))
    result = make_result(blend, n=0)
    out = write_deblended(result, tmp_path / "none.fits")
    assert_checksums_ok(out)
    back = read_deblended(out)
    assert back.n_sources == 0 and back.sources.shape == (0, 2, 6, 6)
    np.testing.assert_array_equal(back.residual.data, blend.data)


def test_jpg_round_trip_keeps_data_orientation_mask_header(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[0, 0] = 255
    rgb[8, 8] = (10, 20, 30)
    jpg = tmp_path / "gz.png"
    Image.fromarray(rgb).save(jpg)
    before = sha256_file(jpg)
    image = read_image(jpg)
    result = make_result(image, n=1)
    out = write_deblended(result, tmp_path / "gz_deblended.fits")
    back = read_deblended(out)
    np.testing.assert_array_equal(back.blend.data, image.data)
    assert back.blend.data[0, 15, 0] == 1.0  # top-left of the picture, FITS row H-1
    assert back.blend.meta["ADBDISP"] is True
    assert back.blend.meta["ORIGFILE"] == "gz.png"
    assert back.blend.bands == ("R", "G", "B")
    assert back.blend.source == "gz.png"
    again = read_image(out)  # our output reads as its BLEND
    np.testing.assert_array_equal(again.data, image.data)
    assert again.meta["ADBDISP"] is True
    assert sha256_file(jpg) == before


def test_mask_and_uncertainty_round_trip(tmp_path):
    data = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    data[0, 0, 0] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[1, 2:4, 2:4] = True
    blend = GalaxyImage(data, mask=mask, uncertainty=StdDevUncertainty(np.full(data.shape, 0.5)))
    result = make_result(blend)
    out = write_deblended(result, tmp_path / "m.fits")
    with fits.open(out) as hdul:
        assert hdul[-1].name == "CATALOG"
    back = read_deblended(out)
    np.testing.assert_array_equal(back.blend.mask, blend.mask)
    np.testing.assert_array_equal(back.blend.uncertainty.array, 0.5)
    assert np.isnan(back.blend.data[0, 0, 0])
    image = read_image(out)
    np.testing.assert_array_equal(image.mask, blend.mask)
    # a mask made only of NaN pixels needs no extra HDU
    out2 = write_deblended(make_result(GalaxyImage(data)), tmp_path / "n.fits")
    with fits.open(out2) as hdul:
        assert [h.name for h in hdul][-3:] == ["RESIDUAL", "SEGMAP", "CATALOG"]


def test_catalog_and_fields_round_trip(tmp_path):
    blend = GalaxyImage(np.random.default_rng(2).random((3, 12, 14)), bands=list("gri"))
    result = make_result(blend, n=3, model_name="x" * 100, model_hash="f" * 64,
                         history=["a", "b" * 150, "c"])
    result.catalog["area"] = np.array([10, 20, 30])
    out = write_deblended(result, tmp_path / "c.fits")
    back = read_deblended(out)
    assert back.model_name == "x" * 100 and back.model_hash == "f" * 64
    assert back.history == ["a", "b" * 150, "c"]
    for name in result.catalog.colnames:
        np.testing.assert_array_equal(np.asarray(back.catalog[name]),
                                      np.asarray(result.catalog[name]), err_msg=name)
    np.testing.assert_array_equal(back.sources, result.sources)
    np.testing.assert_array_equal(back.segmap, result.segmap)
    assert back.blend.bands == ("g", "r", "i")


def test_refusals(tmp_path):
    path = tmp_path / "in.fits"
    fits.PrimaryHDU(np.ones((6, 6), np.float32)).writeto(path)
    before = sha256_file(path)
    result = make_result(read_image(path))
    with pytest.raises(WriteError, match="it is the input file"):
        write_deblended(result, path, overwrite=True)
    link = tmp_path / "link.fits"
    link.symlink_to(path)
    with pytest.raises(WriteError, match="it is the input file"):
        write_deblended(result, link, overwrite=True)
    assert sha256_file(path) == before
    out = write_deblended(result, tmp_path / "out.fits")
    first = sha256_file(out)
    with pytest.raises(OutputExistsError, match="out.fits exists"):
        write_deblended(result, out)
    assert sha256_file(out) == first
    write_deblended(result, out, overwrite=True)
    with pytest.raises(WriteError, match="does not exist"):
        write_deblended(result, tmp_path / "nope" / "o.fits")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fits", "link.fits", "out.fits"]


def test_read_deblended_refuses_foreign_and_corrupted(tmp_path):
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((4, 4), np.float32)).writeto(plain)
    with pytest.raises(ReadError, match=r"plain\.fits: not an astrodeblend output"):
        read_deblended(plain)
    out = write_deblended(make_result(GalaxyImage(np.ones((1, 8, 8)))), tmp_path / "o.fits")
    raw = bytearray(out.read_bytes())
    # flip one byte of BLEND's data: the data checksum must catch it
    with fits.open(out) as hdul:
        offset = hdul["BLEND"].fileinfo()["datLoc"]
    raw[offset + 5] ^= 0xFF
    bad = tmp_path / "bad.fits"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ReadError, match=r"bad\.fits: checksum verification failed"):
        read_deblended(bad)
    with pytest.raises(ReadError, match="no such file"):
        read_deblended(tmp_path / "missing.fits")


_BIG = float(np.float32(1e30))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=arrays(np.float32,
                   st.tuples(st.integers(1, 3), st.integers(1, 32), st.integers(1, 32)),
                   elements=st.floats(-_BIG, _BIG, allow_nan=False, allow_infinity=False,
                                      width=32)),
       n=st.integers(0, 3))
def test_property_round_trip_exact(tmp_path, data, n):
    blend = GalaxyImage(data)
    sources = (np.stack([data * np.float32(k) for k in range(n)]) if n
               else np.zeros((0, *data.shape)))
    catalog = DeblendResult.make_catalog(blend, sources, np.zeros(n), np.zeros(n))
    result = DeblendResult(blend, sources, catalog, np.zeros(data.shape[1:], int))
    path = tmp_path / "prop.fits"
    write_deblended(result, path, overwrite=True)
    back = read_deblended(path)
    np.testing.assert_array_equal(back.blend.data, data)
    np.testing.assert_array_equal(back.sources, result.sources)
    np.testing.assert_array_equal(back.segmap, result.segmap)
    assert back.blend.bands == blend.bands
    assert [p.name for p in tmp_path.iterdir()] == ["prop.fits"]


def test_cdelt_wcs_with_dummy_axis_is_kept_exactly(tmp_path):
    header = fits.Header()
    header["WCSAXES"] = 3
    header["CTYPE1"], header["CTYPE2"], header["CTYPE3"] = "RA---TAN", "DEC--TAN", "GROUP_NUMBER"
    header["CRVAL1"], header["CRVAL2"], header["CRVAL3"] = 187.70593, 12.391123, 1.0
    header["CRPIX1"], header["CRPIX2"], header["CRPIX3"] = 10.25, 8.5, 1.0
    header["CDELT1"], header["CDELT2"], header["CDELT3"] = -1.2638e-5, 1.2638e-5, 1.0
    path = tmp_path / "wfpc2.fits"
    fits.PrimaryHDU(np.ones((16, 20), np.float32), header=header).writeto(path)
    on_disk = fits.getheader(path)
    out = write_deblended(make_result(read_image(path)), tmp_path / "wfpc2_deblended.fits")
    with fits.open(out) as hdul:
        h = hdul["BLEND"].header
        for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2"):
            assert h[key] == on_disk[key], key
        assert "CTYPE3" not in h and h["WCSAXES"] == 2
    assert read_deblended(out).blend.wcs.has_celestial
