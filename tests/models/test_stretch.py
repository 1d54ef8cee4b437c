"""Tests of the model value space: stretch, unstretch, robust_peak."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

torch = pytest.importorskip("torch")

from astrodeblend import InvalidInputError  # noqa: E402
from astrodeblend.models import robust_peak, stretch, unstretch  # noqa: E402


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(1, 20),
              elements=st.floats(-1e3, 1e3, allow_nan=False)))
def test_round_trip_numpy(x):
    np.testing.assert_allclose(unstretch(stretch(x)), x, rtol=1e-9, atol=1e-12)
    assert np.all(np.sign(stretch(x)) == np.sign(x))


def test_torch_and_numpy_agree():
    x = np.linspace(-3, 3, 13)
    t = torch.from_numpy(x)
    assert isinstance(stretch(t), torch.Tensor)
    np.testing.assert_allclose(stretch(t).numpy(), stretch(x))
    np.testing.assert_allclose(unstretch(t).numpy(), unstretch(x))
    torch.testing.assert_close(unstretch(stretch(t)), t)


def test_stretch_has_gradients():
    x = torch.tensor([-0.5, 0.25, 1.0], requires_grad=True)
    unstretch(x).sum().backward()
    assert torch.all(torch.isfinite(x.grad))


def test_robust_peak(galaxy):
    value = robust_peak(galaxy)
    assert isinstance(value, float)
    band_mean = galaxy.mean(axis=0)
    assert value == pytest.approx(np.percentile(band_mean, 99.5))
    batch = np.stack([galaxy, 3 * galaxy])
    np.testing.assert_allclose(robust_peak(batch), [value, 3 * value], rtol=1e-6)
    t = robust_peak(torch.from_numpy(batch))
    assert t.shape == (2,)
    np.testing.assert_allclose(t.numpy(), [value, 3 * value], rtol=1e-5)
    assert robust_peak(np.zeros((1, 4, 4))) == 1e-12
    # a single hot pixel (cosmic ray) does not set the scale
    hot = galaxy.copy()
    hot[:, 3, 3] = 1e4
    assert robust_peak(hot) < 2
    with pytest.raises(InvalidInputError, match="robust_peak needs"):
        robust_peak(np.zeros((4, 4)))
