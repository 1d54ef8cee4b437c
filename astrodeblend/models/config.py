"""`ModelConfig`: the architecture of a deblending model, and `build_models`.

A checkpoint stores ``ModelConfig.to_dict()`` next to the weights, so that
the networks can be rebuilt exactly before the weights are loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InvalidInputError
from .discriminator import PatchDiscriminator
from .sampler import SampleDiscriminator, SampleGenerator
from .unet import CenterDetector, DeblendGenerator

__all__ = ["ModelConfig", "build_models", "check_settings"]


@dataclass
class ModelConfig:
    """Architecture settings of the deblending networks.

    Parameters
    ----------
    n_bands : int
        Number of image bands.
    image_size : int
        Side of the training stamps in pixels (the networks accept any size).
    generator_channels, generator_depth : int
        Width and depth of the `DeblendGenerator` U-Net.
    detector_channels, detector_depth : int
        Width and depth of the `CenterDetector` U-Net.
    discriminator_channels, discriminator_layers : int
        Width and stride-2 layers of the `PatchDiscriminator`.
    heatmap_sigma : float
        Width in pixels of the centre Gaussians (`make_heatmap`) used to
        condition the generator and as detector targets.
    with_sampler : bool
        Also build the unconditional `SampleGenerator` / `SampleDiscriminator`.
    latent_dim, sampler_size, sampler_channels : int
        Settings of the unconditional GAN.

    Examples
    --------
    >>> cfg = ModelConfig(n_bands=5)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> ModelConfig.from_dict({"n_band": 3})
    Traceback (most recent call last):
    ...
    astrodeblend.errors.InvalidInputError: unknown model setting(s) 'n_band'; ...
    """

    n_bands: int = 3
    image_size: int = 80
    generator_channels: int = 24
    generator_depth: int = 3
    detector_channels: int = 16
    detector_depth: int = 3
    discriminator_channels: int = 32
    discriminator_layers: int = 3
    heatmap_sigma: float = 1.5
    with_sampler: bool = False
    latent_dim: int = 64
    sampler_size: int = 64
    sampler_channels: int = 32

    def to_dict(self):
        """Return the settings as a plain (JSON-able) dict.

        Returns
        -------
        dict
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping):
        """Build a config from a dict, refusing unknown keys.

        Parameters
        ----------
        mapping : dict
            Settings; missing keys take their defaults.

        Returns
        -------
        ModelConfig

        Raises
        ------
        InvalidInputError
            If ``mapping`` is not a dict or has keys that are not settings.
        """
        if isinstance(mapping, cls):
            return dataclasses.replace(mapping)
        names = check_settings(cls, mapping, "model")
        values = {}
        for key, value in mapping.items():
            kind = type(names[key].default)
            if kind is bool:
                if not isinstance(value, bool):
                    raise InvalidInputError(f"model setting {key!r} must be true or false, "
                                            f"not {value!r}")
                values[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    kind is int and float(value) != int(value)):
                what = "an integer" if kind is int else "a number"
                raise InvalidInputError(f"model setting {key!r} must be {what}, not {value!r}")
            values[key] = kind(value)
        return cls(**values)


def check_settings(cls, mapping, what):
    """Check that ``mapping`` is a dict of settings of the dataclass ``cls``.

    The one check of every settings dict read from a checkpoint or a JSON
    file (`ModelConfig`, `~astrodeblend.train.TrainConfig`).

    Parameters
    ----------
    cls : type
        A dataclass.
    mapping : object
        What should be a dict of its field names.
    what : str
        Name of the settings in messages (``'model'``, ``'training'``).

    Returns
    -------
    dict
        Field name -> `dataclasses.Field` of ``cls``.

    Raises
    ------
    InvalidInputError
        If ``mapping`` is not a dict or has keys that are not fields.

    Examples
    --------
    >>> sorted(check_settings(ModelConfig, {"n_bands": 5}, "model"))[:2]
    ['detector_channels', 'detector_depth']
    """
    if not isinstance(mapping, dict):
        raise InvalidInputError(f"a {what} config must be a dict, not "
                                f"{type(mapping).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise InvalidInputError(
            f"unknown {what} setting(s) {', '.join(repr(k) for k in unknown)}; "
            f"valid settings are {', '.join(names)}")
    return names


def build_models(config=None):
    """Build the networks described by a `ModelConfig`.

    Parameters
    ----------
    config : `ModelConfig` or dict, optional
        Architecture (defaults when None).

    Returns
    -------
    dict of `torch.nn.Module`
        ``generator``, ``detector`` and ``discriminator``; plus
        ``sample_generator`` and ``sample_discriminator`` when
        ``config.with_sampler``.

    Examples
    --------
    >>> models = build_models(ModelConfig(generator_channels=8, detector_channels=4,
    ...                                   discriminator_channels=8))
    >>> sorted(models)
    ['detector', 'discriminator', 'generator']
    """
    cfg = ModelConfig.from_dict(config) if config is not None else ModelConfig()
    models = {
        "generator": DeblendGenerator(cfg.n_bands, cfg.generator_channels, cfg.generator_depth),
        "detector": CenterDetector(cfg.n_bands, cfg.detector_channels, cfg.detector_depth),
        "discriminator": PatchDiscriminator(cfg.n_bands, cfg.discriminator_channels,
                                            cfg.discriminator_layers),
    }
    if cfg.with_sampler:
        models["sample_generator"] = SampleGenerator(cfg.latent_dim, cfg.n_bands,
                                                     cfg.sampler_size, cfg.sampler_channels)
        models["sample_discriminator"] = SampleDiscriminator(cfg.n_bands, cfg.sampler_size,
                                                             cfg.sampler_channels)
    return models
