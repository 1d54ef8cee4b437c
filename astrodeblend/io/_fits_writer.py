"""A small FITS serializer: header cards as astropy formats them, HDUs written directly.

`write_deblended` writes many small files.  astropy's HDU classes copy,
re-parse and verify every header card each time an HDU is made and again
when it is written; for an 80 x 80 cutout that overhead, not the I/O, was
most of the time (issue 17).  Here each card is formatted once, by
`astropy.io.fits.Card` (so every card is exactly astropy's), and an HDU is
written as its mandatory cards, the caller's cards, ``CHECKSUM`` and
``DATASUM`` (the FITS checksum convention, as astropy's ``checksum=True``
writes them), ``END``, and its data, big-endian, each padded to 2880 bytes.

Only what the deblended output needs: images (``uint8``, ``int16``,
``int32``, ``int64``, ``float32``, ``float64``), binary tables of fixed-size
fields (a structured array whose cards give ``TTYPEn``, ``TFORMn``, ...)
and a primary HDU without data.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
from astropy.io import fits

__all__ = ["Cards", "card", "write_hdu"]

_BLOCK = 2880
_COMMENTARY = ("COMMENT", "HISTORY", "")
_BITPIX = {"u1": 8, "i2": 16, "i4": 32, "i8": 64, "f4": -32, "f8": -64}
_PLAIN_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")


def card(keyword, value=None, comment=None):
    """Return the image of a header card: 80 characters (or more, with ``CONTINUE``).

    Formatted by `astropy.io.fits.Card`; cards without a float value are
    cached, as the same ones (``TTYPEn``, ``EXTNAME``, ...) recur in every
    file.

    Examples
    --------
    >>> card("NSOURCE", 2, "number of SOURCE HDUs").rstrip()
    'NSOURCE =                    2 / number of SOURCE HDUs'
    """
    if isinstance(value, float):  # not cached: 0.0 == -0.0, and nan != nan
        return _float_card(keyword, value, comment) or str(fits.Card(keyword, value, comment))
    return _cached_card(keyword, value, comment)


def _float_card(keyword, value, comment):
    """Return the image astropy gives a float card, built directly; None if unsure.

    astropy's formatting (``_format_float``: ``str``, ``E`` for ``e``, at
    most 20 characters, right-aligned) for a standard keyword (not
    commentary), a finite value and a printable ASCII comment that fit one
    card; anything else (NaN, long comments, odd keywords) is left to
    astropy, its errors and warnings included.
    """
    if not (_PLAIN_KEYWORD.fullmatch(keyword) and keyword not in _COMMENTARY
            and math.isfinite(value)
            and (comment is None or isinstance(comment, str) and comment.isascii()
                 and comment.isprintable())):
        return None
    text = str(value).replace("e", "E")
    if len(text) > 20:
        exponent = text.find("E")
        text = text[:20] if exponent < 0 else text[:20 - (len(text) - exponent)] + text[exponent:]
    # astropy writes no separator for an empty or blank comment
    image = f"{keyword:8}= {text:>20}" + (f" / {comment}" if comment and comment.strip() else "")
    return f"{image:80}" if len(image) <= 80 else None


@functools.lru_cache(maxsize=4096, typed=True)  # typed: 1 and True differ
def _cached_card(keyword, value, comment):
    return str(fits.Card(keyword, value, comment))


def _keyword(image):
    return image[:8].rstrip()


def _different(old, value):
    """Whether astropy's ``Card.value`` setter takes ``value`` as a change from ``old``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(old, str) and isinstance(value, str):
        return old.rstrip() != value.rstrip()
    if isinstance(old, bool) or isinstance(value, bool):
        return old is not value
    return old != value or not isinstance(value, type(old))


class Cards:
    """Header cards as images, in the order `~astropy.io.fits.Header` keeps them.

    New keyword cards go after the last card that is not commentary
    (``COMMENT``, ``HISTORY``, blank keyword), so commentary stays at the
    end, and a commentary card goes after the last one of its keyword, as
    ``header[key] = value`` and ``Header.add_comment`` place them.

    Parameters
    ----------
    images : iterable of str, optional
        Card images (`card`), in order.

    Examples
    --------
    >>> cards = Cards([card("BANDS", "g,r"), card("COMMENT", "no unit")])
    >>> cards.set("CUTX0", 4, "column")
    >>> [image[:8].rstrip() for image in cards.images]
    ['BANDS', 'CUTX0', 'COMMENT']
    """

    def __init__(self, images=()):
        self.images = list(images)
        # comments as given to `set` (a card image cannot tell " a" from "a")
        self._comments = {}

    @classmethod
    def from_header(cls, header):
        """Return the cards of a `~astropy.io.fits.Header`, without its trailing blank cards.

        astropy uses blank cards at the end of a header up for the cards it
        adds when it writes an HDU; here they are simply dropped.
        """
        cards = cls(str(c) for c in header.cards)
        cards.strip_blank_end()
        return cards

    def copy(self):
        """Return a copy (the images are strings: nothing is shared that can change)."""
        other = Cards(self.images)
        other._comments = dict(self._comments)
        return other

    def index(self, keyword):
        """Return the index of the first card of a keyword (8 characters at most), or None."""
        prefix = f"{keyword:8}="
        for i, image in enumerate(self.images):
            if image.startswith(prefix):
                return i
        return None

    def set(self, keyword, value, comment=None):
        """Set a keyword card as ``header[keyword] = (value, comment)`` does.

        The first card of ``keyword`` is replaced (keeping its comment when
        ``comment`` is None, and its value text when astropy's card would not
        take the new value as different: a string that differs only by
        trailing blanks, which FITS ignores, or a number equal to the old one
        of the same type, ``-0.0`` for ``0.0``); without one, the card is
        added after the last card that is not commentary.
        """
        i = self.index(keyword)
        if i is not None:
            old = fits.Card.fromstring(self.images[i])
            if comment is None:
                comment = self._comments.get(keyword)
            comment = old.comment if comment is None else comment
            self._comments[keyword] = comment
            if not _different(old.value, value):
                if isinstance(old.value, str):
                    if old.comment != comment:
                        old.comment = comment  # astropy keeps the card's own value text
                    self.images[i] = str(old)
                elif old.comment != comment:  # the old value, formatted anew
                    self.images[i] = card(keyword, old.value, comment)
                return
            self.images[i] = card(keyword, value, comment)
            return
        if comment is not None:
            self._comments[keyword] = comment
        end = len(self.images)
        while end and _keyword(self.images[end - 1]) in _COMMENTARY:
            end -= 1
        self.images.insert(end, card(keyword, value, comment))

    def commentary(self, keyword):
        """Return the texts of the cards of a commentary keyword, as ``header[keyword]`` does."""
        return [image[i + 8:i + 80].rstrip() for image in self.images
                for i in range(0, len(image), 80) if _keyword(image[i:i + 8]) == keyword]

    def strip_blank_end(self):
        """Drop blank cards at the end, which astropy's HDUs use up for the cards they add."""
        while self.images and not self.images[-1].strip():
            self.images.pop()

    def add_commentary(self, keyword, text):
        """Add a ``COMMENT`` or ``HISTORY`` card after the last of its keyword, or at the end."""
        at = len(self.images)
        for i in range(len(self.images) - 1, -1, -1):
            if _keyword(self.images[i]) == keyword:
                at = i + 1
                break
        self.images.insert(at, card(keyword, text))


def _mandatory(data, primary):
    """Return the mandatory cards that describe ``data`` (None, an image or table rows)."""
    if data is None:
        bitpix, axes = 8, ()
    elif data.dtype.names is not None:
        bitpix, axes = 8, (data.dtype.itemsize, len(data))
    else:
        bitpix, axes = _BITPIX[data.dtype.str[1:]], data.shape[::-1]
    table = data is not None and data.dtype.names is not None
    if primary:
        images = [card("SIMPLE", True, "conforms to FITS standard")]
    else:
        images = [card("XTENSION", "BINTABLE" if table else "IMAGE",
                       "binary table extension" if table else "Image extension")]
    images.append(card("BITPIX", bitpix, "array data type"))
    images.append(card("NAXIS", len(axes), "number of array dimensions"))
    for n, length in enumerate(axes, start=1):
        images.append(card(f"NAXIS{n}", length, f"length of dimension {n}" if table else None))
    if primary:
        images.append(card("EXTEND", True))
    else:
        images.append(card("PCOUNT", 0, "number of group parameters" if table
                           else "number of parameters"))
        images.append(card("GCOUNT", 1, "number of groups"))
    if table:
        images.append(card("TFIELDS", len(data.dtype.names), "number of table fields"))
    return images


def _checksum(raw, total=0):
    """Add the bytes of ``raw`` (uint8) to a 32-bit ones' complement sum of big-endian words."""
    whole = len(raw) - len(raw) % 4
    step = 1 << 32  # 2**30 words: their uint64 sum cannot overflow
    for start in range(0, whole, step):
        total += int(raw[start:min(start + step, whole)].view(">u4").sum(dtype=np.uint64))
    if whole < len(raw):  # the last word, padded with zeros
        total += int.from_bytes(raw[whole:].tobytes().ljust(4, b"\0"), "big")
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


_EXCLUDED = frozenset(b":;<=>?@[\\]^_`")


def _encode_checksum(total):
    """Return the 16 ASCII characters of the ``CHECKSUM`` value of a ones' complement sum."""
    value = ~total & 0xFFFFFFFF
    chars = bytearray(16)
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        codes = [quotient + remainder, quotient, quotient, quotient]
        for j in (0, 2):  # no punctuation: move one unit between the pair
            while codes[j] in _EXCLUDED or codes[j + 1] in _EXCLUDED:
                codes[j] += 1
                codes[j + 1] -= 1
        for j in range(4):
            chars[4 * j + i] = codes[j]
    return (chars[15:] + chars[:15]).decode("ascii")  # rotated by one character


def _padded(length):
    return -length % _BLOCK


def write_hdu(stream, cards, data=None, *, primary=False, when):
    """Write one HDU to a binary stream, with ``CHECKSUM`` and ``DATASUM``.

    Parameters
    ----------
    stream : binary file
        Open for writing, positioned at the end of the previous HDU.
    cards : Cards
        The header cards after the mandatory ones (``EXTNAME`` included);
        not changed.
    data : `numpy.ndarray`, optional
        An image (written big-endian, in the FITS axis order: the last axis
        is ``NAXIS1``) or a table's rows (a structured array of big-endian
        fields).  None for a primary HDU without data.
    primary : bool, optional
        Write the primary HDU (``SIMPLE``) rather than an extension.
    when : str
        Time stamp for the comments of the checksum cards, as astropy writes
        them (``YYYY-MM-DDThh:mm:ss``).
    """
    if data is None:
        payload = np.zeros(0, np.uint8)
    else:
        if data.dtype.names is None:
            data = data.astype(data.dtype.newbyteorder(">"), copy=False)
        payload = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    datasum = _checksum(payload)
    body = cards.copy()
    body.set("CHECKSUM", "0" * 16, f"HDU checksum updated {when}")
    body.set("DATASUM", str(datasum), f"data unit checksum updated {when}")
    mandatory = _mandatory(data, primary)
    images = [*mandatory, *body.images, "END".ljust(80)]
    header = "".join(images)
    header = (header + " " * _padded(len(header))).encode("ascii")
    value_at = (sum(len(image) for image in images[:len(mandatory) + body.index("CHECKSUM")])
                + len("CHECKSUM= '"))
    encoded = _encode_checksum(_checksum(np.frombuffer(header, np.uint8), datasum))
    stream.write(header[:value_at] + encoded.encode("ascii") + header[value_at + 16:])
    if len(payload):
        stream.write(payload)
        stream.write(b"\0" * _padded(len(payload)))
