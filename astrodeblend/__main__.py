"""Allow ``python -m astrodeblend`` (and ``torchrun -m astrodeblend``)."""

import sys

from .cli import main

sys.exit(main())
