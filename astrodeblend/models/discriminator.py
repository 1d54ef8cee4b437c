"""Discriminators: the conditional PatchGAN of the deblender (pix2pix).

The discriminator sees the blend, the heatmap that names the target and a
galaxy image (the truth or the generator's output) and returns a map of
logits, one per overlapping patch.  There is no sigmoid: the training loss
is ``BCEWithLogits``.  Spectral normalisation keeps it Lipschitz and the
adversarial game stable.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import InvalidInputError

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: ``(blend, heatmap, galaxy) -> patch logits``.

    Parameters
    ----------
    n_bands : int, optional
        Number of image bands ``C``.
    base_channels : int, optional
        Channels of the first layer (doubled per layer, at most 8x).
    n_layers : int, optional
        Number of stride-2 layers.
    spectral : bool, optional
        Apply spectral normalisation to every convolution.

    Examples
    --------
    >>> import torch
    >>> disc = PatchDiscriminator(n_bands=3, base_channels=8, n_layers=3)
    >>> x = torch.zeros(2, 3, 80, 80)
    >>> disc(x, torch.zeros(2, 1, 80, 80), x).shape
    torch.Size([2, 1, 10, 10])
    """

    def __init__(self, n_bands=3, base_channels=32, n_layers=3, *, spectral=True):
        super().__init__()
        self.n_bands = int(n_bands)
        wrap = spectral_norm if spectral else (lambda m: m)
        c_in = 2 * self.n_bands + 1
        layers = [wrap(nn.Conv2d(c_in, base_channels, 4, stride=2, padding=1)),
                  nn.LeakyReLU(0.2, inplace=True)]
        c = base_channels
        for i in range(1, n_layers):
            c_next = base_channels * min(2**i, 8)
            layers += [wrap(nn.Conv2d(c, c_next, 4, stride=2, padding=1)),
                       nn.LeakyReLU(0.2, inplace=True)]
            c = c_next
        c_next = base_channels * min(2**n_layers, 8)
        layers += [wrap(nn.Conv2d(c, c_next, 3, padding=1)), nn.LeakyReLU(0.2, inplace=True),
                   wrap(nn.Conv2d(c_next, 1, 3, padding=1))]
        self.net = nn.Sequential(*layers)

    def forward(self, blend, heatmap, galaxy):
        """Return patch logits ``(B, 1, H / 2**n_layers, W / 2**n_layers)``.

        Parameters
        ----------
        blend : `torch.Tensor`
            ``(B, C, H, W)``.
        heatmap : `torch.Tensor`
            ``(B, 1, H, W)``.
        galaxy : `torch.Tensor`
            ``(B, C, H, W)``: the true galaxy or the generator's output.

        Returns
        -------
        `torch.Tensor`
            Logits, one per patch.
        """
        shape = tuple(blend.shape)
        if (blend.ndim != 4 or shape[1] != self.n_bands or tuple(galaxy.shape) != shape
                or tuple(heatmap.shape) != (shape[0], 1) + shape[2:]):
            raise InvalidInputError(
                f"PatchDiscriminator needs blend and galaxy (B, {self.n_bands}, H, W) and "
                f"heatmap (B, 1, H, W); got {shape}, {tuple(galaxy.shape)}, "
                f"{tuple(heatmap.shape)}")
        return self.net(torch.cat([blend, heatmap.to(blend.dtype), galaxy], dim=1))
