"""Tests of astrodeblend.image: GalaxyImage, as_galaxy_image, celestial_wcs."""

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import NDData, StdDevUncertainty
from astropy.wcs import WCS

from astrodeblend import GalaxyImage, InvalidInputError, as_galaxy_image
from astrodeblend.image import celestial_wcs


def tan_wcs(scale_arcsec=0.5, naxis=2):
    w = WCS(naxis=naxis)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"] + ["GROUP_NUMBER"] * (naxis - 2)
    w.wcs.crval = [30.0, -10.0] + [1.0] * (naxis - 2)
    w.wcs.crpix = [8.5, 6.5] + [1.0] * (naxis - 2)
    w.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600] + [1.0] * (naxis - 2)
    return w


def test_shapes_dtype_and_defaults(galaxy):
    image = GalaxyImage(galaxy.astype(np.float64))
    assert image.shape == (3, 64, 64) and image.data.dtype == np.float32
    assert (image.n_bands, image.height, image.width) == (3, 64, 64)
    assert image.bands == ("band0", "band1", "band2")
    assert image.mask is None and image.masked_fraction == 0.0
    assert isinstance(image.meta, fits.Header) and image.header is image.meta
    assert image.wcs is None and image.pixel_scale is None and image.sky_center is None
    two_d = GalaxyImage(np.ones((5, 7), dtype=np.int16))
    assert two_d.shape == (1, 5, 7) and two_d.data.dtype == np.float32


@pytest.mark.parametrize("bad, match", [
    (np.ones(5), "2-D"), (np.ones((1, 1, 2, 2)), "4-D"), (np.ones((0, 4)), "empty"),
    (np.full((3, 3), np.nan), "no finite pixel"), (np.array([["a"]]), "real numbers"),
])
def test_invalid_data(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        GalaxyImage(bad)


def test_mask_nonfinite_and_broadcast():
    data = np.ones((2, 4, 4))
    data[1, 0, 0] = np.inf
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    image = GalaxyImage(data, mask=mask)
    assert image.mask.shape == (2, 4, 4)
    assert image.mask[:, 3, 3].all() and image.mask[1, 0, 0] and not image.mask[0, 0, 0]
    assert image.masked_fraction == pytest.approx(3 / 32)
    filled = image.filled(-1.0)
    assert filled[1, 0, 0] == -1.0 and filled[0, 3, 3] == -1.0 and filled[0, 1, 1] == 1.0
    with pytest.raises(InvalidInputError, match="mask shape"):
        GalaxyImage(data, mask=np.zeros((3, 3), bool))


def test_uncertainty_forms():
    data = np.ones((4, 4))
    assert GalaxyImage(data, uncertainty=np.full((4, 4), 2.0)).uncertainty.array.shape == (1, 4, 4)
    nd = GalaxyImage(data, uncertainty=StdDevUncertainty(np.full((4, 4), 2.0)))
    assert nd.uncertainty.array.shape == (1, 4, 4)
    with pytest.raises(InvalidInputError, match="uncertainty shape"):
        GalaxyImage(data, uncertainty=np.ones((2, 4, 4)))
    with pytest.raises(InvalidInputError, match="uncertainty shape"):
        GalaxyImage(data, uncertainty=StdDevUncertainty(np.ones((3, 3))))


def test_bands_and_meta():
    image = GalaxyImage(np.ones((2, 3, 3)), bands=("g", "r"), meta={"FILTER": "g",
                                                                     "LONGKEYWORD": 3})
    assert image.bands == ("g", "r") and image.meta["FILTER"] == "g"
    assert image.meta["LONGKEYWORD"] == 3
    with pytest.raises(InvalidInputError, match="2 band names given for 3"):
        GalaxyImage(np.ones((3, 2, 2)), bands=["g", "r"])
    with pytest.raises(InvalidInputError, match="sequence of names"):
        GalaxyImage(np.ones((3, 2, 2)), bands="gri")
    with pytest.raises(InvalidInputError, match="meta must be"):
        GalaxyImage(np.ones((2, 2)), meta=[1, 2])


def test_wcs_properties_and_pixel_to_radec():
    image = GalaxyImage(np.ones((12, 16)), wcs=tan_wcs(0.5))
    assert image.pixel_scale.to_value(u.arcsec) == pytest.approx(0.5)
    centre = image.sky_center
    # CRPIX (8.5, 6.5) is 0-based (7.5, 5.5): the centre of a 16x12 image
    assert centre.ra.deg == pytest.approx(30.0) and centre.dec.deg == pytest.approx(-10.0)
    ra, dec = image.pixel_to_radec([7.5, 8.5], [5.5, 5.5])
    assert ra[0] == pytest.approx(30.0) and ra[1] < 30.0  # east is left
    assert dec == pytest.approx([-10.0, -10.0])
    assert "0.5 arcsec/pix" in repr(image) and "wcs=yes" in repr(image)
    assert str(image) == repr(image)


def test_celestial_wcs_drops_dummy_axis():
    assert celestial_wcs(None) is None
    three = tan_wcs(naxis=3)
    assert celestial_wcs(three).naxis == 2 and celestial_wcs(three).has_celestial
    linear = WCS(naxis=2)
    assert celestial_wcs(linear).naxis == 2
    assert GalaxyImage(np.ones((4, 4)), wcs=three).wcs.naxis == 2
    with pytest.raises(InvalidInputError, match="astropy.wcs.WCS"):
        celestial_wcs("RA---TAN")


def test_with_data_keeps_wcs_bands_header():
    image = GalaxyImage(np.ones((3, 4, 4)), bands=["g", "r", "i"], wcs=tan_wcs(),
                        meta={"FILTER": "x"}, unit="adu", source="a.fits")
    other = image.with_data(np.zeros((3, 4, 4)) + 2)
    assert other.bands == image.bands and other.wcs is not None and other.unit == u.adu
    assert other.meta["FILTER"] == "x" and other.meta is not image.meta
    assert other.source == "a.fits" and float(other.data.mean()) == 2.0
    single = image.with_data(np.ones((4, 4)))
    assert single.bands == ("band0",)


def test_tensor_round_trip(device):
    data = np.random.default_rng(0).random((2, 5, 6)).astype(np.float32)
    data[0, 0, 0] = np.nan
    image = GalaxyImage(data, bands=["a", "b"], source="t")
    tensor = image.to_tensor(device=device, fill=7.0)
    assert tensor.device.type == device.type and tuple(tensor.shape) == (2, 5, 6)
    assert float(tensor[0, 0, 0]) == 7.0
    back = GalaxyImage.from_tensor(tensor, like=image)
    assert back.bands == ("a", "b") and back.source == "t"
    np.testing.assert_array_equal(back.data[:, 1:], data[:, 1:])


def test_as_galaxy_image():
    image = GalaxyImage(np.ones((4, 4)))
    assert as_galaxy_image(image) is image
    nd = NDData(np.ones((5, 5)), mask=np.eye(5, dtype=bool), meta={"A": 1},
                uncertainty=StdDevUncertainty(np.ones((5, 5))))
    converted = as_galaxy_image(nd, bands=["r"])
    assert converted.shape == (1, 5, 5) and converted.mask.sum() == 5
    assert converted.bands == ("r",) and converted.meta["A"] == 1
    assert as_galaxy_image(np.ones((2, 3, 3)), wcs=tan_wcs()).wcs is not None
    with pytest.raises(InvalidInputError):
        as_galaxy_image([[["x"]]])
