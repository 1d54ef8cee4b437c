"""The lines of `~astrodeblend.io.describe_image` about a file's HDUs and a result's catalog."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from ._files import _one_line
from ._fits_reader import _hdu_label, _is_image_hdu, _naxes

_BITPIX_TYPES = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32",
                 -64: "float64"}


def _describe_result_header(primary, hdus):
    """One line on an astrodeblend result: format, sources, model, flux mode."""
    n_sources = primary.get("NSOURCE")
    if not isinstance(n_sources, (int, np.integer)):
        n_sources = sum(h.name == "SOURCE" for h in hdus)
    text = (f"astrodeblend result, format {primary.get('ADBFMT')}, {n_sources} source"
            f"{'' if n_sources == 1 else 's'}")
    model = primary.get("ADBMODEL")
    if model:
        text += f", model {model!r}"
        model_hash = str(primary.get("ADBMHASH") or "")
        if model_hash:
            text += f" (sha256 {model_hash[:12]}...)"
    text += f", flux mode {primary.get('ADBFLUX', 'not recorded')}"
    if primary.get("PROCSOFT"):
        text += f", written by {primary['PROCSOFT']}"
    return text


def _hdu_kind(hdu):
    """Short description of an HDU's content from its header alone."""
    header = hdu.header
    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        rows, cols = header.get("NAXIS2", 0), header.get("TFIELDS", 0)
        return f"table, {rows} row{'' if rows == 1 else 's'} x {cols} column" \
               f"{'' if cols == 1 else 's'}"
    if not _is_image_hdu(hdu):
        return type(hdu).__name__
    try:
        axes = _naxes(header)
    except ValueError as exc:
        return f"image with a bad header ({exc})"
    if not axes or not all(axes):
        return "no data"
    return (f"image {tuple(reversed(axes))} "
            f"{_BITPIX_TYPES.get(header.get('BITPIX'), 'BITPIX=' + str(header.get('BITPIX')))}")


def _describe_hdus(hdus, read_index, *, mark):
    """Indented lines, one per HDU or per run of three or more same-named HDUs.

    The HDU ``read_index`` (an index or a set of them: one HDU per band) is
    never part of a run and gets ``mark`` appended.
    """
    read = {read_index} if isinstance(read_index, int) else set(read_index)
    lines = []
    start = 0
    while start < len(hdus):
        name = hdus[start].name
        stop = start + 1
        while stop < len(hdus) and name and hdus[stop].name == name and stop not in read \
                and start not in read:
            stop += 1
        if stop - start >= 3:
            first, last = (hdus[i].header.get("EXTVER", 1) for i in (start, stop - 1))
            lines.append(f"  HDU {start}-{stop - 1} ({name}, {first}-{last}): "
                         f"{stop - start} HDUs, the first {_hdu_kind(hdus[start])}")
        else:
            stop = start + 1
            text = f"  {_hdu_label(start, hdus[start])}: {_hdu_kind(hdus[start])}"
            if start in read:
                text += mark
            lines.append(text)
        start = stop
    return lines


def _describe_catalog(hdus, max_rows):
    """Return the first ``max_rows`` rows of a result's CATALOG as indented lines."""
    table = next((h for h in hdus if h.name == "CATALOG"), None)
    if table is None:
        return ["  no CATALOG HDU"]
    try:
        data = table.data
        n_rows = 0 if data is None else len(data)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for broken tables
        return [f"  CATALOG cannot be read ({_one_line(exc)})"]
    shown = min(n_rows, max(0, int(max_rows)))
    lines = [f"  catalog ({n_rows} row{'' if n_rows == 1 else 's'}"
             + (f", first {shown}" if shown < n_rows else "") + "):"]
    if not shown:
        return lines
    names = data.columns.names
    columns = [c for c in ("id", "x_centroid", "y_centroid", "ra", "dec", "flux") if c in names]
    widths = {"id": 6, "x_centroid": 10, "y_centroid": 10, "ra": 11, "dec": 11, "flux": 11}
    lines.append("    " + " ".join(f"{c:>{widths[c]}}" for c in columns)
                 + ("  (flux: sum over bands)" if "flux" in columns
                    and np.ndim(data["flux"][0]) > 0 else ""))
    for row in range(shown):
        cells = []
        for c in columns:
            value = data[c][row]
            if c == "id":
                cells.append(f"{int(value):>6d}")
            elif c == "flux":
                cells.append(f"{float(np.sum(value)):>11.5g}")
            elif c in ("ra", "dec"):
                cells.append(f"{float(value):>11.6f}")
            else:
                cells.append(f"{float(value):>10.2f}")
        lines.append("    " + " ".join(cells))
    return lines
