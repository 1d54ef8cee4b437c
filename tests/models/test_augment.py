"""Tests of test-time augmentation: symmetric copies and their mean."""

import pytest

torch = pytest.importorskip("torch")

from astrodeblend.errors import InvalidInputError  # noqa: E402
from astrodeblend.models import (  # noqa: E402
    SYMMETRIES,
    mean_of_copies,
    symmetric_copies,
)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_copies_turned_back_are_the_input(n):
    x = torch.rand(3, 2, 9, 9)
    copies = symmetric_copies(x, n)
    assert copies.shape == (3 * n, 2, 9, 9)
    for k, part in enumerate(copies.chunk(n)):  # every copy differs from the input but k=0
        assert torch.equal(part, x) == (k == 0)
    torch.testing.assert_close(mean_of_copies(copies, n), x)


def test_eight_copies_are_the_eight_symmetries_of_a_square():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    copies = {tuple(c.flatten().tolist()) for c in symmetric_copies(x, 8)}
    rotations = {tuple(torch.rot90(x, k, (-2, -1)).flatten().tolist()) for k in range(4)}
    mirrored = {tuple(torch.rot90(x.flip(-1), k, (-2, -1)).flatten().tolist()) for k in range(4)}
    assert len(SYMMETRIES) == 8 and copies == rotations | mirrored


def test_mean_of_a_network_on_copies_is_the_mean_of_its_turned_back_outputs():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(2, 1, 3, padding=1)  # no symmetry of its own
    x = torch.rand(2, 2, 8, 8)
    with torch.no_grad():
        got = mean_of_copies(net(symmetric_copies(x, 4)), 4)
        want = (net(x) + net(x.flip(-1)).flip(-1) + net(x.flip(-2)).flip(-2)
                + net(x.flip((-2, -1))).flip((-2, -1))) / 4
        assert not torch.allclose(got, net(x), atol=1e-3)
    torch.testing.assert_close(got, want)


def test_bad_counts_and_shapes():
    x = torch.zeros(1, 1, 4, 6)
    with pytest.raises(InvalidInputError, match="1, 2, 4 or 8"):
        symmetric_copies(x, 3)
    with pytest.raises(InvalidInputError, match="square"):
        symmetric_copies(x, 8)
    with pytest.raises(InvalidInputError, match="a batch"):
        symmetric_copies(torch.zeros(4, 6), 2)
    with pytest.raises(InvalidInputError, match="not 2 copies"):
        mean_of_copies(torch.zeros(3, 1, 4, 6), 2)
    assert symmetric_copies(x, 4).shape == (4, 1, 4, 6)
