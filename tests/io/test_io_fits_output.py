"""Tests of the deblended FITS output (spec/fits-output.md) and atomic writes."""

import errno
import os
import re
import shutil
import subprocess
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
    # a read failing inside the block (ReadError is an OSError) is not a write error
    with pytest.raises(ReadError, match="missing.fits: no such file"):
        with atomic_write(target, overwrite=True) as tmp:
            tmp.write_text("two")
            raise ReadError("missing.fits: no such file")
    assert target.read_text() == "one"
    with atomic_write(target, overwrite=True) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files from /proc")
def test_atomic_write_flushes_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_write(tmp_path / "out.txt") as tmp:
        tmp.write_text("data")
    # the file's data, then the rename, then the folder's entry
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(".out.txt.tmp-") and events[1][1] == "out.txt"
    assert events[2][1] == tmp_path.name

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(WriteError, match=r"cannot write .*out\.txt .*Input/output error"):
        with atomic_write(tmp_path / "out.txt", overwrite=True) as tmp:
            tmp.write_text("new")
    assert (tmp_path / "out.txt").read_text() == "data"
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


def test_input_structural_cards_are_not_copied(tmp_path):
    # what Header.strip() would leave: stray NAXIS4/NAXIS3 (a plane of a cube), a second
    # BITPIX, TTYPE1 without TFIELDS, BLANK, EXTNAME, CHECKSUM; none may reach BLEND
    header = fits.Header()
    header["OBJECT"] = "m51"
    header["NAXIS4"] = 1
    header["NAXIS3"] = 3
    header["TTYPE1"] = "flux"
    header.append(("BITPIX", 16), bottom=True)
    header.append(("BITPIX", -32), bottom=True)
    for key, value in (("BLANK", -99), ("EXTNAME", "SCI"), ("CHECKSUM", "x"), ("ZBITPIX", 16)):
        header[key] = value
    blend = GalaxyImage(np.ones((1, 6, 7), np.float32), meta=header, bands=["r"])
    out = write_deblended(make_result(blend, n=1), tmp_path / "r_deblended.fits")
    with fits.open(out) as hdul:
        cards = hdul["BLEND"].header
        assert cards["OBJECT"] == "m51"
        assert [c.keyword for c in cards.cards].count("BITPIX") == 1
        assert cards["BITPIX"] == -32 and cards["NAXIS"] == 2 and "NAXIS3" not in cards
        assert "NAXIS4" not in cards and "TTYPE1" not in cards
        assert cards["EXTNAME"] == "BLEND" and "BLANK" not in cards and "ZBITPIX" not in cards
    assert_checksums_ok(out)


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
        assert ph["ADBFMT"] == 2 and ph["NSOURCE"] == 3 and ph["ADBFLUX"] == "conserve"
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
    # non-finite pixels alone are marked in BLENDMSK too (spec, version 2)
    out2 = write_deblended(make_result(GalaxyImage(data)), tmp_path / "n.fits")
    with fits.open(out2) as hdul:
        assert [h.name for h in hdul][-4:] == ["RESIDUAL", "SEGMAP", "BLENDMSK", "CATALOG"]
        assert hdul["BLENDMSK"].data.dtype == np.uint8
        assert hdul["BLENDMSK"].data[0, 0, 0] == 1 and hdul["BLENDMSK"].data.sum() == 1
    # no mask and all finite: no BLENDMSK
    out3 = write_deblended(make_result(GalaxyImage(np.nan_to_num(data))), tmp_path / "f.fits")
    with fits.open(out3) as hdul:
        assert "BLENDMSK" not in [h.name for h in hdul]


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
        assert any("GROUP_NUMBER" in str(v) and "not kept" in str(v) for v in h["HISTORY"])
    assert read_deblended(out).blend.wcs.has_celestial


# ------------------------------------------------------------ format version 2
def gaussian_cutouts(shape, centres, n_bands=2, half=4):
    """Cutouts of small Gaussians (one per centre) and their origins in a frame."""
    height, width = shape
    cutouts, origins = [], []
    for k, (x, y) in enumerate(centres):
        x0, y0 = max(0, x - half), max(0, y - half)
        x1, y1 = min(width, x + half + 1), min(height, y + half + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 3.0) * (k + 1)
        cutouts.append(np.stack([g * (b + 1) for b in range(n_bands)]).astype(np.float32))
        origins.append((x0, y0))
    return cutouts, np.array(origins)


def cutout_result(blend, centres, **kwargs):
    cutouts, origins = gaussian_cutouts(blend.shape[1:], centres, n_bands=blend.n_bands)
    xs = [float(c[0]) for c in centres]
    ys = [float(c[1]) for c in centres]
    catalog = DeblendResult.make_catalog(blend, cutouts, xs, ys, origins=origins)
    segmap = np.zeros(blend.shape[1:], np.int32)
    return DeblendResult(blend, cutouts, catalog, segmap, origins=origins, **kwargs)


def wcs_blend(shape=(40, 50), n_bands=2, data=None):
    from astropy.wcs import WCS

    header = make_wcs_header(shape)
    rng = np.random.default_rng(3)
    if data is None:
        data = rng.normal(size=(n_bands, *shape)).astype(np.float32)
    return GalaxyImage(data, wcs=WCS(header), meta=header, unit="nmgy")


def test_cutout_round_trip_keeps_cutouts_origins_and_wcs(tmp_path):
    blend = wcs_blend()
    result = cutout_result(blend, [(5, 6), (30, 20), (49, 39)], flux_mode="model")
    out = write_deblended(result, tmp_path / "cut.fits")
    assert_checksums_ok(out)
    from astropy.wcs import WCS, WCSCOMPARE_ANCILLARY, FITSFixedWarning

    with fits.open(out) as hdul:
        assert hdul[0].header["ADBFLUX"] == "model"
        pairs = zip(result.cutouts, result.origins, strict=True)
        for i, (cut, (x0, y0)) in enumerate(pairs, start=1):
            hdu = hdul["SOURCE", i]
            assert hdu.data.shape == cut.shape
            h = hdu.header
            assert (h["CUTX0"], h["CUTY0"]) == (x0, y0)
            assert (h["LTV1"], h["LTV2"]) == (-x0, -y0)
            assert h["X_CENT"] == result.catalog["x_centroid"][i - 1]
            # the cutout's pixel (0, 0) is the blend's pixel (CUTX0, CUTY0) on the sky
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)  # 'cdfix' for NAXIS3
                wcs = WCS(h, naxis=2)
            np.testing.assert_allclose(wcs.pixel_to_world_values(0, 0),
                                       blend.wcs.pixel_to_world_values(x0, y0), rtol=0,
                                       atol=1e-12)
            np.testing.assert_allclose(wcs.pixel_to_world_values(2.5, 1.0),
                                       blend.wcs.pixel_to_world_values(x0 + 2.5, y0 + 1.0),
                                       rtol=0, atol=1e-12)
    back = read_deblended(out)
    assert back.flux_mode == "model"
    np.testing.assert_array_equal(back.origins, result.origins)
    for a, b in zip(back.cutouts, result.cutouts, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.sources, result.sources)
    np.testing.assert_allclose(back.residual.data, result.residual.data)
    for i in range(result.n_sources):
        mine, theirs = result.source_image(i), back.source_image(i)
        assert mine.wcs.wcs.compare(theirs.wcs.wcs, cmp=WCSCOMPARE_ANCILLARY, tolerance=0)
        x0, y0 = result.origins[i]
        np.testing.assert_allclose(theirs.wcs.pixel_to_world_values(0, 0),
                                   blend.wcs.pixel_to_world_values(x0, y0), rtol=0, atol=1e-12)


def test_full_frame_option(tmp_path):
    blend = wcs_blend(n_bands=1)
    result = cutout_result(blend, [(10, 10), (30, 25)])
    out = write_deblended(result, tmp_path / "full.fits", full_frame=True)
    assert_checksums_ok(out)
    with fits.open(out) as hdul:
        for i in (1, 2):
            h = hdul["SOURCE", i].header
            assert hdul["SOURCE", i].data.shape == (40, 50)
            assert (h["CUTX0"], h["CUTY0"], h["LTV1"], h["LTV2"]) == (0, 0, 0, 0)
            assert h["CRPIX1"] == hdul["BLEND"].header["CRPIX1"]
        np.testing.assert_array_equal(hdul["SOURCE", 2].data, result.sources[1, 0])
    back = read_deblended(out)  # trimmed back to the same cutouts on reading
    np.testing.assert_array_equal(back.origins, result.origins)
    for a, b in zip(back.cutouts, result.cutouts, strict=True):
        np.testing.assert_array_equal(a, b)


def write_version1(result, path):
    """Write ``result`` as astrodeblend 0.x did: format 1, full-frame SOURCE HDUs."""
    hdus = [fits.PrimaryHDU()]
    ph = hdus[0].header
    ph["ORIGIN"], ph["ADBFMT"], ph["ADBMODEL"] = "astrodeblend", 1, "old"
    ph["ADBMHASH"], ph["NSOURCE"] = "", result.n_sources
    ph.add_history("deblend: old")
    hdus.append(fits.ImageHDU(result.blend.data[0], name="BLEND"))
    for i, frame in enumerate(result.sources, start=1):
        header = fits.Header()
        header["X_CENT"] = float(result.catalog["x_centroid"][i - 1])
        hdus.append(fits.ImageHDU(frame[0], header=header, name="SOURCE", ver=i))
    hdus.append(fits.ImageHDU(result.residual.data[0], name="RESIDUAL"))
    hdus.append(fits.ImageHDU(result.segmap, name="SEGMAP"))
    table = fits.table_to_hdu(result.catalog)
    table.name = "CATALOG"
    hdus.append(table)
    fits.HDUList(hdus).writeto(path, checksum=True)


def test_reads_version_1_files(tmp_path):
    blend = GalaxyImage(np.random.default_rng(4).normal(size=(1, 30, 32)))
    sources = np.zeros((3, 1, 30, 32), np.float32)
    sources[0, 0, 2:6, 3:9] = 1.0
    sources[1, 0, 10:30, 20:32] = 2.0
    # source 3 is empty: it becomes a 1x1 zero cutout at its centre
    catalog = DeblendResult.make_catalog(blend, sources, [5.0, 25.0, 12.4], [3.0, 20.0, 7.6])
    result = DeblendResult(blend, sources, catalog, np.zeros((30, 32), int))
    path = tmp_path / "v1.fits"
    write_version1(result, path)
    back = read_deblended(path)
    assert back.n_sources == 3 and back.flux_mode == "conserve" and back.model_name == "old"
    assert back.history == ["deblend: old"]
    assert back.origins.tolist() == [[3, 2], [20, 10], [12, 8]]
    assert [c.shape for c in back.cutouts] == [(1, 4, 6), (1, 20, 12), (1, 1, 1)]
    np.testing.assert_array_equal(back.sources, sources)
    np.testing.assert_allclose(back.fluxes, [24.0, 480.0, 0.0])


def test_masked_pixels_nan_in_residual_zero_in_sources(tmp_path):
    data = np.random.default_rng(5).normal(size=(2, 20, 24)).astype(np.float32) + 10
    data[:, 5:8, 6:9] = np.nan  # a NaN block on source 1
    mask = np.zeros(data.shape, bool)
    mask[1, 12, 14] = True  # one masked finite pixel on source 2
    blend = GalaxyImage(data, mask=mask)
    # a deblender that filled the bad pixels with something: they go to no source
    sources = np.stack([np.nan_to_num(data, nan=7.0) * 0.5] * 2)
    catalog = DeblendResult.make_catalog(blend, sources, [7, 14], [6, 12])
    result = DeblendResult(blend, sources, catalog, np.zeros((20, 24), int))
    bad = blend.mask
    assert np.isfinite(result.sources).all() and (result.sources[:, bad] == 0).all()
    np.testing.assert_allclose(catalog["flux"].sum(axis=1), result.fluxes, rtol=1e-6)
    residual = result.residual.data
    assert np.isnan(residual[bad]).all() and np.isfinite(residual[~bad]).all()
    out = write_deblended(result, tmp_path / "mask.fits")
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul["BLENDMSK"].data, bad.astype(np.uint8))
        assert np.isnan(hdul["RESIDUAL"].data[bad]).all()
        for i in (1, 2):
            assert (hdul["SOURCE", i].data[bad] == 0).all()
    back = read_deblended(out)
    np.testing.assert_array_equal(back.blend.mask, bad)
    assert np.isnan(back.residual.data[bad]).all()


def test_many_small_sources_make_a_small_file(tmp_path):
    shape = (2000, 2000)
    blend = GalaxyImage(np.zeros((1, *shape), np.float32) + 1)
    rng = np.random.default_rng(6)
    centres = [(int(x), int(y)) for x, y in rng.integers(10, 1990, size=(50, 2))]
    result = cutout_result(blend, centres)
    out = write_deblended(result, tmp_path / "big.fits")
    frame_bytes = 4 * shape[0] * shape[1]
    # BLEND + RESIDUAL + SEGMAP are 3 frames; 50 full-frame sources would be 53
    assert out.stat().st_size < 4 * frame_bytes
    back = read_deblended(out)
    assert sum(c.nbytes for c in back.cutouts) < frame_bytes / 100
    assert back.n_sources == 50


def test_catalog_units_and_missing_bunit(tmp_path):
    out = write_deblended(cutout_result(wcs_blend(), [(5, 5)]), tmp_path / "u.fits")
    with fits.open(out) as hdul:
        cat = hdul["CATALOG"]
        units = {c.name: c.unit for c in cat.columns}
        assert units["ra"] == units["dec"] == "deg"
        assert units["x_centroid"] == units["bbox_ymax"] == "pix"
        # nanomaggy is no FITS unit: said in a comment, so that readers do not warn
        assert units["flux"] is None
        assert any("flux is in nmgy" in str(v) for v in cat.header["COMMENT"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_deblended(out).catalog["ra"].unit == "deg"
    blend = GalaxyImage(np.ones((1, 10, 10)), unit="adu")
    out = write_deblended(cutout_result(blend, [(5, 5)]), tmp_path / "adu.fits")
    with fits.open(out) as hdul:
        assert {c.name: c.unit for c in hdul["CATALOG"].columns}["flux"] == "adu"
    blend = GalaxyImage(np.ones((1, 10, 10)))
    out = write_deblended(cutout_result(blend, [(5, 5)]), tmp_path / "nounit.fits")
    with fits.open(out) as hdul:
        assert {c.name: c.unit for c in hdul["CATALOG"].columns}["flux"] is None
        assert any("no BUNIT" in str(v) for v in hdul["CATALOG"].header["COMMENT"])
        for name in ("BLEND", "SOURCE", "RESIDUAL"):
            assert "BUNIT" not in hdul[name].header
            assert any("BUNIT absent" in str(v) for v in hdul[name].header["COMMENT"])
    back = read_deblended(out)
    assert back.blend.unit is None


def test_batch_accepts_version_2_outputs(tmp_path):
    from astrodeblend.batch import _output_state

    data = np.ones((1, 12, 12), np.float32)
    data[0, 0, 0] = np.nan  # BLENDMSK is written
    result = cutout_result(GalaxyImage(data, source="in.fits"), [(4, 4), (8, 8)])
    out = write_deblended(result, tmp_path / "in_deblended.fits")
    assert _output_state(out, input_name="in.fits")[:2] == ("valid", 2)


@pytest.mark.skipif(shutil.which("fitsverify") is None, reason="fitsverify not installed")
@pytest.mark.parametrize("full_frame", [False, True])
@pytest.mark.parametrize("with_wcs", [False, True])
def test_fitsverify_finds_no_error_or_warning(tmp_path, full_frame, with_wcs):
    from astropy.wcs import WCS, FITSFixedWarning

    shape = (30, 34)
    data = np.random.default_rng(7).normal(size=(3, *shape)).astype(np.float32) + 3
    data[0, 2, 3] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[2, 10:12, 10:12] = True
    header = make_wcs_header(shape) if with_wcs else fits.Header()
    header["DATE-OBS"] = "2020-01-02T03:04:05"
    if with_wcs:
        header["WCSAXES"] = 3
        header["CTYPE3"], header["CRVAL3"], header["CRPIX3"] = "WAVE", 5e-7, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # 'cdfix' for the third axis
        wcs = WCS(header) if with_wcs else None
    blend = GalaxyImage(data, mask=mask, wcs=wcs, meta=header,
                        uncertainty=StdDevUncertainty(np.ones(data.shape)),
                        bands=["g", "r", "i"], source="in.fits")
    for n_bands, image in ((3, blend), (1, GalaxyImage(data[1], meta=header,
                                                       wcs=blend.wcs, source="in.fits"))):
        result = cutout_result(image, [(4, 4), (20, 15)])
        out = write_deblended(result, tmp_path / f"v{n_bands}.fits", full_frame=full_frame)
        run = subprocess.run(["fitsverify", "-e", str(out)], capture_output=True, text=True)
        assert "0 warning(s) and 0 error(s)" in run.stdout, run.stdout[-3000:]
        run = subprocess.run(["fitsverify", str(out)], capture_output=True, text=True)
        assert "0 warning(s) and 0 error(s)" in run.stdout, run.stdout[-3000:]


def _card_images(hdu):
    """The header cards of an HDU but the checksums (their comments hold the time)."""
    return [c.image for c in hdu.header.cards if c.keyword not in ("CHECKSUM", "DATASUM")]


@pytest.mark.parametrize("full_frame", [False, True])
def test_output_is_what_astropy_writes(tmp_path, full_frame):
    # the writer formats its own headers (issue 17): astropy, rewriting every HDU with
    # checksums and output_verify="exception", must find nothing to fix and write the
    # same cards and bytes
    header = make_wcs_header((30, 34))
    header["OBJECT"] = "pair"
    header["COMMENT"] = "from the survey"
    header["HISTORY"] = "flat-fielded"
    header["LONGNOTE"] = "x" * 100
    header["HIERARCH ESO DET CHIP"] = "ccd 1"
    data = np.random.default_rng(8).normal(size=(3, 30, 34)).astype(np.float32) + 3
    data[1, 5:8, 6:9] = np.nan
    from astropy.wcs import WCS

    blend = GalaxyImage(data, wcs=WCS(header), meta=header, unit="nmgy",
                        uncertainty=StdDevUncertainty(np.full(data.shape, 0.1)),
                        bands=["g", "r", "i"], source="pair.fits")
    result = cutout_result(blend, [(4, 4), (20, 15), (33, 29)], model_name="m" * 90,
                           history=["read pair.fits", "deblend: " + "p=1, " * 30])
    result.catalog["flag"] = [True, False, True]
    result.catalog["label"] = ["a", "bb", ""]
    out = write_deblended(result, tmp_path / "pair_deblended.fits", full_frame=full_frame)
    assert_checksums_ok(out)
    again = tmp_path / "again.fits"
    with fits.open(out) as hdul:
        fits.HDUList([h.copy() for h in hdul]).writeto(again, checksum=True,
                                                       output_verify="exception")
    assert out.stat().st_size == again.stat().st_size
    with fits.open(out) as ours, fits.open(again) as theirs:
        assert [(h.name, h.ver) for h in ours] == [(h.name, h.ver) for h in theirs]
        for mine, astropys in zip(ours, theirs, strict=True):
            assert _card_images(mine) == _card_images(astropys), mine.name
            assert mine.header.comments["DATASUM"].startswith("data unit checksum updated ")
            # the data and their padding
            a, b = mine.fileinfo(), astropys.fileinfo()
            assert a["datSpan"] == b["datSpan"]
            assert (out.read_bytes()[a["datLoc"]:a["datLoc"] + a["datSpan"]]
                    == again.read_bytes()[b["datLoc"]:b["datLoc"] + b["datSpan"]]), mine.name
