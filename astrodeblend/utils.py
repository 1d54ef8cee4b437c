"""Small shared helpers: optional dependencies, progress reports, plurals, file names."""

import sys
import time
from importlib.util import find_spec

__all__ = ["HAS_TQDM", "HAS_DASK", "LineProgress", "plural", "progress", "resolve_device",
           "resolve_precision", "PRECISIONS", "header_name", "name_from_header"]

HAS_TQDM = find_spec("tqdm") is not None
HAS_DASK = find_spec("dask") is not None and find_spec("distributed") is not None


def plural(count, singular, plural_form=None):
    """Return ``'<count> <noun>'`` with the noun in the singular for one item.

    Parameters
    ----------
    count : int
        How many.
    singular : str
        The noun for one (``'source'``).
    plural_form : str, optional
        The noun for any other count; by default ``singular + 's'``, or
        ``+ 'es'`` after s, x, z, ch and sh (``'batches'``).

    Returns
    -------
    str

    Examples
    --------
    >>> plural(1, "source"), plural(0, "source"), plural(2, "batch"), plural(2, "mouse", "mice")
    ('1 source', '0 sources', '2 batches', '2 mice')
    """
    return f"{count} {singular if count == 1 else plural_form or _plural_noun(singular)}"


def _plural_noun(singular):
    return singular + ("es" if singular.endswith(("s", "x", "z", "ch", "sh")) else "s")


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """Progress as a plain line now and then, for logs that are not a terminal.

    Iterating over it yields the items of ``iterable`` and writes one line,
    ``'<desc>: 150/1000 files, 3 failed, 12.3 files/s'``, to ``file`` every
    ``every`` items or ``interval`` seconds (whichever comes first) and once
    at the end, so that a batch system's output file gets a readable record
    instead of a progress bar's carriage returns.  It offers the part of the
    tqdm interface that astrodeblend uses: `set_postfix_str`, `write` and
    `close`.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    desc : str, optional
        Label at the start of each line.
    total : int, optional
        Number of items (``len(iterable)`` when it has one).
    unit : str, optional
        Name of one item (``'file'``; lines say ``'files'``).
    file : file-like, optional
        Where the lines go; standard error (at the time of the call) by default.
    every : int, optional
        Items between two lines.
    interval : float, optional
        Seconds after which a line is written at the next item anyway.

    Examples
    --------
    >>> import sys
    >>> items = list(LineProgress(range(4), desc="work", unit="file", every=2,
    ...                           file=sys.stdout))  # doctest: +ELLIPSIS
    work: 2/4 files, ... files/s
    work: 4/4 files, ... files/s
    >>> items
    [0, 1, 2, 3]
    """

    def __init__(self, iterable, *, desc=None, total=None, unit="it", file=None,
                 every=50, interval=30.0):
        self.iterable = iterable
        self.desc = desc
        if total is None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.total = total
        self.unit = unit
        self.file = file
        self.every = max(1, int(every))
        self.interval = float(interval)
        self.n = 0
        self.postfix = ""
        self._reported = 0
        self._closed = False

    def _stream(self):
        return self.file if self.file is not None else sys.stderr

    def line(self):
        """Return the progress line as it stands."""
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        units = self.unit if self.n == 1 and self.total in (None, 1) else _plural_noun(self.unit)
        elapsed = time.perf_counter() - self._started if self.n else 0.0
        per = _plural_noun(self.unit)
        rate = f"{self.n / elapsed:.1f} {per}/s" if elapsed > 0 else f"- {per}/s"
        parts = [f"{count} {units}"] + ([self.postfix] if self.postfix else []) + [rate]
        head = f"{self.desc}: " if self.desc else ""
        return head + ", ".join(parts)

    def _report(self):
        print(self.line(), file=self._stream(), flush=True)
        self._reported = self.n
        self._last = time.perf_counter()

    def __iter__(self):
        self._started = self._last = time.perf_counter()
        for item in self.iterable:
            yield item
            self.n += 1
            now = time.perf_counter()
            if self.n % self.every == 0 or now - self._last >= self.interval:
                self._report()
        self.close()

    def set_postfix_str(self, text="", refresh=True):
        """Set the text shown after the count (``'3 failed'``)."""
        self.postfix = str(text)

    def write(self, text, file=None, end="\n"):
        """Print ``text`` (to ``file``, standard error by default)."""
        print(text, file=file if file is not None else self._stream(), end=end, flush=True)

    def close(self):
        """Write the last line, if items came after the last one written."""
        if not self._closed:
            self._closed = True
            if self.n != self._reported:
                self._report()


def progress(iterable, *, enable=True, desc=None, total=None, unit="it", file=None,
             every=50, interval=30.0):
    """Report progress over ``iterable``: a bar on a terminal, lines in a log.

    When standard error (or ``file``) is a terminal, the items come through
    a tqdm progress bar.  When it is not (a batch system's output file, a
    pipe), a bar would be carriage-return spam: a `LineProgress` writes one
    line every ``every`` items or ``interval`` seconds instead.  The object
    returned offers ``set_postfix_str``, ``write`` and ``close`` in both
    cases (and neither when ``enable`` is False).

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    enable : bool, optional
        Report progress (False returns ``iterable`` unchanged).
    desc : str, optional
        Label of the bar or lines.
    total : int, optional
        Number of items, when ``iterable`` has no length.
    unit : str, optional
        Name of one item.
    file : file-like, optional
        Where progress goes; standard error by default.
    every : int, optional
        Items between two progress lines (not a terminal).
    interval : float, optional
        Seconds after which a progress line is written anyway (not a terminal).

    Returns
    -------
    iterable

    Examples
    --------
    >>> list(progress(range(3), enable=False))
    [0, 1, 2]
    """
    if not enable:
        return iterable
    stream = file if file is not None else sys.stderr
    if not _is_terminal(stream) or not HAS_TQDM:
        return LineProgress(iterable, desc=desc, total=total, unit=unit, file=file,
                            every=every, interval=interval)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, file=file)


def resolve_device(device="auto"):
    """Return the `torch.device` for ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.

    Parameters
    ----------
    device : str or `torch.device`, optional
        ``'auto'`` picks CUDA when available, else the CPU.

    Returns
    -------
    `torch.device`

    Raises
    ------
    DeviceError
        If CUDA is requested but not available (or that GPU does not exist).
    InvalidInputError
        If ``device`` is not a device name.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    from .errors import DeviceError, InvalidInputError

    name = str(device) if isinstance(device, torch.device) else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} was requested but CUDA is not available "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} does not exist: "
                              f"{torch.cuda.device_count()} CUDA device(s) available")
    elif dev.type != "cpu":
        raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
    return dev


PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def _cpu_has_bf16():
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        try:
            if getattr(cpu, check)():
                return True
        except Exception:  # noqa: BLE001 - a private check this torch lacks or refuses
            continue
    return False


def resolve_precision(precision, device):
    """Return the arithmetic the networks run in on ``device``.

    Parameters
    ----------
    precision : {'auto', 'float32', 'bfloat16', 'float16'}
        ``'auto'`` is float16 autocast on CUDA, bfloat16 autocast on a CPU
        that multiplies bfloat16 natively (AVX-512 BF16 or AMX: about twice
        as fast as float32) and float32 on other CPUs.  ``'float16'`` runs
        only on CUDA.
    device : `torch.device` or str
        A resolved device (`resolve_device`) or its name (``'cuda:1'``).

    Returns
    -------
    str
        ``'float32'``, ``'bfloat16'`` or ``'float16'``.

    Raises
    ------
    InvalidInputError
        If ``precision`` is not one of the names above, or ``'float16'`` on
        a CPU.

    Examples
    --------
    >>> import torch
    >>> resolve_precision("float32", torch.device("cpu"))
    'float32'
    """
    import torch

    from .errors import InvalidInputError

    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, "
                                f"not {precision!r}")
    cuda = torch.device(device).type == "cuda"
    if precision == "auto":
        return "float16" if cuda else ("bfloat16" if _cpu_has_bf16() else "float32")
    if precision == "float16" and not cuda:
        raise InvalidInputError("precision 'float16' runs only on CUDA; use 'bfloat16' or "
                                "'float32' on a CPU")
    return precision


# ------------------------------------------------------------- file names
# Bytes kept as they are in a header name: printable ASCII except '%', the
# escape character itself.
_SAFE_NAME_BYTES = frozenset(range(0x20, 0x7F)) - {ord("%")}


def header_name(name):
    r"""Return a file name as printable ASCII for a FITS header card.

    FITS header values are printable ASCII.  Other characters (non-ASCII
    letters, control characters, bytes that are not UTF-8) are written as
    ``%XX`` escapes of their UTF-8 (or raw) bytes, and ``%`` itself as
    ``%25``, so that every name a file system allows has one unambiguous
    header form; `name_from_header` turns it back.

    Parameters
    ----------
    name : str, bytes or path
        A file name (only its last component is kept for a path).

    Returns
    -------
    str

    Examples
    --------
    >>> header_name("café.jpg"), header_name("tab\there.fits"), header_name("50%.png")
    ('caf%C3%A9.jpg', 'tab%09here.fits', '50%25.png')
    >>> name_from_header(header_name("café.jpg"))
    'café.jpg'
    """
    import os

    raw = os.fsencode(name)
    return "".join(chr(b) if b in _SAFE_NAME_BYTES else f"%{b:02X}" for b in raw)


def name_from_header(text):
    """Return the file name that `header_name` escaped (the inverse of `header_name`).

    Parameters
    ----------
    text : str
        A header value written by `header_name`.

    Returns
    -------
    str
        The file name (undecodable bytes as the file system's surrogate
        escapes, as `os.fsdecode` gives them).

    Examples
    --------
    >>> name_from_header("caf%C3%A9.jpg")
    'café.jpg'
    """
    import os
    from urllib.parse import unquote_to_bytes

    return os.fsdecode(unquote_to_bytes(str(text)))
