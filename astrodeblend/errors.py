"""The exception hierarchy of astrodeblend.

Every error that astrodeblend raises on purpose derives from
`AstrodeblendError`, so a pipeline can catch one class.  Errors about bad
input also derive from `ValueError`, errors about files from `OSError`.
The command line prints ``str(error)`` on one line and exits with status 2.
"""

__all__ = [
    "AstrodeblendError",
    "InvalidInputError",
    "ReadError",
    "WriteError",
    "OutputExistsError",
    "DatasetError",
    "CheckpointError",
    "DeviceError",
]


class AstrodeblendError(Exception):
    """Base class of every error astrodeblend raises on purpose."""


class InvalidInputError(AstrodeblendError, ValueError):
    """An argument or an array is not what the function needs."""


class ReadError(AstrodeblendError, OSError):
    """A file cannot be read: missing, unreadable, corrupt or of the wrong kind."""


class WriteError(AstrodeblendError, OSError):
    """An output cannot be written (read-only folder, full disk, ...)."""


class OutputExistsError(WriteError, FileExistsError):
    """The output exists and ``overwrite`` was not requested."""


class DatasetError(InvalidInputError):
    """A training-set file or image folder is missing, empty or malformed."""


class CheckpointError(InvalidInputError):
    """A model checkpoint is missing, corrupt, unsafe or of another architecture."""


class DeviceError(AstrodeblendError, RuntimeError):
    """The requested compute device is not available."""
