"""Tests of astrodeblend.batch: many files, skip-if-done, run log, Dask, kill and restart."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.modeling.models import Sersic2D
from astropy.wcs import WCS

from astrodeblend import batch
from astrodeblend.batch import LOG_COLUMNS, LOG_NAME, BatchSummary, deblend_files, expand_inputs
from astrodeblend.cli import main
from astrodeblend.errors import CheckpointError, InvalidInputError

REPO = Path(__file__).resolve().parents[1]
METHOD = "segmentation"  # fast and deterministic; the batch machinery is the same for 'gan'


def _cutout(seed, size):
    """A 2- or 3-galaxy Sersic blend with a little noise, float32 (size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    plane = np.zeros((size, size))
    for _ in range(2 + seed % 2):
        plane += Sersic2D(amplitude=rng.uniform(0.5, 1.5), r_eff=rng.uniform(2.5, 5),
                          n=rng.uniform(0.8, 2.5), x_0=rng.uniform(12, size - 12),
                          y_0=rng.uniform(12, size - 12), ellip=rng.uniform(0, 0.5),
                          theta=rng.uniform(0, 3))(xx, yy)
    plane += rng.normal(0, 0.01, plane.shape)
    return plane.astype(np.float32)


def _wcs_header(seed, size):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    wcs.wcs.crval = [150.0 + 0.01 * seed, 2.0]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return wcs.to_header()


def make_cutouts(folder, n, *, size=48, prefix="cut"):
    """Write ``n`` small FITS blends with a TAN WCS; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i:03d}.fits"
        fits.writeto(path, _cutout(i, size), _wcs_header(i, size))
        paths.append(path)
    return paths


def read_log(output_dir):
    with open(Path(output_dir) / LOG_NAME, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == LOG_COLUMNS
    return [dict(zip(LOG_COLUMNS, row, strict=True)) for row in rows[1:]]


def assert_valid_output(path, n_min=1):
    """Open with checksum verification (a bad checksum warns, and warnings are errors)."""
    with fits.open(path, checksum=True) as hdul:
        assert hdul[0].header["ORIGIN"] == "astrodeblend"
        n = hdul[0].header["NSOURCE"]
        assert n >= n_min
        assert [h.name for h in hdul][1] == "BLEND"
        assert hdul[-1].name == "CATALOG"
        for hdu in hdul:
            assert hdu.verify_checksum() == 1  # 1: verified
            assert hdu.verify_datasum() == 1
    return n


def hdu_arrays(path):
    with fits.open(path) as hdul:
        return [(h.name, h.ver, np.array(h.data) if h.data is not None else None)
                for h in hdul]


@pytest.fixture
def cutouts(tmp_path):
    return make_cutouts(tmp_path / "in", 3)


# ------------------------------------------------------------ expand_inputs
def test_expand_inputs_files_globs_folders_lists(tmp_path):
    paths = make_cutouts(tmp_path / "in", 4)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / ".hidden.fits").write_bytes(b"")
    sub = tmp_path / "in" / "sub"
    make_cutouts(sub, 1, prefix="deep")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my cutouts\n\nin/cut002.fits\n  {paths[0]}  \nin/cut00[13].fits\n")

    assert expand_inputs(tmp_path / "in") == paths  # sorted, non-recursive, images only
    assert expand_inputs([str(tmp_path / "in" / "cut*.fits")]) == paths
    assert expand_inputs([f"@{listing}"]) == [paths[2], paths[0], paths[1], paths[3]]
    # duplicates removed in order, whatever the spelling
    mixed = expand_inputs([paths[3], tmp_path / "in", f"@{listing}", str(paths[3])])
    assert mixed == [paths[3], *paths[:3]]


def test_expand_inputs_keeps_what_names_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    given = [tmp_path / "nope.fits", str(tmp_path / "*.jpg"), tmp_path / "empty",
             f"@{tmp_path / 'nolist.txt'}"]
    found = expand_inputs(given)
    assert len(found) == 4
    assert [batch._missing_reason(p) for p in found] == [
        "file not found", "no file matches this pattern",
        "folder holds no FITS, JPG or PNG file", f"cannot read list file {tmp_path / 'nolist.txt'}"]


# ------------------------------------------------------------------ serial
def test_serial_run_writes_valid_outputs_and_log(cutouts, tmp_path):
    out = tmp_path / "out"
    summary = deblend_files(cutouts, out, method=METHOD, progress=False)
    assert isinstance(summary, BatchSummary)
    assert (summary.n_done, summary.n_skipped, summary.n_failed) == (3, 0, 0)
    assert summary.exit_code == 0
    n_sources = [assert_valid_output(out / f"{p.stem}_deblended.fits") for p in cutouts]
    assert summary.n_sources == sum(n_sources) >= 6
    rows = read_log(out)
    assert [r["input"] for r in rows] == [str(p) for p in cutouts]
    assert [r["status"] for r in rows] == ["done"] * 3
    assert [int(r["n_sources"]) for r in rows] == n_sources
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert "3 deblended" in str(summary) and str(out / LOG_NAME) in str(summary)
    # no temporary file is left
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [LOG_NAME] + [f"{p.stem}_deblended.fits" for p in cutouts])


def test_bad_file_is_reported_and_the_rest_goes_on(cutouts, tmp_path, capsys):
    bad = tmp_path / "in" / "cut001.fits"
    bad.write_bytes(b"SIMPLE  =                    T / truncated junk")
    out = tmp_path / "out"
    argv = ["deblend", str(tmp_path / "in"), str(tmp_path / "in" / "missing.fits"),
            "--output-dir", str(out), "--method", METHOD, "--no-progress"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line]
    assert len(errors) == 2 and "Traceback" not in captured.err
    # inputs that name no file are reported first, before any work
    assert errors[0].endswith("missing.fits: file not found")
    assert errors[1].startswith(f"astrodeblend: {bad}: ")
    assert "2 deblended" in captured.out and "2 failed" in captured.out
    statuses = {Path(r["input"]).name: r["status"] for r in read_log(out)}
    assert statuses == {"cut000.fits": "done", "cut001.fits": "failed",
                        "cut002.fits": "done", "missing.fits": "failed"}
    assert not (out / "cut001_deblended.fits").exists()


def test_restart_skips_done_and_redoes_damaged(cutouts, tmp_path):
    out = tmp_path / "out"
    deblend_files(cutouts, out, method=METHOD, progress=False)
    good = out / "cut000_deblended.fits"
    damaged = out / "cut001_deblended.fits"
    truncated = out / "cut002_deblended.fits"
    before = good.stat().st_mtime_ns, good.read_bytes()
    with fits.open(damaged) as hdul:
        offset = hdul["BLEND"].fileinfo()["datLoc"]
    raw = bytearray(damaged.read_bytes())
    raw[offset + 100] ^= 0xFF  # flip bits of one pixel of the BLEND data
    damaged.write_bytes(bytes(raw))
    truncated.write_bytes(truncated.read_bytes()[:5000])
    assert batch._output_state(damaged)[0] == "broken"
    assert batch._output_state(truncated)[0] == "broken"

    summary = deblend_files(cutouts, out, method=METHOD, progress=False)
    assert (summary.n_done, summary.n_skipped, summary.n_failed) == (2, 1, 0)
    assert (good.stat().st_mtime_ns, good.read_bytes()) == before
    for path in (damaged, truncated):
        assert_valid_output(path)
    rows = read_log(out)  # the second run appended its rows after the first run's
    assert [r["status"] for r in rows] == ["done"] * 3 + ["skipped", "done", "done"]
    assert "replaced a damaged output" in rows[4]["reason"]
    assert int(rows[3]["n_sources"]) == int(rows[0]["n_sources"])

    summary = deblend_files(cutouts, out, method=METHOD, overwrite=True, progress=False)
    assert summary.n_done == 3
    assert good.stat().st_mtime_ns != before[0]


def test_overwrite_replaces_outputs_without_reading_them(cutouts, tmp_path, monkeypatch):
    """With overwrite, existing outputs (ours, damaged or foreign) are replaced
    without being opened and verified first (their checksums cost as much as
    deblending a small cutout)."""
    out = tmp_path / "out"
    deblend_files(cutouts, out, method=METHOD, progress=False)
    (out / "cut001_deblended.fits").write_bytes(b"not a FITS file")
    fits.writeto(out / "cut002_deblended.fits", np.zeros((4, 4), np.float32), overwrite=True)

    def never(*args, **kwargs):
        raise AssertionError("an output was read although it is replaced")

    monkeypatch.setattr(batch, "_output_state", never)
    summary = deblend_files(cutouts, out, method=METHOD, overwrite=True, progress=False)
    assert (summary.n_done, summary.n_skipped, summary.n_failed) == (3, 0, 0)
    for name in ("cut000", "cut001", "cut002"):
        assert_valid_output(out / f"{name}_deblended.fits")


def test_foreign_outputs_are_not_replaced(cutouts, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fits.writeto(out / "cut000_deblended.fits", np.zeros((4, 4), np.float32))
    summary = deblend_files(cutouts, out, method=METHOD, progress=False)
    assert summary.n_failed == 1 and "not an astrodeblend output" in summary.failures[0][1]
    # outputs made with another method are not taken as done either
    summary = deblend_files(cutouts[1:], out, method="fluxshare", progress=False)
    assert summary.n_failed == 2
    assert all("another model" in reason for _, reason in summary.failures)
    assert deblend_files(cutouts[1:], out, method="fluxshare", overwrite=True,
                         progress=False).n_done == 2


def test_output_folder_inside_the_inputs(cutouts, tmp_path, capsys):
    folder = tmp_path / "in"
    assert deblend_files(folder, folder, method=METHOD, progress=False).n_done == 3
    summary = deblend_files(folder, folder, method=METHOD, progress=False)
    assert (summary.n_skipped, summary.n_files) == (3, 3)  # results are not inputs
    assert "ignored 3 earlier results " in capsys.readouterr().err


def test_same_output_name_twice_fails_the_second(tmp_path):
    first = make_cutouts(tmp_path / "a", 1)
    second = make_cutouts(tmp_path / "b", 1)
    summary = deblend_files(first + second, tmp_path / "out", method=METHOD, progress=False)
    assert (summary.n_done, summary.n_failed) == (1, 1)
    assert "same output name" in summary.failures[0][1]


def test_stale_temporaries_are_removed(cutouts, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".cut000_deblended.fits.tmp-0badc0de"
    stale.write_bytes(b"half a file")
    other = out / ".someone_elses.tmp-12345678"
    other.write_bytes(b"")
    deblend_files(cutouts, out, method=METHOD, progress=False)
    assert not stale.exists() and other.exists()


def test_inputs_lists_globs_and_folders_through_the_cli(tmp_path):
    paths = make_cutouts(tmp_path / "in", 3)
    (tmp_path / "list.txt").write_text("# first two\nin/cut000.fits\nin/cut001.fits\n")
    out = tmp_path / "out"
    assert main(["deblend", f"@{tmp_path / 'list.txt'}", "--output-dir", str(out),
                 "--method", METHOD, "--no-progress"]) == 0
    assert main(["deblend", str(tmp_path / "in" / "*.fits"), str(tmp_path / "in"),
                 "--output-dir", str(out), "--method", METHOD, "--no-progress"]) == 0
    assert [r["status"] for r in read_log(out)] == ["done", "done", "skipped", "skipped", "done"]
    assert sorted(p.name for p in out.glob("*.fits")) == [
        f"{p.stem}_deblended.fits" for p in paths]


# ------------------------------------------------------------ bad arguments
def test_bad_arguments_fail_before_starting(cutouts, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="no input file found"):
        deblend_files([tmp_path / "none*.fits"], out, method=METHOD)
    with pytest.raises(InvalidInputError, match="unknown method"):
        deblend_files(cutouts, out, method="magic")
    with pytest.raises(CheckpointError, match="no-model.pt"):
        deblend_files(cutouts, out, model=tmp_path / "no-model.pt")
    with pytest.raises(InvalidInputError, match="workers"):
        deblend_files(cutouts, out, method=METHOD, workers=0)
    assert not out.exists()
    base = ["deblend", str(cutouts[0]), "--output-dir", str(out), "--no-progress"]
    assert main(base + ["--method", "magic"]) == 2
    assert main(base + ["--model", str(tmp_path / "no-model.pt")]) == 2
    assert main(["deblend", str(tmp_path / "nothing.fits"), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("astrodeblend: error:") == 3 and "Traceback" not in err


def test_cuda_without_gpu_is_a_bad_argument(cutouts, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["deblend", str(cutouts[0]), "--output-dir", str(tmp_path / "out"),
                 "--device", "cuda", "--no-progress"]) == 2


def test_png_quick_looks(cutouts, tmp_path):
    out = tmp_path / "out"
    deblend_files(cutouts[:1], out, method=METHOD, png=True, progress=False)
    png = out / "cut000_deblended.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png.unlink()  # a restart with --png adds the missing quick-look to a done output
    summary = deblend_files(cutouts[:1], out, method=METHOD, png=True, progress=False)
    assert summary.n_skipped == 1 and png.exists()


# ----------------------------------------------------------------- parallel
def _compare_outputs(out_a, out_b, paths):
    for path in paths:
        name = f"{path.stem}_deblended.fits"
        first, second = hdu_arrays(out_a / name), hdu_arrays(out_b / name)
        assert [(n, v) for n, v, _ in first] == [(n, v) for n, v, _ in second]
        for (_, _, a), (_, _, b) in zip(first, second, strict=True):
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not batch.HAS_DASK, reason="needs dask.distributed")
def test_dask_cluster_matches_serial(tmp_path):
    import logging

    from distributed import Client, LocalCluster

    paths = make_cutouts(tmp_path / "in", 50, size=40)
    serial, parallel = tmp_path / "serial", tmp_path / "dask"
    assert deblend_files(paths, serial, method=METHOD, progress=False).n_done == 50
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        summary = deblend_files(tmp_path / "in", parallel, method=METHOD, client=client,
                                progress=False)
    assert (summary.n_done, summary.n_failed) == (50, 0)
    _compare_outputs(serial, parallel, paths)
    assert sorted(r["input"] for r in read_log(parallel)) == sorted(str(p) for p in paths)


@pytest.mark.skipif(not batch.HAS_DASK, reason="needs dask.distributed")
def test_existing_client_and_a_ready_deblender(tmp_path):
    import logging

    from distributed import Client, LocalCluster

    from astrodeblend.baselines import FluxShareDeblender

    paths = make_cutouts(tmp_path / "in", 6, size=40)
    serial = tmp_path / "serial"
    deblend_files(paths, serial, deblender=FluxShareDeblender(), progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        summary = deblend_files(paths, tmp_path / "dask", deblender=FluxShareDeblender(),
                                client=client, progress=False)
        assert summary.n_done == 6
        assert client.status == "running"  # a client we were given is left open
    _compare_outputs(serial, tmp_path / "dask", paths)


@pytest.mark.parametrize("dask_installed", [True, False])
def test_local_workers_are_a_process_pool(tmp_path, monkeypatch, dask_installed):
    # local workers never start a Dask cluster, installed or not: the pool is faster
    monkeypatch.setattr(batch, "HAS_DASK", dask_installed)
    monkeypatch.setattr(batch, "_DaskRunner", None)  # would fail if it were used
    paths = make_cutouts(tmp_path / "in", 20, size=40)
    paths[2].write_bytes(b"not a FITS file")
    serial, pooled = tmp_path / "serial", tmp_path / "pool"
    deblend_files(paths, serial, method=METHOD, progress=False)
    summary = deblend_files(paths, pooled, method=METHOD, workers=2, progress=False)
    assert (summary.n_done, summary.n_failed) == (19, 1)
    _compare_outputs(serial, pooled, [p for i, p in enumerate(paths) if i != 2])
    assert sorted(r["input"] for r in read_log(pooled)) == sorted(str(p) for p in paths)
    if not dask_installed:  # a cluster needs Dask
        with pytest.raises(InvalidInputError, match="astrodeblend\\[distributed\\]"):
            deblend_files(paths, pooled, method=METHOD, scheduler="tcp://127.0.0.1:1")


def test_auto_workers(tmp_path, monkeypatch):
    """workers='auto': one more process per AUTO_FILES_PER_WORKER inputs (up to the cores),
    the same outputs; this process alone when worker processes cannot start."""
    assert [batch.auto_workers(n, cores=2) for n in (1, 63, 64, 128, 10_000)] == [1, 1, 1, 2, 2]
    assert batch.auto_workers(10_000, cores=64) == batch.AUTO_MAX_WORKERS
    paths = make_cutouts(tmp_path / "in", 12, size=40)
    serial = tmp_path / "serial"
    deblend_files(paths, serial, method=METHOD, progress=False)
    monkeypatch.setattr(batch, "AUTO_FILES_PER_WORKER", 6)
    monkeypatch.setattr(batch, "_usable_cores", lambda: 2)
    started = []
    real_start = batch._PoolRunner.start

    def start(runner):
        started.append(runner.n_spawned)
        return real_start(runner)

    monkeypatch.setattr(batch._PoolRunner, "start", start)
    summary = deblend_files(paths, tmp_path / "auto", method=METHOD, workers="auto",
                            progress=False)
    assert summary.n_done == 12 and set(started) == {1}      # two workers: one spawned
    _compare_outputs(serial, tmp_path / "auto", paths)

    def broken(runner):
        raise batch.AstrodeblendError("cannot start 1 worker processes here (no semaphores)")

    monkeypatch.setattr(batch._PoolRunner, "start", broken)
    summary = deblend_files(paths, tmp_path / "alone", method=METHOD, workers="auto",
                            progress=False)
    assert summary.n_done == 12
    _compare_outputs(serial, tmp_path / "alone", paths)
    with pytest.raises(batch.AstrodeblendError, match="cannot start"):
        deblend_files(paths, tmp_path / "asked", method=METHOD, workers=2, progress=False)
    with pytest.raises(InvalidInputError, match="'auto'"):
        deblend_files(paths, tmp_path / "bad", method=METHOD, workers="many", progress=False)


# ------------------------------------------- the GAN in parallel, a scheduler by address
# The shipped default model (not a baseline) through each parallel path, on two tiny
# FITS; each path is held against the same files deblended serially.  Workers run torch
# on one thread and may batch stamps differently, so pixels agree to float32 rounding.

@pytest.fixture(scope="module")
def gan_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gan")
    paths = make_cutouts(folder / "in", 1, size=48) + make_cutouts(folder / "in", 1, size=64,
                                                                      prefix="big")
    serial = folder / "serial"
    summary = deblend_files(paths, serial, device="cpu", progress=False)  # method="gan"
    assert (summary.n_done, summary.n_failed) == (2, 0)
    return paths, serial


def _assert_same_gan_outputs(reference, out, paths):
    for path in paths:
        name = f"{path.stem}_deblended.fits"
        assert assert_valid_output(out / name) == assert_valid_output(reference / name)
        first, second = hdu_arrays(reference / name), hdu_arrays(out / name)
        assert [(n, v) for n, v, _ in first] == [(n, v) for n, v, _ in second]
        for (hdu, _, a), (_, _, b) in zip(first, second, strict=True):
            if a is None or a.dtype.names:  # the primary HDU; the CATALOG table
                continue
            scale = float(np.nanmax(np.abs(a))) or 1.0
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale, err_msg=hdu)
    with fits.open(out / f"{paths[0].stem}_deblended.fits") as hdul:
        assert hdul[0].header["ADBMODEL"] == "default"  # the shipped GAN, not a baseline


@pytest.mark.skipif(not batch.HAS_DASK, reason="needs dask.distributed")
def test_gan_through_a_local_dask_cluster(gan_files, tmp_path):
    import logging

    from distributed import Client, LocalCluster

    paths, serial = gan_files
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        summary = deblend_files(paths, tmp_path / "dask", device="cpu", client=client,
                                progress=False)
    assert (summary.n_done, summary.n_failed) == (2, 0)
    _assert_same_gan_outputs(serial, tmp_path / "dask", paths)


@pytest.mark.parametrize("start", ["auto", "spawn"])
def test_gan_through_the_process_pool(gan_files, tmp_path, monkeypatch, start):
    """Forked workers (Linux, one thread) inherit the loaded model; spawned ones load it."""
    paths, serial = gan_files
    used = []
    chosen = batch._start_method if start == "auto" else (lambda: "spawn")
    monkeypatch.setattr(batch, "_start_method", lambda: used.append(chosen()) or used[-1])
    summary = deblend_files(paths, tmp_path / "pool", device="cpu", workers=2, progress=False)
    assert (summary.n_done, summary.n_failed) == (2, 0)
    assert len(set(used)) == 1 and set(used) <= {"fork", "spawn"}
    assert start == "auto" or used[0] == "spawn"
    _assert_same_gan_outputs(serial, tmp_path / "pool", paths)


def test_workers_are_forked_only_where_it_is_safe():
    import threading

    if threading.active_count() == 1:  # a test process that runs no other thread
        assert batch._start_method() == ("fork" if sys.platform.startswith("linux")
                                          else "spawn")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:  # another thread's locks would stay held in a forked child
        assert batch._start_method() == "spawn"
    finally:
        stop.set()
        other.join()


def test_gan_on_a_dask_scheduler_given_by_address(gan_files, tmp_path, capsys):
    pytest.importorskip("distributed")
    import logging

    from distributed import LocalCluster

    paths, serial = gan_files
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                      host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        summary = deblend_files(paths, tmp_path / "api", device="cpu", scheduler=address,
                                progress=False)
        assert (summary.n_done, summary.n_failed) == (2, 0)
        ran = cluster.scheduler.transition_counter
        assert ran > 0  # the work went through that scheduler
        # the command line: --scheduler ADDRESS
        status = main(["deblend", *map(str, paths), "--output-dir", str(tmp_path / "cli"),
                       "--scheduler", address, "--device", "cpu", "--no-progress"])
        assert status == 0, capsys.readouterr().err
        assert cluster.scheduler.transition_counter > ran
    for out in (tmp_path / "api", tmp_path / "cli"):
        _assert_same_gan_outputs(serial, out, paths)
        assert sorted(r["status"] for r in read_log(out)) == ["done", "done"]


# -------------------------------------------------------------- kill, restart
def test_killed_run_restarts_and_loses_nothing(tmp_path):
    paths = make_cutouts(tmp_path / "in", 30, size=40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "astrodeblend", "deblend", str(tmp_path / "in"),
               "--output-dir", str(out), "--method", METHOD, "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(out.glob("*_deblended.fits"))) >= 3:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the batch ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    n_first = len(list(out.glob("*_deblended.fits")))
    assert 3 <= n_first < 30

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([LOG_NAME] + [f"{p.stem}_deblended.fits" for p in paths])
    for path in paths:
        assert_valid_output(out / f"{path.stem}_deblended.fits")
    rows = read_log(out)
    second = rows[-30:]  # the restart logged every input once
    assert sorted(r["input"] for r in second) == sorted(str(p) for p in paths)
    assert sum(r["status"] == "skipped" for r in second) == n_first
    assert all(r["status"] in ("done", "skipped") for r in rows)


def test_one_file_per_band_is_one_image(tmp_path):
    """'m51_g.fits,m51_r.fits' (files of one folder) is one two-band image: one output
    named after both (m51_gr), its bands from the names, PROV1/PROV2 the files, and it
    is skipped when run again; a missing band file fails that input alone."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :48]
    galaxy = Sersic2D(1.0, 4, 1, 24, 24)(xx, yy)
    for k, band in enumerate("gr"):
        data = (0.8 + 0.4 * k) * galaxy + rng.normal(0, 0.01, galaxy.shape)
        fits.writeto(tmp_path / f"m51_{band}.fits", data.astype(np.float32))
    group = f"{tmp_path / 'm51_g.fits'},m51_r.fits"
    paths = expand_inputs([group])
    assert [p.name for p in batch.band_files(paths[0])] == ["m51_g.fits", "m51_r.fits"]
    broken = f"{tmp_path / 'm51_g.fits'},m51_z.fits"
    summary = deblend_files([group, broken], tmp_path / "out", method="segmentation",
                            progress=False)
    assert (summary.n_done, summary.n_failed) == (1, 1)
    out = tmp_path / "out" / "m51_gr_deblended.fits"
    with fits.open(out) as hdul:
        assert hdul["BLEND"].data.shape == (2, 48, 48)
        assert hdul["BLEND"].header["BANDS"] == "g,r"
        assert [hdul[0].header["PROV1"], hdul[0].header["PROV2"]] == ["m51_g.fits",
                                                                      "m51_r.fits"]
    with (tmp_path / "out" / LOG_NAME).open() as log:
        failed = [row for row in csv.DictReader(log) if row["status"] == "failed"]
    assert len(failed) == 1 and "m51_z.fits not found" in failed[0]["reason"]
    again = deblend_files([group], tmp_path / "out", method="segmentation", progress=False)
    assert again.n_skipped == 1
