"""Issue 9: a corpus of bad inputs that every reader, the writer and ``info`` must survive.

Each bad input is built in its own folder.  For each one:

* `read_image` raises an `AstrodeblendError` whose one-line message names the
  file and the problem, and no warning escapes;
* ``astrodeblend info FILE`` returns 2 and prints exactly one stderr line,
  without a traceback;
* the input's sha256 is unchanged and no file is left behind in its folder.

A second list holds awkward but valid inputs (NaN in part, 1x1 images, ...)
that must load, and a third the writer's bad output paths.  The summary line
is printed at the end (``pytest -s`` shows it).
"""

import gzip
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from astrodeblend import AstrodeblendError, DeblendResult, GalaxyImage, WriteError, batch
from astrodeblend.batch import LOCK_NAME, LOG_NAME, deblend_files
from astrodeblend.cli import main
from astrodeblend.io import read_image, sha256_file, write_deblended

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -------------------------------------------------------------- file builders
def hand_fits(path, cards, data=b"", *, end=True, pad=True):
    """Write a FITS file from raw header cards (no validation by astropy)."""
    text = "".join(f"{c:<80}"[:80] for c in cards) + ("END".ljust(80) if end else "")
    if pad:
        text = text.ljust(-(-len(text) // 2880) * 2880)
    raw = text.encode("ascii") + data
    if pad and data:
        raw += b"\0" * (-len(data) % 2880)
    Path(path).write_bytes(raw)


def card(key, value):
    if isinstance(value, bool):
        value = "T" if value else "F"
    elif isinstance(value, str):
        value = f"'{value}'"
    return f"{key:<8}= {value!s:>20}"


def plane(h=16, w=16):
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-np.hypot(xx - w / 2, yy - h / 2) / 3).astype(np.float32)


def good_fits(path, data=None, header=None):
    fits.PrimaryHDU(plane() if data is None else data, header=header).writeto(path)


def wcs_header(**changes):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = 8.0, 8.0
    h["CDELT1"], h["CDELT2"] = -5e-5, 5e-5
    for k, v in changes.items():
        h[k] = v
    return h


def png_bytes(mode="RGB", size=(16, 16)):
    import io

    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def jpg_bytes(size=(32, 32)):
    import io

    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def fits_bytes(data=None, header=None):
    import io

    buffer = io.BytesIO()
    fits.PrimaryHDU(plane() if data is None else data, header=header).writeto(buffer)
    return buffer.getvalue()


# Each builder takes a folder and returns (path, read_image kwargs).
def _b(name, suffix, content):
    def build(folder):
        path = folder / f"{name}{suffix}"
        path.write_bytes(content() if callable(content) else content)
        return path, {}
    return build


def _hand(name, cards, data=b"", **kw):
    def build(folder):
        path = folder / f"{name}.fits"
        hand_fits(path, cards, data, **kw)
        return path, {}
    return build


def _fits(name, data=None, header=None, hdu=None, suffix=".fits"):
    def build(folder):
        path = folder / f"{name}{suffix}"
        good_fits(path, data, header)
        return path, ({} if hdu is None else {"hdu": hdu})
    return build


def _mef(name, hdu):
    def build(folder):
        path = folder / f"{name}.fits"
        table = fits.BinTableHDU.from_columns([fits.Column("x", "D", array=[1.0, 2.0])],
                                              name="CAT")
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(plane(), name="SCI", ver=1),
                      fits.ImageHDU(plane(), name="SCI", ver=2), table]).writeto(path)
        return path, {"hdu": hdu}
    return build


def _table_only(folder):
    path = folder / "catalog.fits"
    table = fits.BinTableHDU.from_columns([fits.Column("ra", "D", array=[1.0, 2.0])])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path, {}


def _directory(folder):
    path = folder / "images.fits"
    path.mkdir()
    return path, {}


def _missing(folder):
    return folder / "missing.fits", {}


def _missing_dir(folder):
    return folder / "no_such_folder" / "img.fits", {}


def _broken_symlink(folder):
    path = folder / "dangling.fits"
    path.symlink_to(folder / "gone.fits")
    return path, {}


def _unreadable(folder):
    path = folder / "secret.fits"
    good_fits(path)
    path.chmod(0o000)
    return path, {}


def _truncate(name, suffix, content, keep):
    def build(folder):
        raw = content()
        path = folder / f"{name}{suffix}"
        path.write_bytes(raw[: keep(len(raw))])
        return path, {}
    return build


def _mask_wrong_shape(folder):
    path = folder / "badmask.fits"
    fits.HDUList([fits.PrimaryHDU(plane()),
                  fits.ImageHDU(np.zeros((4, 4), np.uint8), name="MASK")]).writeto(path)
    return path, {}


def _gz_garbage(folder):
    path = folder / "garbage.fits.gz"
    path.write_bytes(gzip.compress(b"this is not a FITS file at all" * 20))
    return path, {}


def _gz_truncated(folder):
    path = folder / "cut.fits.gz"
    raw = gzip.compress(fits_bytes(np.random.default_rng(1).random((64, 64)).astype("f4")))
    path.write_bytes(raw[: len(raw) // 2])
    return path, {}


def _fz_truncated(folder):
    import io

    buffer = io.BytesIO()
    data = np.random.default_rng(2).random((64, 64)).astype("f4")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(buffer)
    raw = buffer.getvalue()
    path = folder / "cut.fits.fz"
    path.write_bytes(raw[: len(raw) - 2880 - 100])
    return path, {}


# ------------------------------------------------- issue 16: small files, huge claims
def _raw_header(cards):
    text = "".join(f"{c:<80}"[:80] for c in cards) + "END".ljust(80)
    return text.ljust(-(-len(text) // 2880) * 2880).encode("ascii")


def gz_fits_bomb(path, nx, ny):
    """A valid .fits.gz of ny x nx float32 zeros: gzip members of 16 MiB of zeros each."""
    header = _raw_header([card("SIMPLE", True), card("BITPIX", -32), card("NAXIS", 2),
                          card("NAXIS1", nx), card("NAXIS2", ny)])
    n_bytes = 4 * nx * ny
    n_bytes += -n_bytes % 2880
    chunk = 1 << 24
    member = gzip.compress(b"\0" * chunk, mtime=0)
    n_members, rest = divmod(n_bytes, chunk)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(header, mtime=0))
        for _ in range(n_members):
            handle.write(member)
        if rest:
            handle.write(gzip.compress(b"\0" * rest, mtime=0))


def fz_bomb(path, nx, ny, *, tile_rows=1):
    """A valid tile-compressed (GZIP_1) float32 image of zeros; all tiles share one block.

    ``tile_rows`` must divide ``ny``.
    """
    tile = gzip.compress(b"\0" * (4 * nx * tile_rows), mtime=0)
    n_tiles = -(-ny // tile_rows)
    cards = ["XTENSION= 'BINTABLE'", card("BITPIX", 8), card("NAXIS", 2), card("NAXIS1", 8),
             card("NAXIS2", n_tiles), card("PCOUNT", len(tile)), card("GCOUNT", 1),
             card("TFIELDS", 1), "TTYPE1  = 'COMPRESSED_DATA'", f"TFORM1  = '1PB({len(tile)})'",
             card("ZIMAGE", True), card("ZBITPIX", -32), card("ZNAXIS", 2),
             card("ZNAXIS1", nx), card("ZNAXIS2", ny), card("ZTILE1", nx),
             card("ZTILE2", tile_rows), "ZCMPTYPE= 'GZIP_1  '"]
    table = np.tile(np.array([len(tile), 0], ">i4"), n_tiles).tobytes() + tile
    table += b"\0" * (-len(table) % 2880)
    primary = _raw_header([card("SIMPLE", True), card("BITPIX", 8), card("NAXIS", 0),
                           card("EXTEND", True)])
    Path(path).write_bytes(primary + _raw_header(cards) + table)


def png_bomb(path, width, height, *, rgb=True):
    """A valid PNG of black pixels, a few hundred KB, made in a blink.

    Its zlib stream repeats one fully flushed deflate segment of 64 rows (a
    full flush makes a segment independent of the data before it).
    """
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    row = b"\0" * (1 + width * (3 if rgb else 1))
    n_blocks, rest = divmod(height, 64)
    block = row * 64
    comp = zlib.compressobj(9)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.compress(row * rest) + comp.flush()
    adler = 1
    for _ in range(n_blocks):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    body = (first + again * (n_blocks - 1) if n_blocks else b"") + tail[:-4]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if rgb else 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                           + chunk(b"IDAT", body + struct.pack(">I", adler))
                           + chunk(b"IEND", b""))


def jpg_claiming(width, height):
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    import struct

    raw = bytearray(jpg_bytes((16, 16)))
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def _bomb(name, suffix, make, *args, **kwargs):
    def build(folder):
        path = folder / f"{name}{suffix}"
        make(path, *args, **kwargs)
        return path, {}
    return build


def _mef_bomb(folder):
    """A small primary image, then an extension that claims 30000 x 30000 (gzip)."""
    path = folder / "mefbomb.fits.gz"
    small = fits_bytes()
    ext = _raw_header(["XTENSION= 'IMAGE   '", card("BITPIX", -32), card("NAXIS", 2),
                       card("NAXIS1", 30000), card("NAXIS2", 30000), card("PCOUNT", 0),
                       card("GCOUNT", 1), "EXTNAME = 'SCI     '"])
    path.write_bytes(gzip.compress(small + ext + b"\0" * 2880 * 4, mtime=0))
    return path, {}


def _gif_named_png(folder):
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    path = folder / "animated.png"
    path.write_bytes(buffer.getvalue())
    return path, {}


_TB = "NAXIS1  = 1000000000"
_BASE = [card("SIMPLE", True), card("BITPIX", -32)]

#: name -> (builder, regex that the message must match)
BAD_INPUTS = {
    "zero-byte FITS": (_b("empty", ".fits", b""), r"empty"),
    "zero-byte JPG": (_b("empty", ".jpg", b""), r"empty"),
    "zero-byte PNG": (_b("empty", ".png", b""), r"empty"),
    "zero-byte fits.gz": (_b("empty", ".fits.gz", b""), r"empty"),
    "FITS header cut at 1000 bytes": (
        _truncate("hdrcut", ".fits", fits_bytes, lambda n: 1000), r"corrupt"),
    "FITS data cut in half": (
        _truncate("datacut", ".fits", lambda: fits_bytes(np.ones((64, 64), "f4")),
                  lambda n: n // 2), r"truncated"),
    "FITS header only, data missing": (
        _truncate("nodata", ".fits", lambda: fits_bytes(np.ones((64, 64), "f4")),
                  lambda n: 2880), r"truncated"),
    "FITS without END card": (
        _hand("noend", [*_BASE, card("NAXIS", 2), card("NAXIS1", 4), card("NAXIS2", 4)],
              b"\0" * 64, end=False), r"corrupt|truncated"),
    "JPG cut in half": (_truncate("half", ".jpg", jpg_bytes, lambda n: n // 2),
                        r"corrupt or truncated"),
    "JPG of 10 bytes": (_truncate("stub", ".jpg", jpg_bytes, lambda n: 10),
                        r"corrupt or truncated"),
    "PNG cut in half": (_truncate("half", ".png", png_bytes, lambda n: n // 2),
                        r"corrupt or truncated"),
    "JPG magic then garbage": (
        _b("garbage", ".jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4),
        r"corrupt or truncated"),
    "random bytes named .fits": (
        _b("random", ".fits", lambda: np.random.default_rng(3).bytes(5000)), r"not a FITS file"),
    "text named .jpg": (_b("notes", ".jpg", b"hello, I am text\n"), r"corrupt JPG"),
    "GIF named .png": (_gif_named_png, r"corrupt PNG"),
    "unsupported .txt": (_b("readme", ".txt", b"plain text\n"), r"unsupported file type"),
    "unsupported .npy": (
        _b("array", ".npy", lambda: b"\x93NUMPY" + b"\0" * 100), r"unsupported file type"),
    "gzip garbage named .fits.gz": (_gz_garbage, r"corrupt|not a FITS"),
    "fits.gz cut in half": (_gz_truncated, r"corrupt|truncated"),
    "tile-compressed .fz cut short": (_fz_truncated, r"corrupt|truncated|no image"),
    "FITS with only a table": (_table_only, r"no image data"),
    "NAXIS = 0": (_hand("naxis0", [*_BASE, card("NAXIS", 0)]), r"no image data"),
    "NAXIS2 = 0": (_hand("zeroaxis", [*_BASE, card("NAXIS", 2), card("NAXIS1", 4),
                                      card("NAXIS2", 0)]), r"no image data"),
    "1-D spectrum": (_fits("spectrum", np.ones(50, "f4")), r"1-D"),
    "4-D hypercube": (_fits("hyper", np.ones((2, 2, 4, 4), "f4")), r"4-D"),
    "5-D": (_fits("five", np.ones((2, 1, 1, 3, 3), "f4")), r"5-D"),
    "header claims terabytes": (
        _hand("huge", [*_BASE, card("NAXIS", 3), _TB, "NAXIS2  = 1000000000",
                       card("NAXIS3", 3)], b"\0" * 2880), r"more than the limit"),
    "header claims 2**31 + 1 pixels": (
        _hand("justover", [card("SIMPLE", True), card("BITPIX", 8), card("NAXIS", 2),
                           card("NAXIS1", 2**31 + 1), card("NAXIS2", 1)], b"\0" * 2880),
        r"more than the limit"),
    "negative NAXIS1": (
        _hand("negative", [*_BASE, card("NAXIS", 2), card("NAXIS1", -5), card("NAXIS2", 4)]),
        r"corrupt|invalid NAXIS1|bad header"),
    "NAXIS is a string": (
        _hand("naxisstr", [*_BASE, card("NAXIS", "two")]), r"corrupt|invalid NAXIS|bad header"),
    "BITPIX = 12": (
        _hand("bitpix", [card("SIMPLE", True), card("BITPIX", 12), card("NAXIS", 2),
                         card("NAXIS1", 4), card("NAXIS2", 4)], b"\0" * 2880),
        r"BITPIX|corrupt"),
    "BSCALE is a string": (
        _hand("bscale", [card("SIMPLE", True), card("BITPIX", 16), card("NAXIS", 2),
                         card("NAXIS1", 4), card("NAXIS2", 4), card("BSCALE", "abc")],
              b"\0" * 2880), r"BSCALE"),
    "BSCALE = 0": (
        _hand("bscale0", [card("SIMPLE", True), card("BITPIX", 16), card("NAXIS", 2),
                          card("NAXIS1", 4), card("NAXIS2", 4), card("BSCALE", 0.0)],
              b"\0" * 2880), r"BSCALE = 0"),
    "NaN everywhere": (_fits("allnan", np.full((8, 8), np.nan, "f4")), r"no finite pixel"),
    "Inf everywhere": (_fits("allinf", np.full((8, 8), np.inf, "f4")), r"no finite pixel"),
    "NaN and -Inf everywhere": (
        _fits("mixed", np.where(np.eye(8, dtype=bool), np.nan, -np.inf).astype("f4")),
        r"no finite pixel"),
    "NaN cube": (_fits("nancube", np.full((3, 8, 8), np.nan, "f4")), r"no finite pixel"),
    "CTYPE RA---XXX": (
        _fits("xxx", header=wcs_header(CTYPE1="RA---XXX", CTYPE2="DEC--XXX")),
        r"invalid WCS.*projection"),
    "CDELT = 0": (_fits("cdelt0", header=wcs_header(CDELT1=0.0)), r"invalid WCS"),
    "singular CD matrix": (
        _fits("cd0", header=wcs_header(CD1_1=0.0, CD1_2=0.0, CD2_1=0.0, CD2_2=0.0)),
        r"invalid WCS"),
    "Dec = 200 deg": (_fits("dec200", header=wcs_header(CRVAL2=200.0)), r"invalid WCS"),
    "MASK extension of the wrong shape": (_mask_wrong_shape, r"MASK.*shape"),
    "hdu='NOPE'": (_mef("nope", "NOPE"), r"no HDU named 'NOPE'"),
    "hdu=7 out of range": (_mef("range", 7), r"no HDU 7"),
    "hdu=-9 out of range": (_mef("negative_hdu", -9), r"no HDU -9"),
    "hdu is a table": (_mef("tablehdu", "CAT"), r"BinTableHDU, not an image"),
    "hdu=('SCI', 3) wrong version": (_mef("version", ("SCI", 3)), r"no HDU named 'SCI,3'"),
    "hdu=0 is empty": (_mef("emptyprimary", 0), r"no image data"),
    "a directory": (_directory, r"is a folder"),
    "a missing path": (_missing, r"no such file"),
    "a path in a missing folder": (_missing_dir, r"no such file"),
    "a dangling symlink": (_broken_symlink, r"no such file"),
    # issue 16, point 1: a few MB that decode to many GB
    "gzip bomb: 30000 x 30000 float32 in 3.5 MB": (
        _bomb("gzbomb", ".fits.gz", gz_fits_bomb, 30000, 30000),
        r"claims 900,000,000 pixels .*more than the limit"),
    "tile-compressed bomb: 40000 x 40000 in 330 KB": (
        _bomb("fzbomb", ".fits.fz", fz_bomb, 40000, 40000),
        r"HDU 1 claims 1,600,000,000 pixels .*more than the limit"),
    "tile-compressed: one 12000 x 12000 tile": (
        _bomb("bigtile", ".fits.fz", fz_bomb, 12000, 12000, tile_rows=12000),
        r"more than the limit"),
    "PNG bomb: 13000 x 13000 RGB in 500 KB": (
        _bomb("pngbomb", ".png", png_bomb, 13000, 13000), r"PNG claims 507,000,000 pixels"),
    "JPG claiming 60000 x 60000 (beyond Pillow's own bomb limit)": (
        _b("jpgbomb", ".jpg", lambda: jpg_claiming(60000, 60000)),
        r"JPEG claims 10,800,000,000 pixels"),
    "gzip MEF: small primary, bomb extension": (_mef_bomb, r"HDU 1 \(SCI\) claims"),
    # issue 16, point 8: finite extremes
    "float32 values near 3e38": (
        _fits("huge32", (plane() * 3e38).astype("f4")), r"values up to 3e\+38"),
    "float64 values of 1e300": (
        _fits("huge64", plane().astype("f8") * 1e300), r"values up to 1e\+300"),
    "int64 values of 9e18": (
        _fits("huge_int", (plane() * 9e18).astype(">i8")), r"values up to 9e\+18"),
}
if not IS_ROOT:  # root reads any file whatever its permissions
    BAD_INPUTS["unreadable file (chmod 000)"] = (_unreadable, r"cannot (read|access)")

#: awkward but valid inputs: they must load
EDGE_INPUTS = {
    "NaN in part": (_fits("somenan", np.where(np.eye(16, dtype=bool), np.nan, plane())),
                    lambda im: im.mask is not None and im.mask.sum() == 16),
    "+Inf and -Inf in part": (
        _fits("someinf", np.where(np.eye(16, dtype=bool)[::-1], np.inf, -plane())
              .astype("f4")), lambda im: im.mask.sum() == 16),
    "one NaN band of a cube": (
        _fits("oneband", np.stack([plane(), np.full((16, 16), np.nan, "f4")])),
        lambda im: im.mask[1].all() and not im.mask[0].any()),
    "1x1 FITS": (_fits("tiny", np.ones((1, 1), "f4")), lambda im: im.shape == (1, 1, 1)),
    "1x1 JPG": (_b("tiny", ".jpg", lambda: jpg_bytes((1, 1))), lambda im: im.shape == (3, 1, 1)),
    "1x1 grey PNG": (_b("tiny", ".png", lambda: png_bytes("L", (1, 1))),
                     lambda im: im.shape == (1, 1, 1)),
    "RGBA PNG": (_b("alpha", ".png", lambda: png_bytes("RGBA")), lambda im: im.n_bands == 3),
    "degenerate 4-D (1, 1, H, W)": (_fits("radio", plane()[None, None]),
                                    lambda im: im.shape == (1, 16, 16)),
    "FITS without a .fits name": (_b("noext", "", fits_bytes), lambda im: im.shape == (1, 16, 16)),
    # issue 16, point 3: any name a file system allows, escaped in ORIGFILE
    "non-ASCII name café.jpg": (
        _b("café", ".jpg", jpg_bytes), lambda im: im.meta["ORIGFILE"] == "caf%C3%A9.jpg"),
    "control characters in the name": (
        _b("tab\there\x01", ".fits", fits_bytes),
        lambda im: im.meta["ORIGFILE"] == "tab%09here%01.fits"),
    "a name of 150 characters (long-string card)": (
        _b("é" * 70 + "x", ".fits", fits_bytes),
        lambda im: im.meta["ORIGFILE"] == "%C3%A9" * 70 + "x.fits"),
}


# ------------------------------------------------------------------- the runs
def _snapshot(folder):
    return sorted(p.name for p in folder.iterdir())


def _hash(path):
    try:
        return sha256_file(path) if path.is_file() else None
    except AstrodeblendError:
        return None


def _cli_args(path, kwargs):
    args = ["info", str(path)]
    if "hdu" in kwargs:
        hdu = kwargs["hdu"]
        args += ["--hdu", ",".join(map(str, hdu)) if isinstance(hdu, tuple) else str(hdu)]
    return args


def _check_bad(name, build, pattern, folder, capsys):
    """Return a list of problems (empty when the case is handled perfectly)."""
    problems = []
    path, kwargs = build(folder)
    before_files, before_hash = _snapshot(folder), _hash(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            read_image(path, **kwargs)
            problems.append("read_image did not raise")
        except AstrodeblendError as exc:
            message = str(exc)
            if path.name not in message:
                problems.append(f"message does not name the file: {message!r}")
            if "\n" in message:
                problems.append(f"message is not one line: {message!r}")
            if not re.search(pattern, message):
                problems.append(f"message {message!r} does not match {pattern!r}")
        except Exception as exc:  # noqa: BLE001 - that is the crash we count
            problems.append(f"CRASH {type(exc).__name__}: {exc}")
    if caught:
        problems.append(f"warnings escaped: {[str(w.message)[:80] for w in caught]}")
    capsys.readouterr()
    try:
        status = main(_cli_args(path, kwargs))
    except BaseException as exc:  # noqa: BLE001
        problems.append(f"CLI CRASH {type(exc).__name__}: {exc}")
        status = None
    out = capsys.readouterr()
    if status != 2:
        problems.append(f"info returned {status}, not 2")
    err_lines = out.err.splitlines()
    if len(err_lines) != 1 or "Traceback" in out.err or out.out:
        problems.append(f"info printed stdout={out.out!r} stderr={out.err!r}")
    if _hash(path) != before_hash:
        problems.append("the input file changed")
    if _snapshot(folder) != before_files:
        problems.append(f"files left behind: {set(_snapshot(folder)) - set(before_files)}")
    return problems


@pytest.fixture(scope="module")
def report():
    return {"tried": 0, "handled": 0, "crashes": 0, "left": 0, "changed": 0}


def test_corpus_is_large_enough():
    assert len(BAD_INPUTS) >= 40


def test_bad_inputs(tmp_path, capsys, report):
    failures = {}
    for i, (name, (build, pattern)) in enumerate(BAD_INPUTS.items()):
        folder = tmp_path / f"case{i:02d}"
        folder.mkdir()
        problems = _check_bad(name, build, pattern, folder, capsys)
        report["tried"] += 1
        report["handled"] += not problems
        report["crashes"] += any("CRASH" in p for p in problems)
        report["left"] += any("left behind" in p for p in problems)
        report["changed"] += any("changed" in p for p in problems)
        if problems:
            failures[name] = problems
    with capsys.disabled():
        print(f"\n{report['tried']} bad inputs tried, {report['handled']} handled, "
              f"{report['crashes']} crashes, {report['left']} files left behind, "
              f"{report['changed']} inputs changed")
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


@pytest.mark.parametrize("name", list(EDGE_INPUTS))
def test_edge_inputs_load(name, tmp_path, capsys):
    build, check = EDGE_INPUTS[name]
    path, kwargs = build(tmp_path)
    before_files, before_hash = _snapshot(tmp_path), _hash(path)
    image = read_image(path, **kwargs)
    assert isinstance(image, GalaxyImage) and check(image)
    assert main(_cli_args(path, kwargs)) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1 and out.err == ""
    assert _hash(path) == before_hash and _snapshot(tmp_path) == before_files


# --------------------------------------------------------------- the writer
def _result():
    blend = GalaxyImage(plane(8, 8), source="in.fits")
    sources = blend.data[None]
    return DeblendResult(blend, sources, DeblendResult.make_catalog(blend, sources, [4], [4]),
                         np.ones((8, 8), int))


def _out_missing(folder):
    return folder / "missing" / "out.fits"


def _out_parent_is_file(folder):
    (folder / "afile").write_text("x")
    return folder / "afile" / "out.fits"


def _out_is_folder(folder):
    (folder / "out.fits").mkdir()
    return folder / "out.fits"


def _out_exists(folder):
    (folder / "out.fits").write_bytes(b"precious")
    return folder / "out.fits"


def _out_is_input(folder):
    good_fits(folder / "in.fits")
    return folder / "in.fits"


def _out_read_only(folder):
    sub = folder / "ro"
    sub.mkdir()
    sub.chmod(0o555)
    return sub / "out.fits"


BAD_OUTPUTS = {
    "output folder missing": (_out_missing, r"does not exist"),
    "output parent is a file": (_out_parent_is_file, r"cannot write|does not exist"),
    "output is a folder": (_out_is_folder, r"is a folder"),
    "output exists": (_out_exists, r"exists"),
    "output is the input": (_out_is_input, r"it is the input file"),
}
if not IS_ROOT:
    BAD_OUTPUTS["output folder read-only"] = (_out_read_only, r"permission denied")


@pytest.mark.parametrize("name", list(BAD_OUTPUTS))
def test_bad_outputs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blend's source 'in.fits' is relative
    build, pattern = BAD_OUTPUTS[name]
    out = build(tmp_path)
    before = {p: _hash(p) for p in tmp_path.rglob("*")}
    with pytest.raises(WriteError, match=pattern) as info:
        write_deblended(_result(), out)
    assert "\n" not in str(info.value)
    assert {p: _hash(p) for p in tmp_path.rglob("*")} == before


# ============================================================ issue 16, in depth
# Each point of the issue: a case built here, small on disk, handled with a
# one-line error or a correct result.  Batch runs use the fast segmentation
# method; the machinery is the one of the GAN.
def _blend(path, scale=1.0, header=None):
    yy, xx = np.mgrid[:48, :48]
    data = (np.exp(-np.hypot(xx - 18, yy - 24) / 3) + 0.6 * np.exp(-np.hypot(xx - 31, yy - 24) / 3)
            + np.random.default_rng(0).normal(0, 0.01, (48, 48)))
    fits.PrimaryHDU((data * scale).astype(np.float32), header=header).writeto(path)
    return path


def _run(argv, capsys):
    capsys.readouterr()
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, [line for line in out.err.splitlines() if line]


def _log_rows(folder):
    import csv

    with open(Path(folder) / "deblend_log.csv", newline="", encoding="utf-8",
              errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


def test_bomb_builders_make_valid_small_files(tmp_path):
    gz_fits_bomb(tmp_path / "g.fits.gz", 300, 200)
    fz_bomb(tmp_path / "f.fits.fz", 50, 30)
    fz_bomb(tmp_path / "t.fits.fz", 50, 30, tile_rows=6)
    png_bomb(tmp_path / "p.png", 100, 130)
    png_bomb(tmp_path / "q.png", 70, 64, rgb=False)
    assert read_image(tmp_path / "g.fits.gz").shape == (1, 200, 300)
    assert read_image(tmp_path / "f.fits.fz").shape == (1, 30, 50)
    assert read_image(tmp_path / "t.fits.fz").shape == (1, 30, 50)
    assert read_image(tmp_path / "p.png").shape == (3, 130, 100)
    assert read_image(tmp_path / "q.png").shape == (1, 64, 70)
    # the bombs of the corpus are small on disk
    gz_fits_bomb(tmp_path / "bomb.fits.gz", 30000, 30000)
    fz_bomb(tmp_path / "bomb.fits.fz", 40000, 40000)
    png_bomb(tmp_path / "bomb.png", 13000, 13000)
    sizes = {p.name: p.stat().st_size for p in tmp_path.glob("bomb.*")}
    assert max(sizes.values()) < 4e6, sizes


def test_pixel_limit_is_an_option(tmp_path, capsys, monkeypatch):
    path = _bomb("g", ".fits.gz", gz_fits_bomb, 300, 200)(tmp_path)[0]
    with pytest.raises(AstrodeblendError, match=r"claims 60,000 pixels .* limit of 1,000"):
        read_image(path, max_pixels=1000)
    with pytest.raises(AstrodeblendError, match="max_pixels must be a positive integer"):
        read_image(path, max_pixels=0)
    status, out, err = _run(["info", "--max-image-pixels", "1000", str(path)], capsys)
    assert status == 2 and not out and len(err) == 1 and "limit of 1,000" in err[0]
    assert _run(["info", str(path)], capsys)[0] == 0
    # Pillow's global limit is ours to set while a file is opened, and restored
    from PIL import Image

    png = tmp_path / "p.png"
    png_bomb(png, 300, 200)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert read_image(png).shape == (3, 200, 300)
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(AstrodeblendError, match=r"claims 180,000 pixels"):
        read_image(png, max_pixels=100_000)
    # deblend: the input fails before it is decoded; every input failed: exit 2
    status, out, err = _run(["deblend", str(path), "--output-dir", str(tmp_path / "out"),
                             "--method", "segmentation", "--no-progress",
                             "--max-image-pixels", "1000"], capsys)
    assert status == 2 and len(err) == 1 and "limit of 1,000" in err[0]


def test_bombs_stay_within_2_gib(tmp_path):
    """Every bomb of the corpus and every checkpoint bomb, in one fresh process."""
    import subprocess
    import sys

    paths = []
    for name in ("gzip bomb: 30000 x 30000 float32 in 3.5 MB",
                 "tile-compressed bomb: 40000 x 40000 in 330 KB",
                 "tile-compressed: one 12000 x 12000 tile",
                 "PNG bomb: 13000 x 13000 RGB in 500 KB",
                 "JPG claiming 60000 x 60000 (beyond Pillow's own bomb limit)",
                 "gzip MEF: small primary, bomb extension", "float64 values of 1e300"):
        folder = tmp_path / f"b{len(paths)}"
        folder.mkdir()
        paths.append(BAD_INPUTS[name][0](folder)[0])
    for changes in CHECKPOINT_BOMBS.values():
        paths.append(_checkpoint_bomb(tmp_path / f"c{len(paths)}.pt", changes))
    script = (  # VmHWM: peak memory of this process since exec (Linux); else ru_maxrss
        "import resource, sys\n"
        "from astrodeblend.errors import AstrodeblendError\n"
        "from astrodeblend.io import read_image\n"
        "from astrodeblend.pipeline import Deblender\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        Deblender.load(p, device='cpu') if p.endswith('.pt') else read_image(p)\n"
        "        print('LOADED', p)\n"
        "    except AstrodeblendError as exc:\n"
        "        print('REFUSED', exc)\n"
        "try:\n"
        "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "    print('MAXRSS', peak.split()[1])\n"
        "except (OSError, IndexError):\n"
        "    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    run = subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sum(line.startswith("REFUSED") for line in lines) == len(paths), run.stdout
    peak = int(lines[-1].split()[1]) * 1024  # KiB
    print(f"\n{len(paths)} bombs refused, peak memory {peak / 2**20:.0f} MiB")
    assert peak < 2 * 1024**3, f"peak memory {peak / 2**20:.0f} MiB"


# ---------------------------------------------------------------- point 2
CHECKPOINT_BOMBS = {
    "generator_depth 9": {"generator_depth": 9},
    "discriminator_channels 100000": {"discriminator_channels": 100000},
    "heatmap_sigma NaN": {"heatmap_sigma": float("nan")},
    "image_size -80": {"image_size": -80},
    "n_bands 0": {"n_bands": 0},
    "n_bands a string": {"n_bands": "3"},
    "within every range, 2e12 parameters": {"generator_channels": 1024, "generator_depth": 8},
    "with_sampler a number": {"with_sampler": 1},
}


def _checkpoint_bomb(path, changes):
    import torch

    torch.save({"format": "astrodeblend-checkpoint", "version": 1, "model_config": changes,
                "models": {"generator": {}, "detector": {}}}, path)
    return path


@pytest.mark.parametrize("name", list(CHECKPOINT_BOMBS))
def test_absurd_model_configs_are_refused(name, tmp_path, capsys):
    from astrodeblend.errors import CheckpointError
    from astrodeblend.pipeline import Deblender

    path = _checkpoint_bomb(tmp_path / "tiny.pt", CHECKPOINT_BOMBS[name])
    assert path.stat().st_size < 2000
    with pytest.raises(CheckpointError, match=r"tiny\.pt has an invalid model config") as info:
        Deblender.load(path, device="cpu")
    assert "\n" not in str(info.value)
    key = next(iter(CHECKPOINT_BOMBS[name]))
    assert key in str(info.value) or "parameters" in str(info.value)
    good = _blend(tmp_path / "in.fits")
    status, out, err = _run(["deblend", str(good), "--model", str(path), "--output-dir",
                             str(tmp_path / "out"), "--no-progress"], capsys)
    assert status == 2 and len(err) == 1 and "tiny.pt" in err[0], err


def test_checkpoint_declaring_gigabytes_is_not_loaded(tmp_path):
    import zipfile

    from astrodeblend._checkpoint import load_checkpoint
    from astrodeblend.errors import CheckpointError

    path = tmp_path / "zipbomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", b"\0" * 4096)
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"PK\x01\x02")  # central directory: uncompressed size at +24
    raw[entry + 24: entry + 28] = (3 * 10**9).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"zipbomb\.pt declares 3,000,000,000 bytes"):
        load_checkpoint(path)


def test_cuda_rng_states_on_fewer_gpus(monkeypatch):
    """A checkpoint of a 4-GPU run resumed on 1 GPU restores one state, drops three."""
    import torch

    from astrodeblend.train import loop

    state = dict(loop._rng_state(), cuda=[torch.zeros(16, dtype=torch.uint8)] * 4)
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append(device))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                        lambda states: pytest.fail("set_rng_state_all on missing GPUs"))
    loop._set_rng_state(state)
    assert restored == [0]


# ---------------------------------------------------------------- point 3
@pytest.mark.parametrize("name", ["café.fits", "tab\there\x01.fits", "日本.fits",
                                  "50%.fits", "x" * 120 + "é.fits"])
def test_any_file_name_goes_through_a_batch(name, tmp_path, capsys):
    path = _blend(tmp_path / name)
    out = tmp_path / "out"
    status, _, err = _run(["deblend", str(path), "--output-dir", str(out), "--method",
                           "segmentation", "--no-progress"], capsys)
    assert status == 0 and not err, err
    result = out / (name[: -len(".fits")] + "_deblended.fits")
    with fits.open(result) as hdul:
        prov = hdul[0].header["PROV1"]
        assert prov.isascii() and prov.isprintable()
        assert hdul["BLEND"].header["ORIGFILE"] == prov
    from astrodeblend.io import read_deblended
    from astrodeblend.utils import name_from_header

    assert name_from_header(prov) == name
    assert Path(read_deblended(result).blend.source).name == name
    # and a rerun recognises its own output
    status, outtext, err = _run(["deblend", str(path), "--output-dir", str(out), "--method",
                                 "segmentation", "--no-progress"], capsys)
    assert status == 0 and "1 skipped" in outtext, (outtext, err)


# ---------------------------------------------------------------- point 4
def test_relative_paths_reach_workers_in_another_folder(tmp_path, monkeypatch):
    import logging

    from distributed import Client, LocalCluster

    (tmp_path / "data").mkdir()
    _blend(tmp_path / "data" / "a.fits")
    _blend(tmp_path / "data" / "b.fits")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    # dashboard on a free port: no clash with another cluster of the suite on :8787
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        client.run(os.chdir, str(elsewhere))  # the workers live in another folder
        summary = deblend_files(["data/a.fits", "data/*.fits"], "out", method="segmentation",
                                client=client, progress=False)
        problems = client.run(os.getcwd)
    assert set(problems.values()) == {str(elsewhere)}
    assert (summary.n_done, summary.n_failed) == (2, 0), summary.failures
    assert sorted(p.name for p in (tmp_path / "out").glob("*.fits")) == [
        "a_deblended.fits", "b_deblended.fits"]
    assert not list(elsewhere.iterdir())


def test_output_folder_invisible_to_a_worker_is_found_first(tmp_path):
    calls = []

    class Client:  # a client whose workers cannot write the folder
        def run(self, function, folder):
            calls.append(folder)
            return {"tcp://10.0.0.7:4242": "does not exist", "tcp://10.0.0.8:4242": None}

    runner = batch._DaskRunner(None, None, client=Client())
    with pytest.raises(WriteError, match=r"out does not exist on Dask worker tcp://10.0.0.7"):
        runner.check_folder(tmp_path / "out")
    assert calls == [str(tmp_path / "out")]


# ---------------------------------------------------------------- point 5
def test_full_disk_while_writing_the_run_log(tmp_path, capsys, monkeypatch):
    import errno

    paths = [_blend(tmp_path / f"b{i}.fits") for i in range(4)]
    out = tmp_path / "out"
    real = batch._RunLog._raw_write
    calls = []

    def full_disk(self, data):
        calls.append(len(data))
        if len(calls) <= 3:  # the header line and two rows
            return real(self, data)
        real(self, bytes(data[: len(data) // 2]))  # half a row reaches the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch._RunLog, "_raw_write", full_disk)
    status, _, err = _run(["deblend", *map(str, paths), "--output-dir", str(out), "--method",
                           "segmentation", "--no-progress"], capsys)
    assert status == 2 and len(err) == 1 and "Traceback" not in "".join(err)
    assert "no space left on the device" in err[0] and "run log" in err[0]
    text = (out / LOG_NAME).read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 3  # header and two whole rows
    assert [row["status"] for row in _log_rows(out)] == ["done", "done"]
    assert not (out / LOCK_NAME).exists()
    monkeypatch.setattr(batch._RunLog, "_raw_write", real)  # space again: the run resumes
    status, outtext, err = _run(["deblend", *map(str, paths), "--output-dir", str(out),
                                 "--method", "segmentation", "--no-progress"], capsys)
    assert status == 0 and "1 deblended, 3 skipped" in outtext, (outtext, err)


# ---------------------------------------------------------------- point 6
def test_resume_of_inputs_that_carry_origf_cards(tmp_path, capsys):
    header = fits.Header()
    header["ORIGF1"], header["ORIGF2"] = "a.fits", "b.fits"  # from an earlier step
    header["ORIGFILE"] = "older.fits"
    path = _blend(tmp_path / "stack.fits", header=header)
    out = tmp_path / "out"
    argv = ["deblend", str(path), "--output-dir", str(out), "--method", "segmentation",
            "--no-progress"]
    assert _run(argv, capsys)[0] == 0
    with fits.open(out / "stack_deblended.fits") as hdul:
        assert hdul[0].header["PROV1"] == "stack.fits" and "PROV2" not in hdul[0].header
    status, outtext, err = _run(argv, capsys)
    assert status == 0 and "1 skipped" in outtext and not err, (outtext, err)


# ---------------------------------------------------------------- point 7
def test_second_run_into_a_locked_folder_is_refused(tmp_path, capsys):
    import json
    import socket

    path = _blend(tmp_path / "a.fits")
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                "started": "2026-01-01T00:00:00"}))
    status, _, err = _run(["deblend", str(path), "--output-dir", str(out), "--method",
                           "segmentation", "--no-progress"], capsys)
    assert status == 2 and len(err) == 1 and "in use by another astrodeblend run" in err[0]
    assert f"pid {os.getppid()}" in err[0]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written, no log
    assert lock.exists()


def test_stale_lock_is_taken_over(tmp_path, capsys):
    import json
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    path = _blend(tmp_path / "a.fits")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    status, outtext, err = _run(["deblend", str(path), "--output-dir", str(out), "--method",
                                 "segmentation", "--no-progress"], capsys)
    assert status == 0 and "1 deblended" in outtext
    assert len(err) == 1 and "removed the stale lock" in err[0]
    assert not (out / LOCK_NAME).exists()


def test_two_runs_at_once_into_one_folder(tmp_path):
    """Two real processes: one deblends everything, the other is refused; no failed rows."""
    import subprocess
    import sys

    paths = [_blend(tmp_path / f"b{i:02d}.fits") for i in range(12)]
    argv = [sys.executable, "-m", "astrodeblend", "deblend", *map(str, paths),
            "--output-dir", str(tmp_path / "out"), "--method", "segmentation", "--no-progress"]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # the second either waits its turn or is refused
    for code, _, err in results:
        if code == 2:
            assert "in use by another astrodeblend run" in err
    rows = _log_rows(tmp_path / "out")
    assert {row["status"] for row in rows} <= {"done", "skipped"}, rows
    assert len(list((tmp_path / "out").glob("*_deblended.fits"))) == 12


# ---------------------------------------------------------------- point 8
def test_flux_card_of_extreme_sources(tmp_path):
    blend = GalaxyImage(plane(8, 8), source="in.fits")
    sources = np.zeros((2, 1, 8, 8), np.float32)
    sources[:, 0, 2:5, 2:5] = 1.0
    catalog = DeblendResult.make_catalog(blend, sources, [3, 3], [3, 3])
    sources[0, 0, 2:5, 2:5] = np.float32(3e38)  # a float32 sum overflows, float64 does not
    result = DeblendResult(blend, sources, catalog, np.ones((8, 8), int))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = write_deblended(result, tmp_path / "o.fits")
    with fits.open(out) as hdul:
        assert hdul["SOURCE", 1].header["FLUX"] == pytest.approx(9 * 3e38, rel=1e-6)


# ---------------------------------------------------------------- point 9
def test_read_only_output_folder_is_found_before_any_work(tmp_path, capsys, monkeypatch):
    import errno

    calls = []
    monkeypatch.setattr(batch, "_process_group", lambda *a, **k: calls.append(a) or iter(()))
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK_NAME):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    path = _blend(tmp_path / "a.fits")
    status, _, err = _run(["deblend", str(path), "--output-dir", str(tmp_path / "ro"),
                           "--method", "segmentation", "--no-progress"], capsys)
    assert status == 2 and len(err) == 1 and "permission denied" in err[0]
    assert not calls


def test_a_result_named_as_input_is_reported(tmp_path, capsys):
    path = _blend(tmp_path / "a.fits")
    out = tmp_path / "out"
    assert _run(["deblend", str(path), "--output-dir", str(out), "--method", "segmentation",
                 "--no-progress"], capsys)[0] == 0
    result = out / "a_deblended.fits"
    status, _, err = _run(["deblend", str(result), "--output-dir", str(out), "--method",
                           "segmentation", "--no-progress"], capsys)
    assert status == 2 and len(err) == 1  # every input failed
    assert "is a result in the output folder, not an input" in err[0]
    # found through a folder, earlier results are still left out with a note
    status, outtext, err = _run(["deblend", str(out), str(path), "--output-dir", str(out),
                                 "--method", "segmentation", "--no-progress"], capsys)
    assert status == 0 and "ignored 1 earlier result" in err[0]


def test_exit_status_when_every_input_failed(tmp_path, capsys):
    (tmp_path / "a.fits").write_text("junk")
    (tmp_path / "b.fits").write_text("junk")
    status, _, err = _run(["deblend", str(tmp_path / "a.fits"), str(tmp_path / "b.fits"),
                           "--output-dir", str(tmp_path / "out"), "--method", "segmentation",
                           "--no-progress"], capsys)
    assert status == 2 and len(err) == 2
