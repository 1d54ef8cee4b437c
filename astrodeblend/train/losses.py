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


def flux_loss(out, truth, physical):
    """Per-galaxy relative error of the linear flux, physical scenes only."""
    if not bool(physical.any()):
        return out.new_zeros(())
    lin_out = unstretch(out[physical].float()).flatten(1).sum(1)
    lin_true = unstretch(truth[physical].float())
    scale = lin_true.abs().flatten(1).sum(1) + 1e-3
    return ((lin_out - lin_true.flatten(1).sum(1)).abs() / scale).mean()


def center_targets(batch, device, sigma):
    """Target map of the detector: ``max_k make_heatmap(center_k)`` over each scene's galaxies."""
    n = batch["n_sources"]
    b, k_max = batch["centers"].shape[:2]
    h, w = batch["blend"].shape[-2:]
    heat = make_heatmap(batch["centers"].reshape(-1, 2), (h, w), sigma=sigma)
    heat = heat.reshape(b, k_max, h, w)
    mask = (torch.arange(k_max)[None, :] < n[:, None]).to(heat.dtype)
    return (heat * mask[:, :, None, None]).amax(dim=1, keepdim=True).to(device)
