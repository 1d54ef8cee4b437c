"""Files deblended in groups: networks batched across images (issue 17)."""

import csv

import numpy as np
from astropy.io import fits
from astropy.modeling.models import Gaussian2D

from astrodeblend import batch
from astrodeblend.batch import deblend_files
from astrodeblend.pipeline import Deblender


def _pair(path, dx):
    yy, xx = np.mgrid[:48, :48]
    plane = Gaussian2D(1, 16, 24, 2.5, 2.5)(xx, yy) + Gaussian2D(0.7, 16 + dx, 24, 2.5, 2.5)(xx, yy)
    noise = np.random.default_rng(dx).normal(0, 0.01, (3, 48, 48))
    fits.writeto(path, (np.stack([plane] * 3) + noise).astype(np.float32))
    return path


def test_groups_are_deblended_together_and_logged_in_order(tmp_path, monkeypatch):
    names = []
    for k, dx in enumerate([12, 14, 16, 18, 20]):
        names.append(_pair(tmp_path / f"p{k}.fits", dx))
    (tmp_path / "p2b.fits").write_text("not a FITS file\n")  # fails in the middle
    deblender = Deblender.load(device="cpu")
    sizes = []
    real = deblender.deblend_many

    def counting(images, **kwargs):
        sizes.append(len(images))
        return real(images, **kwargs)

    deblender.deblend_many = counting
    monkeypatch.setattr(batch, "GROUP_FILES", 2)
    summary = deblend_files(tmp_path / "p*.fits", tmp_path / "out", deblender=deblender,
                            progress=False)
    assert (summary.n_done, summary.n_failed) == (5, 1)
    assert sizes == [2, 2, 1]  # groups of images, the unreadable file in none of them
    with open(tmp_path / "out" / batch.LOG_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = [row["input"].rsplit("/", 1)[-1] for row in rows]
    assert logged == sorted(logged)  # input order, whatever the groups
    assert [row["status"] for row in rows].count("failed") == 1
    alone = [deblender(fits.getdata(name)).n_sources for name in names]
    assert [int(row["n_sources"]) for row in rows if row["status"] == "done"] == alone
    assert all(float(row["seconds"]) > 0 for row in rows if row["status"] == "done")


def test_a_deblender_that_cannot_batch_takes_one_image_at_a_time(tmp_path):
    for k in range(3):
        _pair(tmp_path / f"q{k}.fits", 14)
    seen = []

    def plain(image):
        # each result is written before the next image is deblended
        seen.append(len(list((tmp_path / "out").glob("*_deblended.fits"))))
        from astrodeblend.baselines import SegmentationDeblender

        return SegmentationDeblender()(image)

    plain.name, plain.model_hash = "plain", ""
    summary = deblend_files(tmp_path / "q*.fits", tmp_path / "out", deblender=plain,
                            progress=False)
    assert summary.n_done == 3 and seen == [0, 1, 2]


def test_batch_size_option(tmp_path):
    import pytest

    from astrodeblend.cli import main
    from astrodeblend.errors import InvalidInputError

    path = _pair(tmp_path / "r.fits", 14)
    assert main(["deblend", str(path), "--output-dir", str(tmp_path / "a"), "--batch-size", "2",
                 "--no-progress"]) == 0
    assert main(["deblend", str(path), "--output-dir", str(tmp_path / "b"), "--no-progress"]) == 0
    with fits.open(tmp_path / "a" / "r_deblended.fits") as a, \
            fits.open(tmp_path / "b" / "r_deblended.fits") as b:
        assert a[0].header["NSOURCE"] == b[0].header["NSOURCE"] == 2
        np.testing.assert_allclose(a["SOURCE", 1].data, b["SOURCE", 1].data, rtol=1e-4,
                                   atol=1e-5)
    with pytest.raises(InvalidInputError, match="gan only|apply to method 'gan'"):
        deblend_files(path, tmp_path / "c", method="segmentation", batch_size=8, progress=False)
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
        Deblender.load(device="cpu", batch_size=0)
