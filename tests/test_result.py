"""Tests of astrodeblend.result.DeblendResult."""

import numpy as np
import pytest
from astropy.wcs import WCS

from astrodeblend import DeblendResult, GalaxyImage, InvalidInputError
from astrodeblend.result import CATALOG_COLUMNS


def two_sources(n_bands=2, shape=(16, 20), wcs=None):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    a = np.exp(-((xx - 5) ** 2 + (yy - 6) ** 2) / 4.0)
    b = 2 * np.exp(-((xx - 14) ** 2 + (yy - 9) ** 2) / 4.0)
    colours = np.arange(1, n_bands + 1)[:, None, None]
    sources = np.stack([colours * a, colours * b]).astype(np.float32)
    blend = GalaxyImage(sources.sum(axis=0), wcs=wcs)
    return blend, sources


def test_catalog_columns_flux_and_bbox():
    blend, sources = two_sources()
    catalog = DeblendResult.make_catalog(blend, sources, [5.0, 14.0], [6.0, 9.0])
    assert tuple(catalog.colnames) == CATALOG_COLUMNS
    assert catalog["id"].tolist() == [1, 2]
    assert catalog["flux"].shape == (2, 2)
    np.testing.assert_allclose(catalog["flux"], sources.sum(axis=(2, 3)), rtol=1e-6)
    assert np.isnan(catalog["ra"]).all() and np.isnan(catalog["dec"]).all()
    # 99 % boxes are around each centre
    assert catalog["bbox_xmin"][0] <= 5 <= catalog["bbox_xmax"][0]
    assert catalog["bbox_ymin"][1] <= 9 <= catalog["bbox_ymax"][1]
    assert catalog["bbox_xmax"][0] < 14


def test_catalog_with_wcs_has_radec():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [10.0, 20.0]
    w.wcs.crpix = [6.0, 7.0]
    w.wcs.cdelt = [-1e-4, 1e-4]
    blend, sources = two_sources(wcs=w)
    catalog = DeblendResult.make_catalog(blend, sources, [5.0, 14.0], [6.0, 9.0])
    assert catalog["ra"][0] == pytest.approx(10.0) and catalog["dec"][0] == pytest.approx(20.0)


def test_residual_fluxes_source_image():
    blend, sources = two_sources()
    catalog = DeblendResult.make_catalog(blend, sources, [5.0, 14.0], [6.0, 9.0])
    result = DeblendResult(blend, sources * 0.9, catalog, np.zeros((16, 20), int),
                           model_name="m", model_hash="h", history=["x"])
    np.testing.assert_allclose(result.residual.data, 0.1 * blend.data, atol=1e-6)
    np.testing.assert_allclose(result.fluxes, 0.9 * sources.sum(axis=(1, 2, 3)), rtol=1e-5)
    assert result.fluxes.dtype == np.float64
    assert result.source_image(1).shape == blend.shape
    assert len(result) == result.n_sources == 2
    assert result.segmap.dtype == np.int32
    assert "2 sources" in repr(result) and result.history == ["x"]


def test_residual_keeps_mask():
    data = np.ones((1, 4, 4))
    data[0, 1, 1] = np.nan
    blend = GalaxyImage(data)
    sources = np.zeros((1, 1, 4, 4))
    result = DeblendResult(blend, sources, DeblendResult.make_catalog(blend, sources, [1], [1]),
                           np.zeros((4, 4)))
    assert result.residual.mask[0, 1, 1] and np.isnan(result.residual.data[0, 1, 1])


def test_no_sources_and_validation():
    blend, sources = two_sources()
    empty = DeblendResult(blend, [], DeblendResult.make_catalog(blend, np.zeros((0, 2, 16, 20)),
                                                                [], []),
                          np.zeros((16, 20)))
    assert empty.n_sources == 0 and empty.sources.shape == (0, 2, 16, 20)
    catalog = DeblendResult.make_catalog(blend, sources, [5.0, 14.0], [6.0, 9.0])
    with pytest.raises(InvalidInputError, match="blend must be a GalaxyImage"):
        DeblendResult(blend.data, sources, catalog, np.zeros((16, 20)))
    with pytest.raises(InvalidInputError, match="sources must have shape"):
        DeblendResult(blend, sources[:, :1], catalog, np.zeros((16, 20)))
    with pytest.raises(InvalidInputError, match="segmap shape"):
        DeblendResult(blend, sources, catalog, np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match="catalog has 1 rows for 2"):
        DeblendResult(blend, sources, catalog[:1], np.zeros((16, 20)))
    catalog.remove_column("bbox_xmin")
    with pytest.raises(InvalidInputError, match="bbox_xmin"):
        DeblendResult(blend, sources, catalog, np.zeros((16, 20)))


def test_bbox_of_nan_or_empty_source():
    blend = GalaxyImage(np.ones((1, 5, 6)))
    sources = np.zeros((2, 1, 5, 6))
    sources[1, 0, 2, 3] = np.nan
    catalog = DeblendResult.make_catalog(blend, sources, [1, 2], [1, 2])
    assert catalog["bbox_xmax"].tolist() == [5, 5]  # whole image when no positive flux
