"""The unconditional DCGAN of the seed paper: draw galaxies from noise.

`SampleGenerator` maps ``N(0, 1)`` latent vectors to galaxy images in model
space (values in [0, 1]); `SampleDiscriminator` is its critic.  They are
used by ``astrodeblend sample`` and trained only when asked
(``TrainConfig.train_sampler``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import InvalidInputError

__all__ = ["SampleGenerator", "SampleDiscriminator"]


def _n_steps(image_size):
    steps = 0
    size = int(image_size)
    while size > 4 and size % 2 == 0:
        size //= 2
        steps += 1
    if size != 4:
        raise InvalidInputError(f"image_size must be 4 times a power of 2 (e.g. 64), "
                                f"not {image_size}")
    return steps


class SampleGenerator(nn.Module):
    """DCGAN generator: ``(B, latent_dim)`` noise to ``(B, C, S, S)`` images in [0, 1].

    Parameters
    ----------
    latent_dim : int, optional
        Length of the noise vector.
    n_bands : int, optional
        Number of image bands ``C``.
    image_size : int, optional
        Side ``S`` of the images, 4 times a power of 2.
    base_channels : int, optional
        Channels of the last up-sampling layer (doubled towards the input).

    Examples
    --------
    >>> import torch
    >>> gen = SampleGenerator(latent_dim=16, n_bands=3, image_size=32, base_channels=8)
    >>> img = gen(torch.randn(2, 16))
    >>> img.shape, bool(img.min() >= 0), bool(img.max() <= 1)
    (torch.Size([2, 3, 32, 32]), True, True)
    """

    def __init__(self, latent_dim=64, n_bands=3, image_size=64, base_channels=32):
        super().__init__()
        self.latent_dim = int(latent_dim)
        steps = _n_steps(image_size)
        c = base_channels * 2 ** (steps - 1)
        self.project = nn.Sequential(nn.Linear(self.latent_dim, c * 16), nn.LeakyReLU(0.2))
        self._c0 = c
        layers = []
        for _ in range(steps - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1),
                       nn.BatchNorm2d(c // 2), nn.LeakyReLU(0.2)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, n_bands, 4, stride=2, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        """Return images ``(B, C, S, S)`` in [0, 1] for noise ``z (B, latent_dim)``.

        Parameters
        ----------
        z : `torch.Tensor`
            ``(B, latent_dim)`` standard normal noise.

        Returns
        -------
        `torch.Tensor`
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InvalidInputError(f"z must have shape (B, {self.latent_dim}), "
                                    f"not {tuple(z.shape)}")
        x = self.project(z).view(z.shape[0], self._c0, 4, 4)
        return 0.5 * (torch.tanh(self.net(x)) + 1)


class SampleDiscriminator(nn.Module):
    """DCGAN discriminator: ``(B, C, S, S)`` images to ``(B,)`` logits.

    Parameters
    ----------
    n_bands : int, optional
        Number of image bands ``C``.
    image_size : int, optional
        Side ``S`` of the images, 4 times a power of 2.
    base_channels : int, optional
        Channels of the first layer (doubled per layer).

    Examples
    --------
    >>> import torch
    >>> SampleDiscriminator(n_bands=3, image_size=32, base_channels=8)(
    ...     torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2])
    """

    def __init__(self, n_bands=3, image_size=64, base_channels=32):
        super().__init__()
        steps = _n_steps(image_size)
        layers = []
        c_in, c = n_bands, base_channels
        for _ in range(steps):
            layers += [spectral_norm(nn.Conv2d(c_in, c, 4, stride=2, padding=1)),
                       nn.LeakyReLU(0.2, inplace=True)]
            c_in, c = c, c * 2
        self.net = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(c_in * 16, 1))

    def forward(self, images):
        """Return one logit per image.

        Parameters
        ----------
        images : `torch.Tensor`
            ``(B, C, S, S)``.

        Returns
        -------
        `torch.Tensor`
            ``(B,)``.
        """
        return self.head(self.net(images).flatten(1))[:, 0]
