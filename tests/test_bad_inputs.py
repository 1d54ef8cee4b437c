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

from astrodeblend import AstrodeblendError, DeblendResult, GalaxyImage, WriteError
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
