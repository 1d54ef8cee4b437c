"""`ModelConfig`: the architecture of a deblending model, and `build_models`.

A checkpoint stores ``ModelConfig.to_dict()`` next to the weights, so that
the networks can be rebuilt exactly before the weights are loaded.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from ..errors import InvalidInputError
from .discriminator import PatchDiscriminator
from .sampler import SampleDiscriminator, SampleGenerator
from .unet import CenterDetector, DeblendGenerator

__all__ = ["ModelConfig", "build_models", "check_settings", "count_parameters",
           "MAX_PARAMETERS", "SETTING_RANGES"]

#: Largest number of network parameters (all networks together) that a
#: `ModelConfig` may describe: 10**8, 400 MB as float32.  A checkpoint whose
#: config asks for more is refused before anything is built.
MAX_PARAMETERS = 10**8

#: Allowed range ``(low, high)`` of every numeric `ModelConfig` setting,
#: both ends included.
SETTING_RANGES = {
    "n_bands": (1, 64),
    "image_size": (4, 16384),
    "generator_channels": (1, 1024),
    "generator_depth": (1, 8),
    "detector_channels": (1, 1024),
    "detector_depth": (1, 8),
    "discriminator_channels": (1, 1024),
    "discriminator_layers": (1, 8),
    "heatmap_sigma": (0.05, 100.0),
    "latent_dim": (1, 4096),
    "sampler_size": (8, 1024),
    "sampler_channels": (1, 1024),
}


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
        Settings of the unconditional GAN (``sampler_size`` is 4 times a
        power of 2).

    Raises
    ------
    InvalidInputError
        If a setting has the wrong type, is not finite, is outside its range
        (``SETTING_RANGES``), or the networks would have more than
        ``MAX_PARAMETERS`` parameters (``count_parameters``).  Nothing is built.

    Examples
    --------
    >>> cfg = ModelConfig(n_bands=5)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> ModelConfig.from_dict({"n_band": 3})
    Traceback (most recent call last):
    ...
    astrodeblend.errors.InvalidInputError: unknown model setting(s) 'n_band'; ...
    >>> ModelConfig(generator_depth=9)
    Traceback (most recent call last):
    ...
    astrodeblend.errors.InvalidInputError: model setting 'generator_depth' must be between 1 and ...
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

    def __post_init__(self):
        self.check()

    def check(self):
        """Check every setting (type, finite, range) and the size of the networks.

        Called on construction; call it again after changing a setting.

        Raises
        ------
        InvalidInputError
            If a setting is wrong or the networks would be too large.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = type(f.default)
            if kind is bool:
                if not isinstance(value, bool):
                    raise InvalidInputError(f"model setting {f.name!r} must be true or false, "
                                            f"not {value!r}")
                continue
            what = "an integer" if kind is int else "a number"
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InvalidInputError(f"model setting {f.name!r} must be {what}, "
                                        f"not {value!r}")
            if not math.isfinite(float(value)):
                raise InvalidInputError(f"model setting {f.name!r} must be finite, "
                                        f"not {value!r}")
            if kind is int and float(value) != int(value):
                raise InvalidInputError(f"model setting {f.name!r} must be {what}, "
                                        f"not {value!r}")
            low, high = SETTING_RANGES[f.name]
            if not low <= value <= high:
                raise InvalidInputError(f"model setting {f.name!r} must be between {low} and "
                                        f"{high}, not {value!r}")
        size = int(self.sampler_size)
        if size % 4 or (size // 4) & (size // 4 - 1):
            raise InvalidInputError(f"model setting 'sampler_size' must be 4 times a power of "
                                    f"2 (e.g. 64), not {size}")
        n_params = count_parameters(self)
        if n_params > MAX_PARAMETERS:
            raise InvalidInputError(
                f"the networks of this model config would have {n_params:,} parameters, "
                f"more than the limit of {MAX_PARAMETERS:,} "
                "(astrodeblend.models.config.MAX_PARAMETERS)")

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
                    kind is int and not math.isfinite(value)) or (
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


def _conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def _unet_parameters(c_in, c_out, base, depth):
    ch = [base * 2**i for i in range(depth + 1)]
    n = _conv(4 * c_in, ch[0], 3) + _conv(ch[0], ch[0], 3) + _conv(ch[0], 4 * c_out, 3)
    for i in range(depth):
        n += _conv(ch[i], ch[i + 1], 3) + _conv(ch[i + 1], ch[i + 1], 3)  # down
        n += _conv(ch[i + 1], ch[i], 2)                                     # up
        n += _conv(2 * ch[i], ch[i], 3) + _conv(ch[i], ch[i], 3)            # decoder
    return n


def count_parameters(config):
    """Return the number of parameters of the networks of a config, without building them.

    Parameters
    ----------
    config : `ModelConfig`
        The architecture (generator, detector, discriminator, and the
        sampler networks when ``with_sampler``).

    Returns
    -------
    int

    Examples
    --------
    >>> cfg = ModelConfig(generator_channels=8, detector_channels=4, discriminator_channels=8)
    >>> count_parameters(cfg) == sum(p.numel() for m in build_models(cfg).values()
    ...                              for p in m.parameters())
    True
    """
    c = config
    n_bands = int(c.n_bands)
    n = _unet_parameters(n_bands + 1, n_bands, int(c.generator_channels),
                         int(c.generator_depth))
    n += _unet_parameters(n_bands, 1, int(c.detector_channels), int(c.detector_depth))
    base, layers = int(c.discriminator_channels), int(c.discriminator_layers)
    n += _conv(2 * n_bands + 1, base, 4)
    ch = base
    for i in range(1, layers):
        n += _conv(ch, base * min(2**i, 8), 4)
        ch = base * min(2**i, 8)
    n += _conv(ch, base * min(2**layers, 8), 3) + _conv(base * min(2**layers, 8), 1, 3)
    if c.with_sampler:
        steps = max(1, int(c.sampler_size).bit_length() - 3)  # sampler_size = 4 * 2**steps
        width = int(c.sampler_channels) * 2 ** (steps - 1)
        n += int(c.latent_dim) * width * 16 + width * 16      # projection
        for _ in range(steps - 1):
            n += _conv(width, width // 2, 4) + 2 * (width // 2)   # transposed conv + norm
            width //= 2
        n += _conv(width, n_bands, 4)
        c_in, ch = n_bands, int(c.sampler_channels)
        for _ in range(steps):
            n += _conv(c_in, ch, 4)
            c_in, ch = ch, ch * 2
        n += c_in * 16 + 1                                    # head
    return n


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
