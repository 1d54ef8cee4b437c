"""Every real FITS file of ../shared/data/fits loads (images) or fails cleanly (tables)."""

import numpy as np
import pytest
from astropy.io import fits

from astrodeblend import ReadError
from astrodeblend.io import describe_image, read_bands, read_image, sha256_file


def _image_hdus(path):
    with fits.open(path) as hdul:
        return [i for i, h in enumerate(hdul) if h.is_image and h.header.get("NAXIS", 0) >= 2]


def test_every_shared_fits_file(shared_data):
    files = sorted((shared_data / "fits").rglob("*.fits"))
    assert len(files) >= 29
    loaded = refused = 0
    for path in files:
        before = sha256_file(path)
        hdus = _image_hdus(path)
        if not hdus:  # catalogs: tables only
            with pytest.raises(ReadError, match=rf"{path.name}.*no image data"):
                read_image(path)
            refused += 1
        else:
            for index in hdus:  # AEGIS files hold several galaxy HDUs
                image = read_image(path, hdu=index)
                assert image.data.dtype == np.float32 and image.data.ndim == 3
                assert np.isfinite(image.data).any()
            image = read_image(path)
            with fits.open(path) as hdul:
                n_hdus = len(hdul)
            # a file with several HDUs gets one more line per HDU
            assert len(describe_image(path).splitlines()) == 1 + (n_hdus if n_hdus > 1 else 0)
            loaded += 1
        assert sha256_file(path) == before
    assert loaded >= 25 and refused == 2


def test_shared_wcs_and_bands(shared_data):
    fits_dir = shared_data / "fits"
    cube = read_image(fits_dir / "scarlet_hsc_hst_cosmos" / "hsc_ra=150.24071_dec=2.06514.fits")
    assert cube.shape == (5, 54, 54)
    centre = cube.sky_center
    assert abs(centre.ra.deg - 150.2407) < 0.01 and abs(centre.dec.deg - 2.0651) < 0.01
    hst = read_image(fits_dir / "galsim_hst_cosmos" / "100610.img.fits")
    assert hst.bands == ("F814W",)
    paths = [fits_dir / "sdss_astropy_data" / f"reprojected_sdss_{b}.fits" for b in "gri"]
    field = read_bands(paths)
    assert field.shape == (3, 496, 682) and field.bands == ("g", "r", "i")
    assert field.pixel_scale.value == pytest.approx(1.19, abs=0.01)
    assert str(field.unit) == "nmgy"


def test_some_real_jpgs(galaxy_zoo_dir):
    for path in sorted(galaxy_zoo_dir.glob("*.jpg"))[:5]:
        image = read_image(path)
        assert image.shape == (3, 424, 424)
        assert 0 <= image.data.min() and image.data.max() <= 1
        assert describe_image(path).endswith("display-stretched, masked 0.00%")
