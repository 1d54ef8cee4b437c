import math

import numpy as np
import pytest

from astrodeblend.errors import InvalidInputError
from astrodeblend.metrics import (
    PSNR_CAP,
    centroid,
    centroid_error,
    ellipticity,
    ellipticity_error,
    flux_error,
    match_sources,
    psnr,
    ssim,
)


def gaussian(shape=(64, 64), x=31.5, y=31.5, sx=4.0, sy=4.0, theta=0.0, n_bands=3):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    dx, dy = xx - x, yy - y
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    plane = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return np.stack([plane * (0.8 + 0.2 * b) for b in range(n_bands)])


class TestPsnrSsim:
    def test_identical_images(self, galaxy):
        assert psnr(galaxy, galaxy) == math.inf
        assert ssim(galaxy, galaxy) == 1.0
        assert psnr(galaxy, galaxy, normalize="max") == math.inf
        assert PSNR_CAP == 100.0

    def test_known_mse(self):
        truth = np.zeros((2, 10, 10))
        pred = truth + 0.01  # MSE 1e-4 -> 40 dB at data_range 1
        assert psnr(pred, truth, data_range=1.0) == pytest.approx(40.0)
        # default data range: the truth's range (1 here)
        truth[0, 5, 5] = 1.0
        assert psnr(truth + 0.01, truth) == pytest.approx(40.0)

    def test_two_dimensional_and_small_images(self):
        rng = np.random.default_rng(1)
        a = rng.random((5, 6))
        b = a + rng.normal(0, 0.05, a.shape)
        value = ssim(b, a, data_range=1.0)  # window shrinks to 5
        assert 0 < value < 1
        assert ssim(a[None], a[None]) == 1.0
        with pytest.raises(InvalidInputError, match="3x3"):
            ssim(np.ones((2, 8)), np.ones((2, 8)))

    def test_max_normalisation_hides_flux_errors(self, galaxy):
        half = 0.5 * galaxy
        assert psnr(half, galaxy) < 40
        assert ssim(half, galaxy) < 0.99
        assert psnr(half, galaxy, normalize="max") == math.inf
        assert ssim(half, galaxy, normalize="max") == 1.0
        assert flux_error(half, galaxy) == pytest.approx(-0.5)
        assert flux_error(half, galaxy, normalize="max") == pytest.approx(0.0, abs=1e-12)

    def test_worse_prediction_scores_lower(self, galaxy):
        rng = np.random.default_rng(0)
        small = galaxy + rng.normal(0, 0.01, galaxy.shape)
        large = galaxy + rng.normal(0, 0.1, galaxy.shape)
        assert psnr(small, galaxy) > psnr(large, galaxy)
        assert ssim(small, galaxy) > ssim(large, galaxy)

    def test_errors(self, galaxy):
        with pytest.raises(InvalidInputError, match="shape"):
            psnr(galaxy[:, :10], galaxy)
        with pytest.raises(InvalidInputError, match="normalize"):
            psnr(galaxy, galaxy, normalize="sum")
        with pytest.raises(InvalidInputError, match="data_range"):
            ssim(galaxy, galaxy, data_range=0)
        with pytest.raises(InvalidInputError, match="shape"):
            psnr(np.ones(5), np.ones(5))


class TestFluxCentroidShape:
    @pytest.mark.parametrize("scale", [0.5, 1.0, 1.3])
    def test_flux_scaling(self, galaxy, scale):
        assert flux_error(scale * galaxy, galaxy) == pytest.approx(scale - 1)

    def test_flux_error_needs_positive_truth(self):
        with pytest.raises(InvalidInputError, match="positive total flux"):
            flux_error(np.ones((4, 4)), np.zeros((4, 4)))
        assert flux_error(np.zeros((4, 4)), np.ones((4, 4))) == -1.0

    def test_known_shift(self):
        truth = gaussian(x=30.0, y=28.0)
        pred = gaussian(x=33.0, y=24.0)  # (+3, -4): distance 5
        assert centroid(truth) == pytest.approx((30.0, 28.0), abs=1e-6)
        assert centroid_error(pred, truth) == pytest.approx(5.0, abs=1e-6)
        assert centroid_error(np.roll(truth, 2, axis=2), truth) == pytest.approx(2.0, abs=1e-6)

    def test_centroid_uses_positive_part_and_empty_is_nan(self):
        image = np.zeros((9, 9))
        image[4, 2] = 1.0
        image[4, 8] = -5.0  # negative pixels are ignored
        assert centroid(image) == (2.0, 4.0)
        assert all(math.isnan(v) for v in centroid(np.zeros((4, 4))))
        assert math.isnan(centroid_error(np.zeros((4, 4)), image[:4, :4] + 1))

    def test_round_gaussian_has_no_ellipticity(self):
        e1, e2 = ellipticity(gaussian(sx=5, sy=5))
        assert abs(e1) < 1e-6 and abs(e2) < 1e-6

    @pytest.mark.parametrize("theta", [0.0, np.pi / 4, np.pi / 2, 1.0])
    def test_elongated_gaussian_matches_analytic(self, theta):
        a, b = 6.0, 3.0
        modulus = (a**2 - b**2) / (a**2 + b**2)
        e1, e2 = ellipticity(gaussian(sx=a, sy=b, theta=theta))
        assert e1 == pytest.approx(modulus * np.cos(2 * theta), abs=1e-3)
        assert e2 == pytest.approx(modulus * np.sin(2 * theta), abs=1e-3)

    def test_ellipticity_error(self):
        round_ = gaussian(sx=5, sy=5)
        elongated = gaussian(sx=6, sy=3)
        assert ellipticity_error(round_, round_) == 0.0
        assert ellipticity_error(elongated, round_) == pytest.approx(27 / 45, abs=1e-3)
        assert ellipticity_error(3 * elongated, elongated) == pytest.approx(0.0, abs=1e-12)


class TestMatchSources:
    def test_one_to_one_within_distance(self):
        m = match_sources([[10, 10], [20, 10]], [[19, 11], [50, 50], [10.5, 10]])
        assert m.pairs.tolist() == [[0, 2], [1, 0]]
        assert m.distances == pytest.approx([0.5, np.sqrt(2)])
        assert m.unmatched_true.tolist() == []
        assert m.unmatched_found.tolist() == [1]

    def test_nothing_within_distance(self):
        m = match_sources([[0, 0]], [[10, 0]], max_distance=5)
        assert m.pairs.shape == (0, 2)
        assert m.unmatched_true.tolist() == [0]
        assert m.unmatched_found.tolist() == [0]

    def test_empty_inputs(self):
        m = match_sources(np.zeros((0, 2)), [[1, 1]])
        assert m.pairs.shape == (0, 2) and m.unmatched_found.tolist() == [0]
        m = match_sources([[1, 1], [3, 3]], [])
        assert m.unmatched_true.tolist() == [0, 1]

    def test_one_found_position_cannot_serve_two(self):
        m = match_sources([[10, 10], [12, 10]], [[11, 10]], max_distance=5)
        assert len(m.pairs) == 1
        assert len(m.unmatched_true) == 1

    def test_maximises_number_of_pairs(self):
        # greedy nearest-first would pair true 0 with found 0 and leave true 1 alone
        m = match_sources([[0, 0], [4, 0]], [[2, 0], [-2.5, 0]], max_distance=3)
        assert sorted(m.pairs.tolist()) == [[0, 1], [1, 0]]

    def test_single_pair_and_errors(self):
        assert match_sources([1, 2], [1, 2]).pairs.tolist() == [[0, 0]]
        with pytest.raises(InvalidInputError, match="max_distance"):
            match_sources([[0, 0]], [[0, 0]], max_distance=0)
        with pytest.raises(InvalidInputError, match="found_xy"):
            match_sources([[0, 0]], [[0, 0, 0]])
        with pytest.raises(InvalidInputError, match="non-finite"):
            match_sources([[np.nan, 0]], [[0, 0]])
