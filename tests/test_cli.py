"""Tests of the ``astrodeblend`` command line: help texts, deblend options, messages."""

import io

import numpy as np
import pytest
from astropy.io import fits

from astrodeblend import batch
from astrodeblend.baselines import SegmentationDeblender
from astrodeblend.batch import parse_background
from astrodeblend.cli import build_parser, main
from astrodeblend.errors import InvalidInputError
from astrodeblend.utils import LineProgress, plural, progress

SUBCOMMANDS = ["info", "make-dataset", "train", "sample", "deblend", "evaluate", "demo"]


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def _blend_file(path, size=40):
    yy, xx = np.mgrid[:size, :size]
    plane = sum(np.exp(-0.5 * ((xx - x) ** 2 + (yy - size / 2) ** 2) / 6) for x in (14, 26))
    plane = plane + np.random.default_rng(1).normal(0, 0.01, plane.shape)
    fits.writeto(path, plane.astype(np.float32))
    return path


# -------------------------------------------------------------------- help
@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_description_defaults_and_an_example(command, capsys):
    text = _help(capsys, command)
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: astrodeblend {command}")
    description = rest.split("\n\n")[0]
    assert len(description.split()) >= 8  # a sentence, not an option list
    assert "examples:\n" in text
    examples = text.split("examples:\n", 1)[1].splitlines()
    commands = [line for line in examples if not line.startswith("    ")]  # no continuations
    assert commands and all(line.split()[0] in ("astrodeblend", "torchrun") for line in commands)
    assert max(map(len, examples)) <= 84  # fits the terminal and the docs' CLI page
    assert any(f"astrodeblend {command}" in line or "-m astrodeblend" in line
               for line in examples)
    assert "(default: None)" not in text and "(default: False)" not in text


def test_options_have_help_and_defaults(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    deblend = _help(capsys, "deblend")
    for option in ("--output-dir", "--workers", "--max-pixels", "--device", "--mode",
                   "--background", "--flux", "--full-frame"):
        assert option in deblend
    assert "(default: auto)" in deblend and "one more per 64 inputs" in " ".join(deblend.split())
    sample = _help(capsys, "sample")
    assert "(default: 16)" in sample and "random seed" in sample
    evaluate = " ".join(_help(capsys, "evaluate").split())
    assert "from: gan, segmentation, fluxshare" in evaluate
    assert "(default: astrodeblend-demo)" in " ".join(_help(capsys, "demo").split())


# ------------------------------------------------------- deblend options
def test_background_values_parse():
    assert parse_background("auto") == "auto"
    assert parse_background("AUTO") == "auto"
    assert parse_background("none") == 0.0
    assert parse_background("1,2,3") == [1.0, 2.0, 3.0]
    assert parse_background(" 0.5 ") == [0.5]
    assert parse_background("-1e-3,2") == [-0.001, 2.0]
    for bad in ("foo", "", "1,,2", "nan", "1,inf"):
        with pytest.raises(InvalidInputError, match="--background"):
            parse_background(bad)


def test_cli_options_parse():
    args = build_parser().parse_args(["deblend", "a.fits", "--output-dir", "o",
                                      "--background", "1,2,3", "--mode", "display",
                                      "--flux", "model", "--full-frame"])
    assert (args.background, args.mode, args.flux, args.full_frame) == \
        ("1,2,3", "display", "model", True)
    args = build_parser().parse_args(["deblend", "a.fits", "--output-dir", "o"])
    assert (args.background, args.mode, args.flux, args.full_frame) == \
        ("auto", "auto", None, False)


def test_bad_background_is_one_line_exit_2(tmp_path, capsys):
    path = _blend_file(tmp_path / "a.fits")
    status = main(["deblend", str(path), "--output-dir", str(tmp_path / "out"),
                   "--background", "foo", "--no-progress"])
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("astrodeblend: error: --background")
    assert "'foo'" in lines[0]
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_gan_options_with_a_baseline_are_refused(tmp_path, capsys):
    path = _blend_file(tmp_path / "a.fits")
    status = main(["deblend", str(path), "--output-dir", str(tmp_path / "out"),
                   "--method", "segmentation", "--mode", "display", "--no-progress"])
    assert status == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "mode apply to method 'gan' only" in err[0]
    # the defaults are fine with any method
    assert main(["deblend", str(path), "--output-dir", str(tmp_path / "out"),
                 "--method", "segmentation", "--background", "auto", "--no-progress"]) == 0


def test_options_reach_the_deblender_factory_and_the_writer(tmp_path, monkeypatch, capsys):
    calls, writes = [], []

    def fake_get_deblender(method, **kwargs):
        calls.append((method, kwargs))
        return SegmentationDeblender()

    def fake_write(result, path, *, overwrite=False, **kwargs):
        writes.append(kwargs)
        return real_write(result, path, overwrite=overwrite)

    import astrodeblend.io
    import astrodeblend.pipeline

    real_write = astrodeblend.io.write_deblended
    monkeypatch.setattr(astrodeblend.pipeline, "get_deblender", fake_get_deblender)
    monkeypatch.setattr(astrodeblend.io, "write_deblended", fake_write)
    batch._cached_deblender.cache_clear()
    path = _blend_file(tmp_path / "a.fits")
    try:
        assert main(["deblend", str(path), "--output-dir", str(tmp_path / "o1"),
                     "--mode", "display", "--background", "1,2,3", "--flux", "model",
                     "--full-frame", "--no-progress"]) == 0
        assert calls[-1] == ("gan", {"model": None, "device": "auto", "max_pixels": None,
                                     "mode": "display", "background": [1.0, 2.0, 3.0],
                                     "flux": "model"})
        assert writes[-1] == {"full_frame": True}
        # 'none' is a sky of 0; one value stays one value
        assert main(["deblend", str(path), "--output-dir", str(tmp_path / "o2"),
                     "--background", "none", "--no-progress"]) == 0
        assert calls[-1][1]["background"] == 0.0 and "mode" not in calls[-1][1]
        # defaults pass nothing: the factory and the writer use their own
        assert main(["deblend", str(path), "--output-dir", str(tmp_path / "o3"),
                     "--no-progress"]) == 0
        assert calls[-1][1] == {"model": None, "device": "auto", "max_pixels": None}
        assert writes[-1] == {}
    finally:
        batch._cached_deblender.cache_clear()
    capsys.readouterr()


# ------------------------------------------------------------- messages
def test_failed_input_names_its_path_once(tmp_path, capsys):
    bad = tmp_path / "a.fits"
    bad.write_text("hello\n")
    good = _blend_file(tmp_path / "b.fits")
    status = main(["deblend", str(bad), str(good), "--output-dir", str(tmp_path / "out"),
                   "--method", "segmentation", "--no-progress"])
    assert status == 1
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line]
    assert len(err) == 1
    assert err[0].startswith(f"astrodeblend: {bad}: ")
    assert err[0].count("a.fits") == 1, err[0]
    log = (tmp_path / "out" / batch.LOG_NAME).read_text()
    assert "a.fits: a.fits" not in log and f"{bad}: {bad}" not in log


def test_mask_template_per_input(tmp_path, capsys):
    """--mask '{stem}_mask.fits' finds each input's mask in its folder: its pixels go to
    no source and BLENDMSK marks them; an input without its mask fails on one line and
    the others are done (exit status 1); masks met among the inputs are left out."""
    data = tmp_path / "data"
    data.mkdir()
    a, b = _blend_file(data / "a.fits"), _blend_file(data / "b.fits")
    flags = np.zeros((40, 40), np.uint8)
    flags[:, :8] = 1
    fits.writeto(data / "a_mask.fits", flags)
    status = main(["deblend", str(a), str(b), "--mask", "{stem}_mask.fits", "--output-dir",
                   str(tmp_path / "out"), "--method", "segmentation", "--no-progress"])
    assert status == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and "b_mask.fits" in err[0] and "no such file" in err[0]
    with fits.open(tmp_path / "out" / "a_deblended.fits") as hdul:
        assert hdul["BLENDMSK"].data[:, :8].all() and not hdul["BLENDMSK"].data[:, 8:].any()
        assert np.isnan(hdul["RESIDUAL"].data[:, :8]).all()
        assert hdul["BLEND"].header["MASKFILE"] == "a_mask.fits"
    assert not (tmp_path / "out" / "b_deblended.fits").exists()
    # a folder takes the masks in with the images: they are left out, not deblended
    fits.writeto(data / "b_mask.fits", flags)
    assert main(["deblend", str(data), "--mask", "{stem}_mask.fits", "--output-dir",
                 str(tmp_path / "all"), "--method", "segmentation", "--no-progress"]) == 0
    assert "ignored 2 mask files among the inputs" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "all").glob("*.fits")) == [
        "a_deblended.fits", "b_deblended.fits"]


def test_summary_says_one_source_and_one_file(tmp_path, capsys):
    yy, xx = np.mgrid[:40, :40]
    plane = np.exp(-0.5 * ((xx - 20) ** 2 + (yy - 20) ** 2) / 6)
    plane = plane + np.random.default_rng(2).normal(0, 0.01, plane.shape)
    fits.writeto(tmp_path / "one.fits", plane.astype(np.float32))
    assert main(["deblend", str(tmp_path / "one.fits"), "--output-dir", str(tmp_path / "out"),
                 "--method", "segmentation", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 file: 1 deblended") and "; 1 source found" in out
    assert "1 sources" not in out and "1 files" not in out


def test_plural():
    assert plural(1, "source") == "1 source"
    assert plural(3, "source") == "3 sources"
    assert plural(0, "file") == "0 files"
    assert plural(2, "batch") == "2 batches"


# ------------------------------------------------------------- progress
def test_progress_is_lines_when_not_a_terminal():
    stream = io.StringIO()
    bar = progress(range(120), desc="deblend", unit="file", file=stream)
    assert isinstance(bar, LineProgress)
    for i in bar:
        if i == 10:
            bar.set_postfix_str("3 failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[0].startswith("deblend: 50/120 files, 3 failed, ")
    assert lines[0].endswith(" files/s")
    assert lines[1].startswith("deblend: 100/120 files")
    assert lines[2].startswith("deblend: 120/120 files")


def test_progress_lines_every_interval():
    stream = io.StringIO()
    assert len(list(progress(range(5), file=stream, every=1000, interval=0.0))) == 5
    assert len(stream.getvalue().splitlines()) == 5


def test_progress_is_a_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = progress(range(3), desc="deblend", unit="file", file=stream)
    assert not isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2]
    assert "3/3" in stream.getvalue()


def test_batch_progress_lines_on_stderr(tmp_path, capsys):
    paths = [_blend_file(tmp_path / f"b{i}.fits") for i in range(3)]
    (tmp_path / "bad.fits").write_text("junk\n")
    assert main(["deblend", *map(str, paths), str(tmp_path / "bad.fits"), "--output-dir",
                 str(tmp_path / "out"), "--method", "segmentation"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(err)
    progress_lines = [line for line in err if line.startswith("deblend: ")]
    assert progress_lines and progress_lines[-1].startswith("deblend: 4/4 files, 1 failed, ")


# ------------------------------------------------------------ interrupt
def test_interrupted_deblend_says_how_to_resume(tmp_path, monkeypatch, capsys):
    paths = [_blend_file(tmp_path / f"c{i}.fits") for i in range(3)]
    inner = SegmentationDeblender()
    seen = []

    def interrupting(image):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return inner(image)

    interrupting.name, interrupting.model_hash = inner.name, ""
    monkeypatch.setattr(batch, "_cached_deblender", lambda *key: interrupting)
    argv = ["deblend", *map(str, paths), "--output-dir", str(tmp_path / "out"),
            "--no-progress"]
    assert main(argv) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "astrodeblend: interrupted after 1 of 3 files (0 failed; run log: " \
                     f"{tmp_path / 'out' / batch.LOG_NAME})"
    assert "run the same command again" in err[1] and "skipped" in err[1]
    assert len(err) == 2 and "Traceback" not in "\n".join(err)
    monkeypatch.setattr(batch, "_cached_deblender", lambda *key: inner)
    assert main(argv) == 0
    assert "1 skipped" in capsys.readouterr().out



def test_no_command_prints_the_overview(capsys):
    assert main([]) == 2
    assert "COMMAND --help" in capsys.readouterr().out
