"""The losses of the deblending GAN and the centre detector (see `astrodeblend.train`)."""

from __future__ import annotations

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


def center_targets(batch, device, sigma):
    """Target map of the detector: ``max_k make_heatmap(center_k)`` over each scene's sources.

    Every listed source (``k < n_sources``: galaxies and stars) gives one
    Gaussian peak of height 1; a scene of one source gives one peak, a scene
    of none an all-zero map.  Centres past ``n_sources`` (padding, NaN in
    the files) are ignored whatever their value.

    Parameters
    ----------
    batch : dict of `torch.Tensor`
        ``centers (B, K, 2)``, ``n_sources (B,)`` and ``blend (B, C, H, W)``.
    device : `torch.device`
        Device of the result.
    sigma : float
        Width of the peaks in pixels.

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
    """
    n = batch["n_sources"]
    b, k_max = batch["centers"].shape[:2]
    h, w = batch["blend"].shape[-2:]
    listed = torch.arange(k_max)[None, :] < n[:, None]
    centers = torch.where(listed[..., None], batch["centers"], torch.zeros_like(batch["centers"]))
    heat = make_heatmap(centers.reshape(-1, 2), (h, w), sigma=sigma)
    heat = heat.reshape(b, k_max, h, w)
    heat = torch.where(listed[:, :, None, None], heat, torch.zeros_like(heat))
    return heat.amax(dim=1, keepdim=True).to(device)
