"""Reading the deblended FITS output back: `read_deblended` (format versions 1 and 2)."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits

from ..errors import InvalidInputError, ReadError
from ..image import GalaxyImage
from ..result import DeblendResult, _trim_frame
from ..utils import name_from_header
from ._files import _check_file, _one_line
from ._fits_reader import _parse_unit
from .fits_output import _CONTINUATION, FORMAT_VERSION

__all__ = ["read_deblended"]


def _join_history(values):
    lines = []
    for value in values:
        value = str(value)
        if value.startswith(_CONTINUATION) and lines:
            lines[-1] += value[len(_CONTINUATION):]
        else:
            lines.append(value)
    return lines


#: Units of the CATALOG columns (``TUNIT``); ``flux`` takes the BLEND's BUNIT.

def _wcs_from(header):
    from astropy.wcs import WCS, FITSFixedWarning

    if "CTYPE1" not in header and "CRPIX1" not in header:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2)


def read_deblended(path):
    """Read a file written by `write_deblended` back into a `~astrodeblend.DeblendResult`.

    Reads format versions 1 and 2.  Checksums are verified.  Cutout
    ``SOURCE`` HDUs are kept as they are (``CUTX0``, ``CUTY0`` give their
    place); full-frame ones (version 1, or ``full_frame=True``) are trimmed
    to the box of their nonzero pixels as they are read, one at a time.
    ``result.sources`` rebuilds full frames on request.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        An astrodeblend output file.

    Returns
    -------
    `~astrodeblend.DeblendResult`
        With the blend (WCS, bands, unit, header, mask and uncertainty),
        source cutouts and origins, flux mode (``'conserve'`` for version 1
        files), segmentation map, catalog, model name and hash, and history
        of the file.

    Raises
    ------
    ReadError
        If the file cannot be read, is not an astrodeblend output (no
        ``ADBFMT`` card), is of a newer format version, lacks an HDU of the
        format, has a cutout outside ``BLEND``, or fails its checksum.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astrodeblend import GalaxyImage, DeblendResult
    >>> from astrodeblend.io import write_deblended
    >>> blend = GalaxyImage(np.ones((1, 8, 8)), bands=["r"])
    >>> sources = np.stack([0.25 * blend.data, 0.75 * blend.data])
    >>> catalog = DeblendResult.make_catalog(blend, sources, [2.0, 5.0], [3.0, 4.0])
    >>> result = DeblendResult(blend, sources, catalog, np.zeros((8, 8), int))
    >>> path = write_deblended(result, pathlib.Path(tempfile.mkdtemp()) / "r_deblended.fits")
    >>> back = read_deblended(path)
    >>> back.n_sources, back.blend.bands, np.array_equal(back.sources, result.sources)
    (2, ('r',), True)
    >>> back.origins.tolist(), back.flux_mode
    ([[0, 0], [0, 0]], 'conserve')
    """
    path, head = _check_file(path)
    if not head.startswith(b"SIMPLE  ="):
        raise ReadError(f"{path}: not a FITS file, so not an astrodeblend output")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, mode="readonly", memmap=False, checksum=True) as hdul:
                hdul.verify("silentfix")
                result = _result_from(path, hdul)
        except (ReadError, InvalidInputError) as exc:
            raise ReadError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - corrupt file
            raise ReadError(f"{path}: corrupt FITS file ({_one_line(exc)})") from None
    bad = [str(w.message) for w in caught if "checksum" in str(w.message).lower()
           or "datasum" in str(w.message).lower()]
    if bad:
        raise ReadError(f"{path}: checksum verification failed ({_one_line(bad[0])})")
    return result


def _result_from(path, hdul):
    primary = hdul[0].header
    if "ADBFMT" not in primary:
        raise ReadError(f"{path}: not an astrodeblend output (no ADBFMT card in the primary "
                        "header)")
    version = primary["ADBFMT"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ReadError(f"{path}: output format version {version!r} is newer than this "
                        f"astrodeblend reads ({FORMAT_VERSION})")
    names = [h.name for h in hdul]
    for needed in ("BLEND", "RESIDUAL", "SEGMAP", "CATALOG"):
        if needed not in names:
            raise ReadError(f"{path}: astrodeblend output without a {needed} HDU")
    blend_hdu = hdul["BLEND"]
    header = blend_hdu.header.copy()
    data = np.array(blend_hdu.data, dtype=np.float32)
    n_bands = 1 if data.ndim == 2 else data.shape[0]
    bands = [b for b in str(header.get("BANDS", "")).split(",")]
    if len(bands) != n_bands or not all(bands):
        bands = None
    mask = np.array(hdul["BLENDMSK"].data, dtype=bool) if "BLENDMSK" in names else None
    uncertainty = (np.array(hdul["BLENDUNC"].data, dtype=np.float32)
                   if "BLENDUNC" in names else None)
    provenance = []
    i = 1
    while f"PROV{i}" in primary:
        provenance.append(name_from_header(primary[f"PROV{i}"]))
        i += 1
    for key in ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT",
                "EXTNAME", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    blend = GalaxyImage(data, mask=mask, uncertainty=uncertainty, wcs=_wcs_from(header),
                        meta=header, unit=_parse_unit(header.get("BUNIT")), bands=bands,
                        source=", ".join(provenance) if provenance else None)
    catalog = _catalog_from(hdul["CATALOG"], n_bands)
    n_source = int(primary.get("NSOURCE", 0))
    if len(catalog) != n_source:
        raise ReadError(f"{path}: NSOURCE = {n_source} but the CATALOG has {len(catalog)} "
                        "rows")
    cutouts, origins = [], []
    for i in range(1, n_source + 1):
        try:
            hdu = hdul["SOURCE", i]
        except KeyError:
            raise ReadError(f"{path}: NSOURCE = {n_source} but there is no SOURCE HDU "
                            f"with EXTVER = {i}") from None
        cut = np.array(hdu.data, dtype=np.float32)
        del hdu.data  # one full frame at most in memory while reading
        if cut.ndim == 2:
            cut = cut[np.newaxis]
        x0, y0 = int(hdu.header.get("CUTX0", 0)), int(hdu.header.get("CUTY0", 0))
        if cut.shape == blend.shape and x0 == 0 and y0 == 0:
            row = catalog[i - 1]
            cut, (x0, y0) = _trim_frame(cut, blend.mask,
                                        (float(row["x_centroid"]), float(row["y_centroid"])))
        elif cut.shape[0] != n_bands:
            raise ReadError(f"{path}: SOURCE {i} has {cut.shape[0]} bands, BLEND {n_bands}")
        cutouts.append(cut)
        origins.append((x0, y0))
    segmap = np.array(hdul["SEGMAP"].data, dtype=np.int32)
    history = _join_history(primary.get("HISTORY", []))
    flux_mode = str(primary.get("ADBFLUX", "conserve")).strip()
    try:
        return DeblendResult(blend, cutouts, catalog, segmap,
                             origins=np.asarray(origins, dtype=np.int64).reshape(-1, 2),
                             flux_mode=flux_mode, model_name=primary.get("ADBMODEL", ""),
                             model_hash=primary.get("ADBMHASH", ""), history=history)
    except InvalidInputError as exc:
        raise ReadError(f"{path}: {exc}") from None


def _catalog_from(hdu, n_bands):
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = Table.read(hdu)
    table.meta.clear()
    if "flux" in table.colnames:
        table["flux"] = np.asarray(table["flux"], dtype=float).reshape(len(table), n_bands)
    for name in table.colnames:
        if table[name].dtype.kind == "S":
            table[name] = np.char.decode(np.asarray(table[name]), "ascii")
    return table
