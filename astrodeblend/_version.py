"""The version of astrodeblend."""

__version__ = "0.1.0"
