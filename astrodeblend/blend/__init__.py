"""Blended scenes with ground truth: the protocols of ``spec/protocols.md``.

Each function takes isolated galaxy images (`~astrodeblend.GalaxyImage` or
arrays ``(C, H, W)`` / ``(H, W)``, all of one shape and band count), galaxy A
first, and returns a `Scene`: the blended image, the noiseless truth of every
galaxy in the same value space as the blend, their centres and every random
draw (``params``), so that a scene can be described and rebuilt.  A scene is
a pure function of its inputs and ``seed``: only
``numpy.random.default_rng(seed)`` is used, never a global generator.

``paper``
    The seed paper: B shifted 50 px to the right, blend = pixel-wise
    maximum, partial (segmented, noisy) images of each galaxy, everything
    area-averaged to 128x128.
``reiman``
    Reiman & Goehre (2019): B rotated, scaled, flipped and shifted, both
    centre-cropped to 240 px and binned by 3 (80x80 from 424 px Galaxy Zoo
    images), blend = pixel-wise maximum, no noise.
``physical``
    What a survey sees: linear flux, blend = sum of the components (any
    number of galaxies), flux ratios, optional PSF, Poisson and sky noise on
    the blend only.
``survey``
    Scenes like real survey cutouts: 0 to 4 galaxies (from the images
    given and from Sersic or bulge+disk profiles) and stars anywhere in the
    frame, 1 to 5 bands, PSF, residual sky, noise over a range of S/N and
    masked defects (`blend_survey`).  `read_clean_stamps` isolates the
    galaxies of real FITS stamps for it.

Value spaces: display images (header card ``ADBDISP = True``, JPG/PNG) are
gamma-stretched values in [0, 1].  ``paper`` and ``reiman`` work on the
values as given and keep ``ADBDISP`` in the scene header; ``physical``
linearises display images (``value ** 2.2``) and subtracts a sigma-clipped
sky per band (`astrodeblend.detect.background_and_noise`), so its blends and
truths are linear flux and carry no ``ADBDISP`` card.  Other images (FITS,
arrays) are used as they are.

Images smaller than the 240 px crop (``reiman``, ``physical``) are handled by
scaling the crop and the shift range by ``min(H, W) / 424``, i.e. the same
geometry as for a 424 px Galaxy Zoo image.
"""

from ._display import blend_paper, blend_reiman
from ._physical import blend_physical, linear_flux
from ._protocols import PROTOCOLS, make_scene
from ._scene import DISPLAY_GAMMA, REFERENCE_SIZE, Scene  # noqa: F401 (constants, as before)
from ._stamps import clean_stamp, read_clean_stamps
from ._survey import (  # noqa: F401 (as before)
    SURVEY_GALAXY_PROBABILITIES,
    SURVEY_MAX_ZOOM,
    blend_survey,
)

__all__ = [
    "PROTOCOLS",
    "Scene",
    "blend_paper",
    "blend_reiman",
    "blend_physical",
    "blend_survey",
    "make_scene",
    "linear_flux",
    "clean_stamp",
    "read_clean_stamps",
]
