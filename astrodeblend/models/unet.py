"""The conditional U-Net generator, the centre detector and their heatmaps.

Both networks share one small U-Net family that works at half resolution:
the input is folded with ``pixel_unshuffle(2)`` (each 2x2 block of pixels
becomes 4 channels), runs through an encoder of stride-2 convolutions and a
decoder of transposed convolutions with skip connections, and is unfolded
again with ``pixel_shuffle(2)``.  There is no batch normalisation, so the
output for one stamp never depends on the other stamps of the batch.

Images of any size are accepted: they are zero-padded at the top and right
to a multiple of ``2 ** (depth + 1)`` inside ``forward`` and cropped back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError

__all__ = ["DeblendGenerator", "CenterDetector", "make_heatmap", "find_peaks", "narrowed"]


def _act():
    return nn.LeakyReLU(0.2, inplace=True)


def _conv(c_in, c_out, *, stride=1):
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class _UNet(nn.Module):
    """U-Net body at half resolution: unshuffle, encode, decode, shuffle."""

    def __init__(self, in_channels, out_channels, base_channels, depth):
        super().__init__()
        if depth < 1:
            raise InvalidInputError(f"depth must be at least 1, not {depth}")
        if base_channels < 1:
            raise InvalidInputError(f"base_channels must be positive, not {base_channels}")
        self.depth = depth
        ch = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = nn.Sequential(_conv(4 * in_channels, ch[0]), _act(),
                                  _conv(ch[0], ch[0]), _act())
        self.down = nn.ModuleList(
            nn.Sequential(_conv(ch[i], ch[i + 1], stride=2), _act(),
                          _conv(ch[i + 1], ch[i + 1]), _act())
            for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2)
                                for i in range(depth))
        self.dec = nn.ModuleList(
            nn.Sequential(_conv(2 * ch[i], ch[i]), _act(), _conv(ch[i], ch[i]), _act())
            for i in range(depth))
        self.head = nn.Conv2d(ch[0], 4 * out_channels, 3, padding=1)

    @property
    def multiple(self):
        return 2 ** (self.depth + 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        m = self.multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        if self.stem[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.pixel_unshuffle(x, 2)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for i in reversed(range(self.depth)):
            y = self.up[i](y)
            y = self.dec[i](torch.cat([y, skips.pop()], dim=1))
        y = F.pixel_shuffle(self.head(y), 2)
        return y[..., :h, :w]


def narrowed(network, base_channels):
    """Return a copy of a U-Net network with fewer channels, its filters the original's.

    Each convolution keeps the filters of largest total ``|weight|`` (its
    output channels; a transposed convolution's likewise), and the next
    layers keep the matching input channels, skips and concatenations
    included: a start for training a narrower, faster network from what
    the wider one learned.  The copy computes something else than the
    original until it is trained (a narrowed generator first returns
    nearly its blend unchanged).

    Parameters
    ----------
    network : `DeblendGenerator` or `CenterDetector`
        The trained network (left unchanged).
    base_channels : int
        Channels of the first level of the copy, at most the original's.

    Returns
    -------
    `DeblendGenerator` or `CenterDetector`
        A new network of the same kind, bands and depth.

    Examples
    --------
    >>> gen = DeblendGenerator(n_bands=3, base_channels=8, depth=2)
    >>> small = narrowed(gen, 4)
    >>> small.net.head.in_channels, small(torch.zeros(1, 3, 32, 32),
    ...                                   torch.zeros(1, 1, 32, 32)).shape
    (4, torch.Size([1, 3, 32, 32]))
    """
    old = network.net
    wide = old.stem[0].out_channels
    if not 1 <= int(base_channels) <= wide:
        raise InvalidInputError(f"base_channels must be in [1, {wide}] (the network's), not "
                                f"{base_channels!r}")
    copy = type(network)(network.n_bands, int(base_channels), old.depth)
    new = copy.net

    def strongest(layer, n, transposed=False):
        dims = (0, 2, 3) if transposed else (1, 2, 3)
        return torch.sort(torch.topk(layer.weight.detach().abs().sum(dim=dims), n).indices).values

    def take(target, source, outs, ins, transposed=False):
        weight = source.weight.detach()
        weight = weight[ins][:, outs] if transposed else weight[outs][:, ins]
        target.weight.data.copy_(weight)
        target.bias.data.copy_(source.bias.detach()[outs])

    widths = [new.stem[0].out_channels * 2**i for i in range(old.depth + 1)]
    first = strongest(old.stem[0], widths[0])
    take(new.stem[0], old.stem[0], first, torch.arange(old.stem[0].in_channels))
    skips = [strongest(old.stem[2], widths[0])]
    take(new.stem[2], old.stem[2], skips[0], first)
    for i, (small, big) in enumerate(zip(new.down, old.down, strict=True)):
        inner = strongest(big[0], widths[i + 1])
        take(small[0], big[0], inner, skips[i])
        skips.append(strongest(big[2], widths[i + 1]))
        take(small[2], big[2], skips[-1], inner)
    kept = skips[-1]
    for i in reversed(range(old.depth)):
        up = strongest(old.up[i], widths[i], transposed=True)
        take(new.up[i], old.up[i], up, kept, transposed=True)
        # the decoder sees [upsampled, skip]: the skip's channels follow the up's
        joined = torch.cat([up, old.up[i].out_channels + skips[i]])
        inner = strongest(old.dec[i][0], widths[i])
        take(new.dec[i][0], old.dec[i][0], inner, joined)
        kept = strongest(old.dec[i][2], widths[i])
        take(new.dec[i][2], old.dec[i][2], kept, inner)
    take(new.head, old.head, torch.arange(old.head.out_channels), kept)
    return copy


def _check_images(name, x, n_bands):
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor, not {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != n_bands:
        raise InvalidInputError(f"{name} must have shape (B, {n_bands}, H, W), "
                                f"not {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InvalidInputError(f"{name} must be a floating-point tensor, not {x.dtype}")


class DeblendGenerator(nn.Module):
    """Conditional U-Net that extracts one galaxy from a blend.

    The generator sees the blend and a heatmap (a Gaussian at the centre of
    the galaxy to extract, from `make_heatmap`) and returns that galaxy
    alone: ``output = blend + correction``.  The last convolution starts at
    zero, so an untrained generator returns the blend unchanged.

    Parameters
    ----------
    n_bands : int, optional
        Number of image bands ``C``.
    base_channels : int, optional
        Channels of the first U-Net level (doubled at each level).
    depth : int, optional
        Number of stride-2 levels below the half-resolution stem.

    Examples
    --------
    >>> import torch
    >>> gen = DeblendGenerator(n_bands=3, base_channels=8, depth=2)
    >>> blend = torch.rand(2, 3, 37, 53)
    >>> heat = make_heatmap(torch.tensor([[10.0, 20.0], [30.0, 5.0]]), (37, 53))
    >>> out = gen(blend, heat)
    >>> out.shape
    torch.Size([2, 3, 37, 53])
    >>> bool(torch.equal(out, blend))
    True
    """

    def __init__(self, n_bands=3, base_channels=24, depth=3):
        super().__init__()
        self.n_bands = int(n_bands)
        self.net = _UNet(self.n_bands + 1, self.n_bands, base_channels, depth)
        nn.init.zeros_(self.net.head.weight)
        nn.init.zeros_(self.net.head.bias)

    def forward(self, blend, heatmap):
        """Return the galaxy marked by ``heatmap``: ``(B, C, H, W)``.

        Parameters
        ----------
        blend : `torch.Tensor`
            ``(B, C, H, W)`` blend in model space.
        heatmap : `torch.Tensor`
            ``(B, 1, H, W)`` Gaussian at the target's centre.

        Returns
        -------
        `torch.Tensor`
            ``(B, C, H, W)``.
        """
        _check_images("blend", blend, self.n_bands)
        if (not isinstance(heatmap, torch.Tensor) or heatmap.ndim != 4
                or heatmap.shape[1] != 1 or heatmap.shape[0] != blend.shape[0]
                or heatmap.shape[-2:] != blend.shape[-2:]):
            shape = tuple(getattr(heatmap, "shape", ()))
            raise InvalidInputError(
                f"heatmap must have shape ({blend.shape[0]}, 1, {blend.shape[2]}, "
                f"{blend.shape[3]}) to match the blend, not {shape}")
        x = torch.cat([blend, heatmap.to(blend.dtype)], dim=1)
        return blend + self.net(x)


class CenterDetector(nn.Module):
    """U-Net that predicts a heatmap of galaxy centres (CenterNet style).

    The output is a logit map; ``sigmoid(logits)`` is trained towards the
    maximum of `make_heatmap` Gaussians at the true centres with a binary
    cross-entropy (see `astrodeblend.train`), and `find_peaks` turns it
    into sub-pixel ``(x, y)`` centres.

    Parameters
    ----------
    n_bands : int, optional
        Number of image bands ``C``.
    base_channels : int, optional
        Channels of the first U-Net level.
    depth : int, optional
        Number of stride-2 levels.

    Examples
    --------
    >>> import torch
    >>> det = CenterDetector(n_bands=5, base_channels=4, depth=2)
    >>> det(torch.zeros(1, 5, 40, 40)).shape
    torch.Size([1, 1, 40, 40])
    """

    def __init__(self, n_bands=3, base_channels=16, depth=3):
        super().__init__()
        self.n_bands = int(n_bands)
        self.net = _UNet(self.n_bands, 1, base_channels, depth)
        # CenterNet's prior: start with sigmoid(logits) ~ 0.1 everywhere.
        nn.init.normal_(self.net.head.weight, std=1e-3)
        nn.init.constant_(self.net.head.bias, -math.log((1 - 0.1) / 0.1))

    def forward(self, blend):
        """Return centre-heatmap logits ``(B, 1, H, W)`` for ``blend (B, C, H, W)``.

        Parameters
        ----------
        blend : `torch.Tensor`
            ``(B, C, H, W)`` blend in model space.

        Returns
        -------
        `torch.Tensor`
            ``(B, 1, H, W)`` logits.
        """
        _check_images("blend", blend, self.n_bands)
        return self.net(blend)


def make_heatmap(centers, shape, *, sigma=1.5, device=None, dtype=None):
    """Return Gaussian heatmaps of peak 1 at the given pixel centres.

    Parameters
    ----------
    centers : `torch.Tensor` or array-like
        ``(B, 2)`` 0-based ``(x, y)`` pixel positions (x the column, y the
        row).
    shape : tuple of int
        ``(H, W)`` of the maps.
    sigma : float, optional
        Gaussian standard deviation in pixels.
    device, dtype : optional
        Of the result; by default those of ``centers`` (float32 for
        non-float input).

    Returns
    -------
    `torch.Tensor`
        ``(B, 1, H, W)``.

    Raises
    ------
    InvalidInputError
        If ``centers`` is not ``(B, 2)`` or ``sigma`` is not positive.

    Examples
    --------
    >>> import torch
    >>> h = make_heatmap(torch.tensor([[3.0, 1.0]]), (4, 6))
    >>> h.shape
    torch.Size([1, 1, 4, 6])
    >>> divmod(int(h.argmax()), 6)  # (row, column) of the peak
    (1, 3)
    >>> float(h.max())
    1.0
    """
    centers = torch.as_tensor(centers)
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise InvalidInputError(f"centers must have shape (B, 2), not {tuple(centers.shape)}")
    if not sigma > 0:
        raise InvalidInputError(f"sigma must be positive, not {sigma}")
    if dtype is None:
        dtype = centers.dtype if centers.is_floating_point() else torch.float32
    device = centers.device if device is None else device
    h, w = (int(v) for v in shape)
    centers = centers.to(device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    ys = torch.arange(h, device=device, dtype=dtype)
    gx = torch.exp(-((xs[None, :] - centers[:, :1]) ** 2) / (2 * sigma**2))  # (B, W)
    gy = torch.exp(-((ys[None, :] - centers[:, 1:]) ** 2) / (2 * sigma**2))  # (B, H)
    return (gy[:, :, None] * gx[:, None, :])[:, None]


def find_peaks(logits, *, threshold=0.3, min_distance=2, max_peaks=None):
    """Find centres in detector logits, with sub-pixel refinement.

    A peak is a pixel of ``p = sigmoid(logits)`` that is the maximum of its
    ``(2 * min_distance + 1)`` square neighbourhood and at least
    ``threshold``.  Its position is refined inside the 3x3 neighbourhood by
    fitting a parabola to the logarithm of the row and column sums of ``p``
    (exact for a Gaussian peak, the shape of the training targets; the plain
    weighted centroid is biased towards the central pixel).

    Parameters
    ----------
    logits : `torch.Tensor`
        ``(B, 1, H, W)`` or ``(B, H, W)`` detector output.
    threshold : float, optional
        Minimum ``sigmoid(logits)`` of a peak.
    min_distance : int, optional
        Minimum separation of two peaks in pixels.
    max_peaks : int, optional
        Keep at most this many peaks per image (the highest).

    Returns
    -------
    list of `torch.Tensor`
        For each image, a ``(K_b, 2)`` float tensor of ``(x, y)`` positions,
        highest peak first.

    Examples
    --------
    >>> import torch
    >>> heat = make_heatmap(torch.tensor([[12.3, 7.6]]), (20, 30)).clamp(1e-6, 1 - 1e-6)
    >>> peaks = find_peaks(torch.logit(heat))
    >>> peaks[0].round(decimals=2)
    tensor([[12.3000,  7.6000]])
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim not in (3, 4):
        raise InvalidInputError("logits must be a (B, 1, H, W) or (B, H, W) tensor")
    if logits.ndim == 4:
        if logits.shape[1] != 1:
            raise InvalidInputError(f"logits must have one channel, not {logits.shape[1]}")
        logits = logits[:, 0]
    prob = torch.sigmoid(logits.detach().float())
    k = 2 * int(min_distance) + 1
    pooled = F.max_pool2d(prob[:, None], k, stride=1, padding=k // 2)[:, 0]
    is_peak = (prob == pooled) & (prob >= threshold)
    padded = F.pad(prob[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    tiny = torch.finfo(prob.dtype).tiny
    out = []
    for b in range(prob.shape[0]):
        ys, xs = torch.nonzero(is_peak[b], as_tuple=True)
        values = prob[b, ys, xs]
        order = torch.argsort(values, descending=True)
        if max_peaks is not None:
            order = order[:max_peaks]
        ys, xs = ys[order], xs[order]
        # 3x3 neighbourhoods (padded coordinates are shifted by one)
        dy = torch.arange(3, device=prob.device)
        patch = padded[b][(ys[:, None, None] + dy[None, :, None]),
                          (xs[:, None, None] + dy[None, None, :])]   # (K, 3, 3)
        col = patch.sum(dim=1).clamp_min(tiny).log()   # along x
        row = patch.sum(dim=2).clamp_min(tiny).log()   # along y
        out.append(torch.stack([xs + _parabola_offset(col), ys + _parabola_offset(row)], dim=1)
                   .to(logits.dtype))
    return out


def _parabola_offset(v):
    """Vertex offset of the parabola through ``v[:, 0], v[:, 1], v[:, 2]`` at -1, 0, 1."""
    denom = v[:, 0] - 2 * v[:, 1] + v[:, 2]
    safe = torch.where(denom < 0, denom, torch.full_like(denom, -1.0))
    offset = torch.where(denom < 0, 0.5 * (v[:, 0] - v[:, 2]) / safe, torch.zeros_like(denom))
    return offset.clamp(-0.5, 0.5)
