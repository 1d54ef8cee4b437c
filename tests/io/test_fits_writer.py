"""Tests of the small FITS serializer behind `write_deblended` (``io/_fits_writer.py``)."""

import shutil
import subprocess
import warnings

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astrodeblend.io._fits_writer import Cards, card, write_hdu

_KEYWORDS = ["BANDS", "BUNIT", "CUTX0", "FLUX", "EXTNAME", "OBJECT"]
_operation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(_KEYWORDS),
              st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False),
                        st.text("abc xyz", max_size=90), st.booleans()),
              st.one_of(st.none(), st.text("a comment", max_size=20))),
    st.tuples(st.sampled_from(["COMMENT", "HISTORY"]), st.text("note 12", max_size=100)),
)


@settings(max_examples=150, deadline=None)
@given(operations=st.lists(_operation, max_size=14))
def test_cards_are_placed_and_formatted_as_astropy_header_does(operations):
    header, cards = fits.Header(), Cards()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long comments cut
        for operation in operations:
            if operation[0] == "set":
                _, keyword, value, comment = operation
                header[keyword] = value if comment is None else (value, comment)
                cards.set(keyword, value, comment)
            elif operation[0] == "COMMENT":
                header.add_comment(operation[1])
                cards.add_commentary("COMMENT", operation[1])
            else:
                header.add_history(operation[1])
                cards.add_commentary("HISTORY", operation[1])
        assert cards.images == [str(c) for c in header.cards]
        for keyword in ("COMMENT", "HISTORY"):
            assert cards.commentary(keyword) == [str(v) for v in header.get(keyword, [])]


def test_cards_from_header_drop_blank_cards_at_the_end_only():
    header = fits.Header([("OBJECT", "m51"), ("", ""), ("HISTORY", "read"), ("", ""), ("", "")])
    cards = Cards.from_header(header)
    assert cards.images == [str(c) for c in header.cards][:3]
    cards.set("BANDS", "g,r")  # before the commentary and the blank card among it
    assert [image[:8].rstrip() for image in cards.images] == ["OBJECT", "BANDS", "", "HISTORY"]


def test_card_is_astropy_formatting_and_not_cached_for_floats():
    assert card("FLUX", -0.0) != card("FLUX", 0.0)
    assert card("X", 1) != card("X", True)
    assert card("ADBMODEL", "x" * 100, "model") == str(fits.Card("ADBMODEL", "x" * 100, "model"))
    assert len(card("ADBMODEL", "x" * 100)) % 80 == 0


@settings(max_examples=400, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False),
       comment=st.one_of(st.none(), st.text(max_size=70)),
       keyword=st.sampled_from(["FLUX", "CRVAL1", "X_CENT", "DEC_CENT", "CD1_1"]))
def test_float_cards_are_built_as_astropy_formats_them(value, comment, keyword):
    """The direct float card is astropy's image (long or odd comments go to astropy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        try:
            expected = str(fits.Card(keyword, value, comment))
        except ValueError as exc:  # a comment astropy refuses: the same error from card
            with pytest.raises(ValueError, match=str(exc)[:20]):
                card(keyword, value, comment)
            return
        assert card(keyword, value, comment) == expected


def test_float_cards_astropy_refuses_are_refused():
    with pytest.raises(ValueError):
        card("FLUX", float("nan"))
    # commentary and lower-case keywords are astropy's to format
    assert card("HISTORY", 1.5) == str(fits.Card("HISTORY", 1.5))
    assert card("flux", 2.5) == str(fits.Card("flux", 2.5))


def _table(n_rows):
    rows = np.zeros(n_rows, dtype=[("id", ">i8"), ("flux", ">f8", (3,)), ("flag", "u1"),
                                   ("name", "S3")])
    rows["id"] = np.arange(n_rows)
    rows["flux"] = np.arange(3 * n_rows).reshape(n_rows, 3) / 7
    rows["flag"] = [ord("T"), ord("F")] * (n_rows // 2) + [ord("T")] * (n_rows % 2)
    rows["name"] = [b"a", b"bcd"] * (n_rows // 2) + [b""] * (n_rows % 2)
    cards = Cards()
    for n, (name, form) in enumerate((("id", "K"), ("flux", "3D"), ("flag", "L"),
                                      ("name", "3A")), start=1):
        cards.set(f"TTYPE{n}", name)
        cards.set(f"TFORM{n}", form)
    cards.set("EXTNAME", "TABLE", "extension name")
    return cards, rows


@pytest.mark.parametrize("n_rows", [0, 3])
def test_write_hdu_every_kind_reads_back_with_valid_checksums(tmp_path, n_rows):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (1, 7)).astype(np.uint8),  # 7 bytes: not whole words
              rng.integers(-300, 300, (3, 5)).astype(np.int16),
              rng.integers(-2**31, 2**31, (2, 3, 4)).astype(np.int32),
              rng.integers(-2**40, 2**40, (4,)).astype(">i8"),
              rng.normal(size=(5, 6)).astype(np.float32),
              np.broadcast_to(np.float64(np.pi), (2, 3))]  # not contiguous
    path = tmp_path / "kinds.fits"
    primary = Cards([card("ORIGIN", "test"), card("HISTORY", "made here")])
    table_cards, rows = _table(n_rows)
    with open(path, "xb") as stream:
        write_hdu(stream, primary, primary=True, when="2024-01-02T03:04:05")
        for i, image in enumerate(images, start=1):
            cards = Cards([card("COMMENT", "an image")])
            cards.set("EXTNAME", "IMAGE", "extension name")
            cards.set("EXTVER", i, "extension value")
            write_hdu(stream, cards, image, when="2024-01-02T03:04:05")
        write_hdu(stream, table_cards, rows, when="2024-01-02T03:04:05")
    assert path.stat().st_size % 2880 == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path, checksum=True) as hdul:
            assert len(hdul) == len(images) + 2
            for hdu in hdul:
                assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1, hdu.name
                assert hdu.header.comments["CHECKSUM"] == "HDU checksum updated 2024-01-02T03:04:05"
            hdul.verify("exception")
            assert hdul[0].header["HISTORY"][0] == "made here"
            for hdu, image in zip(hdul[1:-1], images, strict=True):
                assert hdu.data.dtype == image.dtype.newbyteorder(">")
                np.testing.assert_array_equal(hdu.data, image)
            table = hdul[-1].data
            np.testing.assert_array_equal(table["id"], rows["id"])
            np.testing.assert_array_equal(table["flux"], rows["flux"])
            np.testing.assert_array_equal(table["flag"], rows["flag"] == ord("T"))
            assert list(table["name"]) == [v.decode() for v in rows["name"]]
            # astropy itself writes the very same cards and bytes
            again = tmp_path / "again.fits"
            fits.HDUList([h.copy() for h in hdul]).writeto(again, checksum=True,
                                                           output_verify="exception")
    with fits.open(path) as ours, fits.open(again) as theirs:
        for mine, astropys in zip(ours, theirs, strict=True):
            keep = [c for c in mine.header.cards if c.keyword not in ("CHECKSUM", "DATASUM")]
            assert [c.image for c in keep] == [
                c.image for c in astropys.header.cards if c.keyword not in ("CHECKSUM", "DATASUM")]
    raw, raw_again = path.read_bytes(), again.read_bytes()
    assert len(raw) == len(raw_again)
    if shutil.which("fitsverify"):
        run = subprocess.run(["fitsverify", "-q", str(path)], capture_output=True, text=True)
        assert "verification OK" in run.stdout, run.stdout


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=64))
def test_checksum_of_any_bytes_verifies(tmp_path, data):
    path = tmp_path / "bytes.fits"
    with open(path, "wb") as stream:
        write_hdu(stream, Cards(), None, primary=True, when="2024-01-02T03:04:05")
        write_hdu(stream, Cards(), np.frombuffer(data, np.uint8).reshape(1, -1),
                  when="2024-01-02T03:04:05")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path, checksum=True) as hdul:
            assert hdul[1].verify_checksum() == 1 and hdul[1].verify_datasum() == 1
            assert hdul[1].data.tobytes() == data
