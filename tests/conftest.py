"""Shared pytest fixtures: devices, small synthetic galaxies, the shared data folder."""

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow test: use --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Torch device to test on: CPU always, CUDA where present."""
    import torch

    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture
def shared_data():
    """Path of ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture
def galaxy_zoo_dir(shared_data):
    """Folder of the real Galaxy Zoo JPGs; skips the test when absent."""
    path = shared_data / "galaxyzoo" / "images"
    if not path.is_dir():
        pytest.skip("Galaxy Zoo images are not available")
    return path


def sersic_galaxy(shape=(64, 64), *, x=None, y=None, amplitude=1.0, r_eff=6.0, n=1.5,
                  ellip=0.3, theta=0.5, n_bands=3):
    """Return a ``(n_bands, H, W)`` float32 Sersic galaxy made with astropy.modeling."""
    from astropy.modeling.models import Sersic2D

    h, w = shape
    x = (w - 1) / 2 if x is None else x
    y = (h - 1) / 2 if y is None else y
    yy, xx = np.mgrid[:h, :w]
    model = Sersic2D(amplitude=amplitude, r_eff=r_eff, n=n, x_0=x, y_0=y, ellip=ellip,
                     theta=theta)
    plane = model(xx, yy)
    colours = np.linspace(0.8, 1.2, n_bands)
    return (colours[:, None, None] * plane[None]).astype(np.float32)


@pytest.fixture
def galaxy():
    """A centred 3-band 64x64 Sersic galaxy, peak about 1."""
    data = sersic_galaxy()
    return data / data.max()


@pytest.fixture
def jpg_folder(tmp_path):
    """A folder of 12 small synthetic Galaxy-Zoo-like JPGs (96x96x3, one galaxy centred)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        data = sersic_galaxy((96, 96), r_eff=rng.uniform(4, 10), n=rng.uniform(0.8, 3),
                             ellip=rng.uniform(0, 0.6), theta=rng.uniform(0, 3))
        data = data / data.max()
        rgb = (np.clip(data.transpose(1, 2, 0), 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{100000 + i}.jpg", quality=95)
    return folder
