"""Tests of astrodeblend.models: shapes, residual start, heatmaps, peaks, configs."""

import pytest

torch = pytest.importorskip("torch")

from astrodeblend import InvalidInputError  # noqa: E402
from astrodeblend.models import (  # noqa: E402
    CenterDetector,
    DeblendGenerator,
    ModelConfig,
    PatchDiscriminator,
    SampleDiscriminator,
    SampleGenerator,
    build_models,
    find_peaks,
    make_heatmap,
)


@pytest.mark.parametrize("n_bands", [1, 3, 5])
@pytest.mark.parametrize("shape", [(80, 80), (37, 53), (16, 16)])
def test_generator_and_detector_shapes(n_bands, shape, device):
    gen = DeblendGenerator(n_bands, base_channels=4, depth=3).to(device)
    det = CenterDetector(n_bands, base_channels=4, depth=3).to(device)
    blend = torch.rand(2, n_bands, *shape, device=device)
    heat = make_heatmap(torch.tensor([[5.0, 6.0], [10.0, 3.0]], device=device), shape)
    out = gen(blend, heat)
    assert out.shape == blend.shape and out.device == blend.device
    assert det(blend).shape == (2, 1, *shape)


def test_untrained_generator_returns_the_blend(galaxy):
    gen = DeblendGenerator(3)
    blend = torch.from_numpy(galaxy)[None]
    heat = make_heatmap(torch.tensor([[31.5, 31.5]]), blend.shape[-2:])
    assert torch.equal(gen(blend, heat), blend)


def test_generator_output_independent_of_batch():
    torch.manual_seed(0)
    gen = DeblendGenerator(3, base_channels=4, depth=2)
    torch.nn.init.normal_(gen.net.head.weight, std=0.1)   # make the correction non-zero
    blend = torch.rand(3, 3, 24, 24)
    heat = make_heatmap(torch.rand(3, 2) * 20, (24, 24))
    full = gen(blend, heat)
    single = gen(blend[1:2], heat[1:2])
    torch.testing.assert_close(full[1:2], single, rtol=1e-5, atol=1e-6)
    assert not torch.equal(full, blend)


def test_generator_channels_last_matches():
    torch.manual_seed(0)
    gen = DeblendGenerator(3, base_channels=4, depth=2).eval()
    torch.nn.init.normal_(gen.net.head.weight, std=0.1)
    blend = torch.rand(2, 3, 32, 32)
    heat = make_heatmap(torch.tensor([[8.0, 9.0], [20.0, 22.0]]), (32, 32))
    with torch.no_grad():
        ref = gen(blend, heat)
        gen.to(memory_format=torch.channels_last)
        fast = gen(blend, heat)
    torch.testing.assert_close(ref, fast.contiguous(), rtol=1e-4, atol=1e-5)


def test_shape_errors():
    gen = DeblendGenerator(3, base_channels=4, depth=2)
    with pytest.raises(InvalidInputError, match=r"blend must have shape \(B, 3, H, W\)"):
        gen(torch.zeros(1, 4, 16, 16), torch.zeros(1, 1, 16, 16))
    with pytest.raises(InvalidInputError, match="heatmap must have shape"):
        gen(torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 8))
    with pytest.raises(ValueError, match="centers must have shape"):
        make_heatmap(torch.zeros(3), (8, 8))
    with pytest.raises(InvalidInputError, match="PatchDiscriminator needs"):
        PatchDiscriminator(3, 8)(torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16),
                                 torch.zeros(1, 3, 8, 8))


def test_heatmap_peak_location_and_value():
    centers = torch.tensor([[3.0, 7.0], [12.0, 1.0]])
    heat = make_heatmap(centers, (10, 15), sigma=2.0)
    assert heat.shape == (2, 1, 10, 15)
    for b, (x, y) in enumerate(centers.tolist()):
        row, col = divmod(int(heat[b, 0].argmax()), 15)
        assert (col, row) == (x, y)                 # x is the column, y the row
        assert float(heat[b, 0, row, col]) == pytest.approx(1.0)
    assert float(heat[0, 0, 7, 5]) == pytest.approx(torch.exp(torch.tensor(-4 / 8.0)).item())


@pytest.mark.parametrize("center", [(12.3, 7.6), (20.0, 5.45), (6.81, 14.19)])
def test_find_peaks_subpixel(center):
    heat = make_heatmap(torch.tensor([center, (4.0, 4.0)]), (20, 30), sigma=1.5)
    both = torch.maximum(heat[0], heat[1])[None]
    logits = torch.logit(both.clamp(1e-6, 1 - 1e-6))
    peaks = find_peaks(logits, threshold=0.3)
    assert len(peaks) == 1 and peaks[0].shape == (2, 2)
    found = {tuple(round(v, 2) for v in p) for p in peaks[0].tolist()}
    expected = {tuple(round(v, 2) for v in center), (4.0, 4.0)}
    for e in expected:
        assert min(abs(e[0] - f[0]) + abs(e[1] - f[1]) for f in found) < 0.05


def test_find_peaks_threshold_distance_and_max():
    heat = make_heatmap(torch.tensor([[5.0, 5.0], [9.0, 5.0], [15.0, 15.0]]), (20, 20))
    amps = torch.tensor([0.9, 0.5, 0.35])[:, None, None, None]
    prob = (heat * amps).amax(0, keepdim=True).clamp(1e-6, 1 - 1e-6)
    logits = torch.logit(prob)
    assert len(find_peaks(logits, min_distance=3)[0]) == 2      # the close pair merges
    assert len(find_peaks(logits, min_distance=1)[0]) == 3
    assert len(find_peaks(logits, min_distance=1, threshold=0.4)[0]) == 2
    top = find_peaks(logits, min_distance=1, max_peaks=1)[0]
    assert top.shape == (1, 2) and top[0, 0] == pytest.approx(5.0, abs=0.3)
    assert find_peaks(torch.full((2, 1, 8, 8), -10.0))[1].shape == (0, 2)


def test_discriminator_shapes():
    disc = PatchDiscriminator(5, base_channels=8, n_layers=3)
    x = torch.rand(2, 5, 80, 80)
    logits = disc(x, torch.rand(2, 1, 80, 80), x)
    assert logits.shape == (2, 1, 10, 10)
    assert PatchDiscriminator(1, 8, n_layers=2)(torch.rand(1, 1, 37, 53),
                                                 torch.rand(1, 1, 37, 53),
                                                 torch.rand(1, 1, 37, 53)).shape == (1, 1, 9, 13)


def test_sampler_shapes():
    gen = SampleGenerator(latent_dim=8, n_bands=5, image_size=64, base_channels=4)
    images = gen(torch.randn(3, 8))
    assert images.shape == (3, 5, 64, 64)
    assert SampleDiscriminator(5, 64, base_channels=4)(images).shape == (3,)
    with pytest.raises(InvalidInputError, match="image_size"):
        SampleGenerator(image_size=80)


def test_config_round_trip_and_build():
    cfg = ModelConfig(n_bands=5, generator_channels=8, detector_channels=4,
                      discriminator_channels=8, with_sampler=True, latent_dim=8,
                      sampler_channels=4)
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    import json

    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    models = build_models(cfg)
    assert sorted(models) == ["detector", "discriminator", "generator", "sample_discriminator",
                              "sample_generator"]
    assert models["generator"].n_bands == 5
    with pytest.raises(InvalidInputError, match="unknown model setting.*'depth'"):
        ModelConfig.from_dict({"depth": 3})
    with pytest.raises(InvalidInputError, match="must be an integer"):
        ModelConfig.from_dict({"n_bands": "three"})
    with pytest.raises(InvalidInputError, match="true or false"):
        ModelConfig.from_dict({"with_sampler": "yes"})
