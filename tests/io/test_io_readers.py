"""Tests of astrodeblend.io readers: read_image, read_bands, describe_image."""

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from PIL import Image

from astrodeblend import GalaxyImage, ReadError
from astrodeblend.errors import InvalidInputError
from astrodeblend.io import describe_image, read_bands, read_image, sha256_file


def make_wcs(shape=(32, 40), *, ra=150.1, dec=2.2, scale_arcsec=0.2, cd=True):
    h, w = shape
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    header["CRPIX1"], header["CRPIX2"] = w / 2 + 0.5, h / 2 + 0.5
    if cd:
        header["CD1_1"], header["CD1_2"] = -scale_arcsec / 3600, 0.0
        header["CD2_1"], header["CD2_2"] = 0.0, scale_arcsec / 3600
    else:
        header["CDELT1"], header["CDELT2"] = -scale_arcsec / 3600, scale_arcsec / 3600
    return header


def sersic_plane(shape=(32, 40)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-np.hypot(xx - shape[1] / 2, yy - shape[0] / 2) / 4).astype(np.float32)


# ------------------------------------------------------------------ JPG / PNG
def test_jpg_orientation_and_header(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[0, 0] = 255  # top-left of the picture
    path = tmp_path / "corner.png"  # lossless, so the pixel value is exact
    Image.fromarray(rgb).save(path)
    image = read_image(path)
    assert image.shape == (3, 20, 30)
    assert image.bands == ("R", "G", "B")
    assert image.data[:, 19, 0].tolist() == [1.0, 1.0, 1.0]  # row H-1 = top
    assert image.data.sum() == 3.0
    assert image.meta["ADBDISP"] is True
    assert image.meta["ORIGFILE"] == "corner.png"
    assert image.source == str(path)
    assert image.wcs is None


def test_jpg_bright_corner_lands_top_left(tmp_path):
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:4, :4] = 250
    path = tmp_path / "corner.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    image = read_image(path)
    y, x = np.unravel_index(np.argmax(image.data[0]), image.data[0].shape)
    assert y >= 36 and x <= 3
    assert image.data.dtype == np.float32
    assert 0.0 <= image.data.min() and image.data.max() <= 1.0


def test_greyscale_and_16bit_png(tmp_path):
    grey = (np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (1, 3, 4) and image.bands == ("grey",)
    np.testing.assert_allclose(image.data[0], grey[::-1] / 255.0, rtol=1e-6)
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    np.testing.assert_allclose(image.data[0], deep[::-1] / 65535.0, rtol=1e-6)


def test_read_error_is_an_os_error(tmp_path):
    # file errors derive from OSError (errors.py), not ValueError
    with pytest.raises(OSError, match=r"missing\.fits: no such file") as info:
        read_image(tmp_path / "missing.fits")
    assert isinstance(info.value, ReadError) and not isinstance(info.value, ValueError)
    (tmp_path / "junk.fits").write_bytes(b"not a FITS file at all")
    with pytest.raises(OSError, match=r"junk\.fits: not a FITS file"):
        read_image(tmp_path / "junk.fits")


def test_bands_override_and_bad_bands(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8) + 9).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", bands=["i", "r", "g"]).bands == ("i", "r", "g")
    with pytest.raises(ReadError, match="a.png"):
        read_image(tmp_path / "a.png", bands=["i", "r"])
    with pytest.raises(InvalidInputError):
        read_image(tmp_path / "a.png", bands="irg")


def test_jpg_folder_fixture(jpg_folder):
    paths = sorted(jpg_folder.glob("*.jpg"))
    image = read_image(paths[0])
    assert image.shape == (3, 96, 96)
    # the synthetic galaxy is centred: brightest pixel near the middle
    y, x = np.unravel_index(np.argmax(image.data.sum(0)), (96, 96))
    assert abs(x - 47.5) < 4 and abs(y - 47.5) < 4


# ------------------------------------------------------------------------ FITS
def test_fits_2d_wcs_unit_filter(tmp_path):
    header = make_wcs()
    header["BUNIT"] = "nanomaggy"
    header["FILTER"] = "r"
    data = sersic_plane()
    path = tmp_path / "cutout.fits"
    fits.PrimaryHDU(data, header=header).writeto(path)
    before = sha256_file(path)
    image = read_image(path)
    assert image.shape == (1, 32, 40)
    np.testing.assert_array_equal(image.data[0], data)
    assert image.bands == ("r",)
    assert image.unit == u.nmgy
    assert image.wcs.has_celestial
    np.testing.assert_allclose(image.pixel_scale.to_value(u.arcsec), 0.2)
    assert image.meta["FILTER"] == "r" and image.meta["ORIGFILE"] == "cutout.fits"
    assert image.mask is None
    assert sha256_file(path) == before


def test_fits_suffixes_are_sniffed(tmp_path):
    path = tmp_path / "image.dat"
    fits.PrimaryHDU(np.ones((4, 5), np.float32)).writeto(path)
    assert read_image(path).shape == (1, 4, 5)
    for suffix in (".fit", ".fts"):
        other = tmp_path / f"image{suffix}"
        other.write_bytes(path.read_bytes())
        assert read_image(other).shape == (1, 4, 5)


def test_fits_cube_bands_from_filter_cards(tmp_path):
    data = np.stack([sersic_plane() * k for k in (1, 2, 3)])
    hdu = fits.PrimaryHDU(data)
    for i, name in enumerate("gri", start=1):
        hdu.header[f"FILTER{i}"] = name
    hdu.writeto(tmp_path / "cube.fits")
    image = read_image(tmp_path / "cube.fits")
    assert image.shape == (3, 32, 40) and image.bands == ("g", "r", "i")
    np.testing.assert_array_equal(image.data, data)
    assert read_image(tmp_path / "cube.fits", bands=list("xyz")).bands == ("x", "y", "z")


def test_fits_gz_and_tile_compressed(tmp_path):
    data = sersic_plane()
    fits.PrimaryHDU(data, header=make_wcs()).writeto(tmp_path / "a.fits.gz")
    image = read_image(tmp_path / "a.fits.gz")
    np.testing.assert_array_equal(image.data[0], data)
    assert image.wcs is not None
    comp = fits.CompImageHDU(data, header=make_wcs(), name="SCI",
                             compression_type="GZIP_1", quantize_level=0.0)  # lossless
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(tmp_path / "b.fits.fz")
    image = read_image(tmp_path / "b.fits.fz")
    np.testing.assert_array_equal(image.data[0], data)
    assert image.wcs.has_celestial
    assert read_image(tmp_path / "b.fits.fz", hdu="SCI").shape == (1, 32, 40)


def test_bscale_bzero_int16(tmp_path):
    raw = np.arange(-50, 50, dtype=np.int16).reshape(10, 10)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 100.0
    hdu.writeto(tmp_path / "scaled.fits")
    # check the file really holds int16 with scaling cards
    with fits.open(tmp_path / "scaled.fits", do_not_scale_image_data=True) as hdul:
        assert hdul[0].data.dtype.kind == "i" and hdul[0].header["BSCALE"] == 0.5
    image = read_image(tmp_path / "scaled.fits")
    np.testing.assert_allclose(image.data[0], raw * 0.5 + 100.0)


def test_nan_and_inf_are_masked(tmp_path):
    data = sersic_plane()
    data[3, 4] = np.nan
    data[5, 6] = np.inf
    fits.PrimaryHDU(data).writeto(tmp_path / "holes.fits")
    image = read_image(tmp_path / "holes.fits")
    assert image.mask is not None and image.mask.sum() == 2
    assert image.mask[0, 3, 4] and image.mask[0, 5, 6]
    assert image.masked_fraction == pytest.approx(2 / data.size)


def test_mask_and_uncert_extensions(tmp_path):
    data = sersic_plane()
    mask = np.zeros(data.shape, np.uint8)
    mask[:2] = 1
    var = np.full(data.shape, 4.0, np.float32)
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(mask, name="MASK"),
                  fits.ImageHDU(var, name="VAR")]).writeto(tmp_path / "ccd.fits")
    image = read_image(tmp_path / "ccd.fits")
    assert image.mask[0, :2].all() and not image.mask[0, 2:].any()
    np.testing.assert_allclose(image.uncertainty.array, 2.0)
    # CCDData's own layout (UNCERT with UTYPE) is understood as well
    from astropy.nddata import CCDData, StdDevUncertainty

    ccd = CCDData(data, unit="adu", mask=mask.astype(bool),
                  uncertainty=StdDevUncertainty(np.full(data.shape, 0.5)))
    ccd.write(tmp_path / "ccddata.fits")
    image = read_image(tmp_path / "ccddata.fits")
    assert image.unit == u.adu
    np.testing.assert_allclose(image.uncertainty.array, 0.5)
    assert image.mask.sum() == mask.sum()



def test_hst_dq_extension_masks_flagged_pixels(tmp_path):
    """An HST exposure (SCI, ERR and DQ per chip): DQ != 0 is masked, chip by chip."""
    data = sersic_plane()
    dq1, dq2 = np.zeros(data.shape, np.int16), np.zeros(data.shape, np.int16)
    dq1[5, 3:9] = 256       # saturated
    dq2[:, 0] = 4           # bad detector column, chip 2 only
    hdus = [fits.PrimaryHDU()]
    for ver, dq in ((1, dq1), (2, dq2)):
        hdus += [fits.ImageHDU(data, name="SCI", ver=ver),
                 fits.ImageHDU(np.full(data.shape, 0.5, np.float32), name="ERR", ver=ver),
                 fits.ImageHDU(dq, name="DQ", ver=ver)]
    fits.HDUList(hdus).writeto(tmp_path / "flt.fits")
    chip1 = read_image(tmp_path / "flt.fits")
    np.testing.assert_array_equal(chip1.mask[0], dq1 != 0)
    np.testing.assert_allclose(chip1.uncertainty.array, 0.5)
    chip2 = read_image(tmp_path / "flt.fits", hdu=("SCI", 2))
    np.testing.assert_array_equal(chip2.mask[0], dq2 != 0)



def test_drizzled_weight_map_masks_uncovered_pixels(tmp_path):
    """A drizzled HST image (SCI, WHT, CTX): pixels no exposure covered
    (weight 0, science 0) are masked, the others are not."""
    data = sersic_plane()
    weight = np.full(data.shape, 800.0, np.float32)
    yy, xx = np.mgrid[:data.shape[0], :data.shape[1]]
    weight[xx + yy < 12] = 0.0      # the corner of a rotated mosaic
    data = np.where(weight > 0, data, 0.0).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI"),
                  fits.ImageHDU(weight, name="WHT"),
                  fits.ImageHDU(np.ones(data.shape, np.int32), name="CTX")]
                 ).writeto(tmp_path / "drz.fits")
    image = read_image(tmp_path / "drz.fits")
    np.testing.assert_array_equal(image.mask[0], weight == 0)
    assert image.uncertainty is None

def test_lsst_mask_planes_mask_only_bad_planes(tmp_path):
    """An HSC / LSST image (IMAGE, MASK with MP_ plane cards, VARIANCE): the
    DETECTED plane, set on every source, is no defect; BAD, SAT, NO_DATA are."""
    data = sersic_plane()
    flags = np.zeros(data.shape, np.int32)
    flags[data > 0.05 * data.max()] |= 1 << 5   # DETECTED on the galaxy
    flags[:, :3] |= 1 << 8                      # NO_DATA columns
    flags[10, 10] |= 1 << 1                     # SAT
    flags[20:22, 20:22] |= 1 << 2               # INTRP: interpolated, kept
    flags[0, 30] |= (1 << 30) | 1               # BAD beside a high plane (lost in float32)
    mask_hdu = fits.ImageHDU(flags, name="MASK")
    for name, bit in (("BAD", 0), ("SAT", 1), ("INTRP", 2), ("CR", 3), ("EDGE", 4),
                      ("DETECTED", 5), ("DETECTED_NEGATIVE", 6), ("NO_DATA", 8),
                      ("STREAK", 30)):
        mask_hdu.header[f"HIERARCH MP_{name}"] = bit  # as LSST writes them
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="IMAGE"), mask_hdu,
                  fits.ImageHDU(np.full(data.shape, 0.04, np.float32), name="VARIANCE")]
                 ).writeto(tmp_path / "calexp.fits")
    image = read_image(tmp_path / "calexp.fits")
    expected = np.zeros(data.shape, bool)
    expected[:, :3] = True
    expected[10, 10] = expected[0, 30] = True
    np.testing.assert_array_equal(image.mask[0], expected)
    np.testing.assert_allclose(image.uncertainty.array, 0.2)
    # the same mask stored as floats (integral values): the same bad pixels
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="IMAGE"),
                  fits.ImageHDU((flags & 0xFFFF).astype(np.float32), header=mask_hdu.header,
                                name="MASK")]).writeto(tmp_path / "float.fits")
    expected[0, 30] = True  # BAD (bit 0) is kept in the low bits
    np.testing.assert_array_equal(read_image(tmp_path / "float.fits").mask[0], expected)
    # without the plane cards, every non-zero value is a bad pixel
    del mask_hdu.header["MP_*"]
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="IMAGE"), mask_hdu]).writeto(
        tmp_path / "plain.fits")
    np.testing.assert_array_equal(read_image(tmp_path / "plain.fits").mask[0], flags != 0)

def test_extension_selection(tmp_path):
    a, b = sersic_plane(), 2 * sersic_plane()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(a, name="SCI", ver=1),
                  fits.ImageHDU(b, name="SCI", ver=2),
                  fits.BinTableHDU.from_columns([fits.Column("x", "D", array=[1.0])],
                                                name="CAT")]).writeto(tmp_path / "mef.fits")
    path = tmp_path / "mef.fits"
    np.testing.assert_array_equal(read_image(path).data[0], a)  # first image HDU
    np.testing.assert_array_equal(read_image(path, hdu=2).data[0], b)
    np.testing.assert_array_equal(read_image(path, hdu="2").data[0], b)
    np.testing.assert_array_equal(read_image(path, hdu=("SCI", 2)).data[0], b)
    np.testing.assert_array_equal(read_image(path, hdu="sci,2").data[0], b)
    np.testing.assert_array_equal(read_image(path, hdu="SCI").data[0], a)
    assert read_image(path, hdu=2).meta["ORIGHDU"] == 2
    with pytest.raises(ReadError, match=r"mef\.fits.*no HDU named 'NOPE'.*SCI"):
        read_image(path, hdu="NOPE")
    with pytest.raises(ReadError, match=r"mef\.fits.*no HDU 9"):
        read_image(path, hdu=9)
    with pytest.raises(ReadError, match=r"mef\.fits.*BinTableHDU, not an image"):
        read_image(path, hdu="CAT")
    with pytest.raises(ReadError, match=r"mef\.fits.*no image data"):
        read_image(path, hdu=0)


def test_dummy_third_wcs_axis(tmp_path):
    header = make_wcs()
    header["WCSAXES"] = 3
    header["CTYPE3"] = "GROUP_NUMBER"
    header["CRVAL3"], header["CRPIX3"], header["CDELT3"] = 1.0, 1.0, 1.0
    fits.PrimaryHDU(sersic_plane(), header=header).writeto(tmp_path / "wfpc2.fits")
    image = read_image(tmp_path / "wfpc2.fits")
    assert image.wcs.naxis == 2 and image.wcs.has_celestial
    assert "no WCS" not in describe_image(tmp_path / "wfpc2.fits")


def test_unparseable_bunit_is_kept_as_card(tmp_path):
    hdu = fits.PrimaryHDU(sersic_plane())
    hdu.header["BUNIT"] = "counts per fortnight"
    hdu.writeto(tmp_path / "odd.fits")
    image = read_image(tmp_path / "odd.fits")
    assert image.unit is None and image.meta["BUNIT"] == "counts per fortnight"


def test_one_hdu_per_band(tmp_path):
    """Image HDUs that name their bands (EXTNAME or FILTER) are one image of those bands;
    chips of one exposure, other products and unnamed HDUs are not."""
    rng = np.random.default_rng(0)
    planes = rng.normal(size=(3, 32, 40)).astype(np.float32)
    header = make_wcs()
    dq = np.zeros((32, 40), np.int16)
    dq[3, 4] = 4
    fits.HDUList([fits.PrimaryHDU(),
                  *[fits.ImageHDU(p, header=header, name=b)
                    for p, b in zip(planes, "GRI", strict=True)],
                  fits.ImageHDU(dq, name="DQ")]).writeto(tmp_path / "gri.fits")
    image = read_image(tmp_path / "gri.fits")
    assert image.shape == (3, 32, 40) and image.bands == ("G", "R", "I")
    np.testing.assert_array_equal(image.data, planes)
    assert image.wcs is not None and image.mask[:, 3, 4].all() and image.mask.sum() == 3
    assert "HDUs 1, 2, 3 read as one band each" in " ".join(map(str, image.meta["HISTORY"]))
    assert read_image(tmp_path / "gri.fits", hdu="R").shape == (1, 32, 40)    # one asked for
    assert describe_image(tmp_path / "gri.fits").count("<- read, one band") == 3
    # compressed, FILTER cards naming the bands of unnamed HDUs
    fits.HDUList([fits.PrimaryHDU(planes[0], header=fits.Header([("FILTER", "g")])),
                  fits.CompImageHDU(planes[1], header=fits.Header([("FILTER", "r")]))]
                 ).writeto(tmp_path / "filters.fits")
    image = read_image(tmp_path / "filters.fits")
    assert image.bands == ("g", "r")
    np.testing.assert_allclose(image.data[1], planes[1], atol=0.05)     # quantised
    # chips of one exposure; an image with its model and residual; unnamed HDUs
    for name, hdus in (("chips", [fits.ImageHDU(planes[0], name="SCI", ver=1),
                                  fits.ImageHDU(planes[1], name="SCI", ver=2)]),
                       ("galfit", [fits.ImageHDU(planes[0], name="INPUT"),
                                   fits.ImageHDU(planes[1], name="MODEL"),
                                   fits.ImageHDU(planes[2], name="RESIDUAL")]),
                       ("plain", [fits.ImageHDU(planes[0]), fits.ImageHDU(planes[1])]),
                       ("ccds", [fits.ImageHDU(p, header=fits.Header([("FILTER", "r")]),
                                               name=ccd)
                                 for p, ccd in zip(planes, ("S1", "S2", "N1"), strict=True)])):
        fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(tmp_path / f"{name}.fits")
        image = read_image(tmp_path / f"{name}.fits")
        assert image.shape == (1, 32, 40), name
        np.testing.assert_array_equal(image.data[0], planes[0])


def test_colour_array_saved_channel_last(tmp_path):
    """An (H, W, 3) array written as it is (NAXIS1 = 3, no WCS) is read as 3 bands;
    a cube with a WCS, or with planes of more than 4 px a side, is read as it is."""
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(40, 30, 3)).astype(np.float32)
    dq = np.zeros((40, 30, 3), np.int16)
    dq[5, 6, 1] = 1
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(rgb, name="SCI"),
                  fits.ImageHDU(dq, name="DQ")]).writeto(tmp_path / "rgb.fits")
    image = read_image(tmp_path / "rgb.fits")
    assert image.shape == (3, 40, 30)
    np.testing.assert_array_equal(image.data[1], rgb[:, :, 1])
    assert image.mask[1, 5, 6] and image.mask.sum() == 1           # its mask moves with it
    assert "read as 3 bands of 30 x 40 px" in " ".join(map(str, image.meta["HISTORY"]))
    fits.PrimaryHDU(rgb, header=make_wcs((30, 3))).writeto(tmp_path / "wcs.fits")
    assert read_image(tmp_path / "wcs.fits").shape == (40, 30, 3)
    fits.PrimaryHDU(rng.normal(size=(40, 30, 5)).astype(np.float32)).writeto(tmp_path / "c5.fits")
    assert read_image(tmp_path / "c5.fits").shape == (40, 30, 5)


def test_degenerate_4d_is_accepted(tmp_path):
    fits.PrimaryHDU(sersic_plane()[None, None]).writeto(tmp_path / "radio.fits")
    assert read_image(tmp_path / "radio.fits").shape == (1, 32, 40)


def test_deblended_output_reads_as_its_blend(tmp_path):
    from astrodeblend import DeblendResult
    from astrodeblend.io import write_deblended

    blend = GalaxyImage(np.stack([sersic_plane(), 2 * sersic_plane()]), bands=["g", "r"])
    sources = blend.data[None] * 1.0
    catalog = DeblendResult.make_catalog(blend, sources, [20.0], [16.0])
    result = DeblendResult(blend, sources, catalog, np.ones((32, 40), int))
    out = write_deblended(result, tmp_path / "x_deblended.fits")
    image = read_image(out)
    assert image.bands == ("g", "r")
    np.testing.assert_array_equal(image.data, blend.data)


# ------------------------------------------------------------------ read_bands
def test_read_bands_stacks_and_names(tmp_path):
    header = make_wcs()
    header["FILTER"] = "g"  # as in the SDSS files: every header says 'g'
    paths = []
    for k, band in enumerate("gri"):
        p = tmp_path / f"field_{band}.fits"
        fits.PrimaryHDU(sersic_plane() * (k + 1), header=header).writeto(p)
        paths.append(p)
    image = read_bands(paths)
    assert image.shape == (3, 32, 40)
    assert image.bands == ("g", "r", "i")
    np.testing.assert_array_equal(image.data[2], 3 * sersic_plane())
    assert image.wcs.has_celestial
    assert image.meta["BANDS"] == "g,r,i"
    assert [image.meta[f"ORIGF{i}"] for i in (1, 2, 3)] == [p.name for p in paths]
    assert read_bands(paths, bands=["a", "b", "c"]).bands == ("a", "b", "c")


def test_read_bands_uses_distinct_filter_cards(tmp_path):
    paths = []
    for band in "zy":
        p = tmp_path / f"img{band}.fits"
        hdu = fits.PrimaryHDU(sersic_plane())
        hdu.header["FILTER"] = f"HSC-{band.upper()}"
        hdu.writeto(p)
        paths.append(p)
    assert read_bands(paths).bands == ("HSC-Z", "HSC-Y")


def test_read_bands_errors(tmp_path):
    fits.PrimaryHDU(sersic_plane()).writeto(tmp_path / "a.fits")
    fits.PrimaryHDU(sersic_plane((10, 10))).writeto(tmp_path / "b.fits")
    fits.PrimaryHDU(np.ones((2, 32, 40), np.float32)).writeto(tmp_path / "c.fits")
    with pytest.raises(ReadError, match=r"b\.fits: shape \(10, 10\) differs"):
        read_bands([tmp_path / "a.fits", tmp_path / "b.fits"])
    with pytest.raises(ReadError, match=r"c\.fits: holds 2 bands"):
        read_bands([tmp_path / "a.fits", tmp_path / "c.fits"])
    with pytest.raises(InvalidInputError, match="band names"):
        read_bands([tmp_path / "a.fits"], bands=["g", "r"])
    with pytest.raises(InvalidInputError, match="at least one"):
        read_bands([])


# -------------------------------------------------------------- describe_image
def test_describe_image_fields(tmp_path):
    data = sersic_plane()
    data[0, 0] = np.nan
    hdu = fits.PrimaryHDU(data, header=make_wcs(ra=10.5, dec=-3.25))
    hdu.header["FILTER"] = "r"
    hdu.writeto(tmp_path / "d.fits")
    line = describe_image(tmp_path / "d.fits")
    assert "\n" not in line
    assert line.startswith(f"{tmp_path / 'd.fits'}: shape (1, 32, 40), bands [r]")
    # centre of a 40x32 image with CRPIX at its middle is CRVAL
    assert "RA 10.500000 Dec -3.250000 deg" in line
    assert "0.2 arcsec/pix" in line
    assert f"masked {100 / data.size:.2f}%" in line


def test_mask_file_adds_bad_pixels(tmp_path):
    """A separate mask (imfit, GALFIT, SExtractor style: non-zero = bad), 2-D for every
    band or one plane per band, is added to the image's own mask; LSST bit planes count
    only where they flag defects; a mask of another shape is a one-line error."""
    data = np.random.default_rng(0).normal(0, 1, (3, 20, 30)).astype(np.float32)
    data[1, 0, 0] = np.nan                                   # the image's own bad pixel
    fits.writeto(tmp_path / "img.fits", data)
    flags = np.zeros((20, 30), np.int16)
    flags[5:8, 10:20] = 4
    fits.writeto(tmp_path / "img_mask.fits", flags)
    image = read_image(tmp_path / "img.fits", mask=tmp_path / "img_mask.fits")
    assert image.mask.shape == (3, 20, 30)
    assert image.mask[:, 5:8, 10:20].all() and image.mask[1, 0, 0]
    assert image.mask.sum() == 3 * 30 + 1
    assert image.meta["MASKFILE"] == "img_mask.fits"
    per_band = np.zeros((3, 20, 30), np.uint8)
    per_band[2, 0, :5] = 1
    fits.writeto(tmp_path / "cube_mask.fits", per_band)
    image = read_image(tmp_path / "img.fits", mask=tmp_path / "cube_mask.fits")
    assert image.mask[2, 0, :5].all() and image.mask.sum() == 5 + 1
    lsst = fits.PrimaryHDU(np.array([[1 << 5, 1 << 2] * 15] * 20, dtype=np.int32))
    lsst.header["HIERARCH MP_DETECTED"] = 5                  # information, not a defect
    lsst.header["MP_SAT"] = 2
    lsst.writeto(tmp_path / "lsst_mask.fits")
    image = read_image(tmp_path / "img.fits", mask=tmp_path / "lsst_mask.fits")
    assert image.mask[0].sum() == 20 * 15 and not image.mask[0, :, 0].any()
    fits.writeto(tmp_path / "small_mask.fits", np.zeros((10, 10), np.uint8))
    with pytest.raises(ReadError, match=r"small_mask.fits: the mask has shape \(10, 10\), "
                                        r"the image .*img.fits has \(3, 20, 30\)"):
        read_image(tmp_path / "img.fits", mask=tmp_path / "small_mask.fits")
    with pytest.raises(ReadError, match="no such file"):
        read_image(tmp_path / "img.fits", mask=tmp_path / "nothing.fits")
