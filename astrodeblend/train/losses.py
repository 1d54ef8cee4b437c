"""The losses of the deblending GAN and the centre detector (see `astrodeblend.train`)."""

from __future__ import annotations

import math

import torch

from ..models import make_heatmap, unstretch

__all__ = ["scaled_l1", "flux_loss", "center_targets"]


def scaled_l1(out, truth, eps):
    """Per galaxy mean |out - truth| / (mean |truth| + eps), averaged."""
    num = (out - truth).abs().flatten(1).mean(1)
    den = truth.abs().flatten(1).mean(1) + eps
    return (num / den).mean()


def flux_loss(out, truth, linear):
    """Per-source relative error of the linear flux, linear-flux scenes only (0 without any)."""
    if not bool(linear.any()):
        return out.new_zeros(())
    lin_out = unstretch(out[linear].float()).flatten(1).sum(1)
    lin_true = unstretch(truth[linear].float())
    scale = lin_true.abs().flatten(1).sum(1) + 1e-3
    return ((lin_out - lin_true.flatten(1).sum(1)).abs() / scale).mean()


def center_targets(batch, device, sigma, *, size_sigma=0.0, max_sigma=3.0):
    """Target map of the detector: ``max_k make_heatmap(center_k)`` over each scene's sources.

    Every listed source (``k < n_sources``: galaxies and stars) gives one
    Gaussian peak of height 1; a scene of one source gives one peak, a scene
    of none an all-zero map.  Centres past ``n_sources`` (padding, NaN in
    the files) are ignored whatever their value.  With ``size_sigma`` each
    peak's width follows its source's size: ``size_sigma`` times the radius
    of a disc of the area where the source's truth (bands summed) exceeds
    half its peak, kept between ``sigma`` and ``max_sigma``.

    Parameters
    ----------
    batch : dict of `torch.Tensor`
        ``centers (B, K, 2)``, ``n_sources (B,)`` and ``blend (B, C, H, W)``;
        ``truth (B, K, C, H, W)`` with ``size_sigma``.
    device : `torch.device`
        Device of the result.
    sigma : float
        Width of the peaks in pixels (the narrowest with ``size_sigma``).
    size_sigma : float, optional
        Width of a peak as a fraction of its source's half-maximum radius
        (`~astrodeblend.train.TrainConfig` ``det_size_sigma``); 0: all
        ``sigma`` wide.
    max_sigma : float, optional
        Widest peak with ``size_sigma`` (pixels).

    Returns
    -------
    `torch.Tensor`
        ``(B, 1, H, W)`` targets in [0, 1].

    Examples
    --------
    >>> import torch
    >>> batch = {"centers": torch.tensor([[[4.0, 3.0], [float("nan"), 0.0]]] * 2),
    ...          "n_sources": torch.tensor([1, 0]), "blend": torch.zeros(2, 1, 8, 8)}
    >>> t = center_targets(batch, "cpu", 1.0)
    >>> float(t[0].max()), divmod(int(t[0].argmax()), 8), float(t[1].max())
    (1.0, (3, 4), 0.0)

    A source whose light is above half its peak over 50 pixels (a disc of
    radius 3.99) gets a peak of width ``0.5 * 3.99``, about 2 pixels:

    >>> batch["truth"] = torch.zeros(2, 2, 1, 8, 8)
    >>> batch["truth"][0, 0, 0].view(-1)[:50] = 1.0
    >>> wide = center_targets(batch, "cpu", 1.0, size_sigma=0.5)
    >>> round(float(wide[0, 0, 3, 6]), 4), round(float(t[0, 0, 3, 6]), 4)  # 2 px off
    (0.6049, 0.1353)
    """
    if size_sigma > 0:
        return _sized_targets(batch, sigma, size_sigma, max_sigma).to(device)
    n = batch["n_sources"]
    b, k_max = batch["centers"].shape[:2]
    h, w = batch["blend"].shape[-2:]
    listed = torch.arange(k_max)[None, :] < n[:, None]
    centers = torch.where(listed[..., None], batch["centers"], torch.zeros_like(batch["centers"]))
    heat = make_heatmap(centers.reshape(-1, 2), (h, w), sigma=sigma)
    heat = heat.reshape(b, k_max, h, w)
    heat = torch.where(listed[:, :, None, None], heat, torch.zeros_like(heat))
    return heat.amax(dim=1, keepdim=True).to(device)


def _sized_targets(batch, sigma, size_sigma, max_sigma):
    """`center_targets` with each peak as wide as ``size_sigma`` times its source's size."""
    n = batch["n_sources"]
    centers = batch["centers"]
    k_max = centers.shape[1]
    h, w = batch["blend"].shape[-2:]
    listed = torch.arange(k_max)[None, :] < n[:, None]
    plane = batch["truth"].float().sum(2)  # (B, K, H, W)
    peak = plane.amax(dim=(-2, -1), keepdim=True)
    area = ((plane > 0.5 * peak) & (peak > 0)).float().sum(dim=(-2, -1))
    width = (size_sigma * torch.sqrt(area / math.pi)).clamp(sigma, max(max_sigma, sigma))
    xy = torch.where(listed[..., None], centers, torch.zeros_like(centers))
    yy = torch.arange(h, dtype=torch.float32)[:, None]
    xx = torch.arange(w, dtype=torch.float32)[None, :]
    d2 = (xx - xy[..., 0, None, None]) ** 2 + (yy - xy[..., 1, None, None]) ** 2
    heat = torch.exp(-0.5 * d2 / width[..., None, None] ** 2)
    heat = torch.where(listed[:, :, None, None], heat, torch.zeros_like(heat))
    return heat.amax(dim=1, keepdim=True)


def secondary_peaks(batch, radius, *, min_fraction=0.2, dip=0.7, min_distance=4.0):
    """Where the truths hold a second object: pixels the detector's loss leaves out.

    A source's noiseless truth (bands summed, smoothed over 3x3 pixels) may
    hold more than its own galaxy: a Galaxy Zoo image's neighbours and
    field stars stay in it (the ``reiman`` and ``physical`` protocols), and
    a cleaned image keeps faint neighbours inside its segment.  Its local
    maxima (7x7) above ``min_fraction`` of its peak, farther than
    ``min_distance`` px from its own centre, with the light along the line
    from that centre falling below ``dip`` times their value on the way, are
    second objects: the target says nothing there, so that a detector is
    neither taught to find nor to ignore them.  Returns ``(B, 1, H, W)``,
    1 within ``radius`` px of such a maximum, else 0.
    """
    truth = batch["truth"].float().sum(2)  # (B, K, H, W)
    b, k_max, h, w = truth.shape
    listed = torch.arange(k_max)[None, :] < batch["n_sources"][:, None]
    smooth = torch.nn.functional.avg_pool2d(truth.reshape(b * k_max, 1, h, w), 3, 1, 1,
                                            count_include_pad=False).reshape(b, k_max, h, w)
    peak = smooth.amax(dim=(-2, -1), keepdim=True)
    local = smooth == torch.nn.functional.max_pool2d(
        smooth.reshape(b * k_max, 1, h, w), 7, 1, 3).reshape(b, k_max, h, w)
    found = local & (smooth > min_fraction * peak) & (peak > 0) & listed[:, :, None, None]
    i, k, row, col = torch.nonzero(found).unbind(1)
    cx, cy = batch["centers"][i, k].float().unbind(1)
    far = torch.isfinite(cx) & (torch.hypot(col - cx, row - cy) > min_distance)
    i, k, row, col, cx, cy = (v[far] for v in (i, k, row, col, cx, cy))
    steps = torch.linspace(0.0, 1.0, 24)
    xs = (cx[:, None] + steps * (col - cx)[:, None]).round().long().clamp(0, w - 1)
    ys = (cy[:, None] + steps * (row - cy)[:, None]).round().long().clamp(0, h - 1)
    on_line = smooth[i[:, None], k[:, None], ys, xs].amin(dim=1)
    apart = on_line < dip * smooth[i, k, row, col]
    seeds = torch.zeros((b, 1, h, w))
    seeds[i[apart], 0, row[apart], col[apart]] = 1.0
    r = int(math.floor(radius))
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    disc = ((xx ** 2 + yy ** 2) <= radius ** 2).float()[None, None]
    return (torch.nn.functional.conv2d(seeds, disc, padding=r) > 0.5).float()
