"""The networks of astrodeblend (PyTorch; nothing here reads or writes files).

- `DeblendGenerator`: conditional U-Net, ``(blend, heatmap) -> galaxy``.
- `CenterDetector` and `find_peaks`: centres of the galaxies in a blend.
- `narrowed`: a U-Net copy with fewer channels, its strongest filters kept.
- `PatchDiscriminator`: conditional PatchGAN critic of the generator.
- `SampleGenerator`, `SampleDiscriminator`: the unconditional DCGAN.
- `ModelConfig`, `build_models`: architectures and their construction.
- `stretch`, `unstretch`, `robust_peak`: the model's value space.
- `symmetric_copies`, `mean_of_copies`: a network's output averaged over
  flipped and transposed copies of its input (test-time augmentation).
"""

from .augment import SYMMETRIES, mean_of_copies, symmetric_copies
from .config import (
    MAX_PARAMETERS,
    SETTING_RANGES,
    ModelConfig,
    build_models,
    count_parameters,
)
from .discriminator import PatchDiscriminator
from .sampler import SampleDiscriminator, SampleGenerator
from .stretch import GAMMA, robust_peak, stretch, unstretch
from .unet import CenterDetector, DeblendGenerator, find_peaks, make_heatmap, narrowed

__all__ = [
    "DeblendGenerator",
    "CenterDetector",
    "PatchDiscriminator",
    "SampleGenerator",
    "SampleDiscriminator",
    "ModelConfig",
    "build_models",
    "count_parameters",
    "MAX_PARAMETERS",
    "SETTING_RANGES",
    "make_heatmap",
    "find_peaks",
    "narrowed",
    "GAMMA",
    "stretch",
    "unstretch",
    "robust_peak",
    "SYMMETRIES",
    "symmetric_copies",
    "mean_of_copies",
]
