"""
The FITS output and its provenance
==================================

:func:`astrodeblend.io.write_deblended` writes a
:class:`~astrodeblend.result.DeblendResult` to one FITS file in the format
of :ref:`fits-format` (version 2): the input (``BLEND``), one ``SOURCE``
HDU per galaxy holding a cutout over the galaxy's footprint, the
``RESIDUAL``, the ``SEGMAP`` and a ``CATALOG`` table, with a primary header
that records where every number came from.  This example deblends a small
synthetic image, writes the result, reopens it with astropy alone, as any
other program would, and places the cutouts back in the frame.
"""

# %%
# Deblend a small synthetic image
# -------------------------------
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from astropy.io import fits
from astropy.modeling.models import Gaussian2D
from astropy.table import Table
from astropy.wcs import WCS

from astrodeblend import Deblender, GalaxyImage, read_deblended, write_deblended

yy, xx = np.mgrid[:64, :64]
plane = (Gaussian2D(1.0, 26, 30, 4.0, 2.5, 0.5)(xx, yy)
         + Gaussian2D(0.7, 38, 35, 3.0, 3.0)(xx, yy))
rng = np.random.default_rng(1)
cube = np.stack([0.8 * plane, plane, 1.1 * plane]) + rng.normal(0, 0.01, (3, 64, 64))

wcs = WCS(naxis=2)
wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
wcs.wcs.crval = [210.8, 54.3]
wcs.wcs.crpix = [32.5, 32.5]
wcs.wcs.cdelt = [-0.262 / 3600, 0.262 / 3600]
image = GalaxyImage(cube, wcs=wcs, bands=("g", "r", "z"), unit="nanomaggy",
                    source="synthetic.fits")

result = Deblender.load(device="cpu")(image)
print(result)

# %%
# Write it
# --------
# The file is written to a temporary name in the same folder and renamed into
# place; an existing file is refused unless ``overwrite=True``.
outdir = Path(tempfile.mkdtemp(prefix="astrodeblend-example-"))
path = write_deblended(result, outdir / "synthetic_deblended.fits")
try:
    write_deblended(result, path)
except FileExistsError as error:     # astrodeblend.OutputExistsError
    print(f"{type(error).__name__}: {error}")

# %%
# Reopen it with astropy
# ----------------------
# Every HDU carries ``CHECKSUM`` and ``DATASUM``; ``checksum=True`` verifies
# them on opening.
with fits.open(path, checksum=True) as hdul:
    hdul.info()
    primary = hdul[0].header.copy()
    blend_header = hdul["BLEND"].header.copy()
    sources = [hdu.data for hdu in hdul if hdu.name == "SOURCE"]
    source_headers = [hdu.header for hdu in hdul if hdu.name == "SOURCE"]
    residual = hdul["RESIDUAL"].data
    segmap = hdul["SEGMAP"].data
    catalog = Table.read(hdul["CATALOG"])

# %%
# The provenance: the software and format versions, the model and the sha256
# of its weights, the input file(s), the number of sources, and one
# ``HISTORY`` card per processing step with its parameters.
print(repr(primary))

# %%
# Each ``SOURCE`` HDU is a cutout: ``CUTX0`` and ``CUTY0`` give the 0-based
# column and row of its first pixel in ``BLEND`` (``LTV1``, ``LTV2`` say the
# same to DS9), and its WCS is the cutout's own.  The centre is given in
# ``BLEND`` pixels and on the sky:
for header in source_headers:
    print(f"SOURCE {header['EXTVER']}: {header['NAXIS1']}x{header['NAXIS2']} pixels at "
          f"CUTX0={header['CUTX0']} CUTY0={header['CUTY0']}  X_CENT={header['X_CENT']:.2f} "
          f"Y_CENT={header['Y_CENT']:.2f} RA_CENT={header['RA_CENT']:.6f} "
          f"DEC_CENT={header['DEC_CENT']:.6f} FLUX={header['FLUX']:.2f}")
print("ADBFMT =", primary["ADBFMT"], " ADBFLUX =", primary["ADBFLUX"])
for name, fmt in [("x_centroid", ".2f"), ("y_centroid", ".2f"), ("ra", ".6f"),
                  ("dec", ".6f"), ("flux", ".2f")]:
    catalog[name].info.format = fmt
print(catalog)

# %%
# Rebuild the full-frame image of each source: its data go at
# ``[CUTY0:CUTY0+h, CUTX0:CUTX0+w]`` of a zero frame the shape of ``BLEND``.
frames = []
for data, header in zip(sources, source_headers):
    frame = np.zeros(result.blend.shape, dtype=np.float32)
    x0, y0 = header["CUTX0"], header["CUTY0"]
    h, w = data.shape[-2:]
    frame[:, y0:y0 + h, x0:x0 + w] = data
    frames.append(frame)

# %%
# The cutout's WCS puts its pixel (0, 0) where the ``BLEND`` WCS puts pixel
# (CUTX0, CUTY0):
first = source_headers[0]
print(WCS(first, naxis=2).pixel_to_world(0, 0))
print(WCS(blend_header, naxis=2).pixel_to_world(first["CUTX0"], first["CUTY0"]))

# %%
# :func:`~astrodeblend.io.read_deblended` reads the file back into a
# ``DeblendResult`` holding the cutouts and their origins; ``sources`` builds
# the full frames on request (N x frame memory: prefer ``cutouts`` on large
# images).  ``write_deblended(..., full_frame=True)`` writes full-size
# ``SOURCE`` HDUs instead, for tools that want them.
again = read_deblended(path)
print(again, "origins:", again.origins.tolist())
print("same sources:", np.array_equal(again.sources, np.stack(frames)))

# %%
# Plot the HDUs on the sky
# ------------------------
# ``BLEND``, ``RESIDUAL`` and ``SEGMAP`` carry the WCS of the input; the
# sources are shown as the full frames rebuilt above.  With the celestial WCS
# (the cube's third axis is the band), matplotlib draws RA and Dec axes.
wcs_out = WCS(blend_header, naxis=2)
panels = [("BLEND", result.blend.data.mean(axis=0))]
panels += [(f"SOURCE {i + 1}", f.mean(axis=0)) for i, f in enumerate(frames)]
panels += [("RESIDUAL", residual.mean(axis=0)), ("SEGMAP", segmap)]
fig = plt.figure(figsize=(2.7 * len(panels), 3.4))
fig.subplots_adjust(left=0.09, right=0.99, bottom=0.16, top=0.86, wspace=0.08)
for k, (name, data) in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), k + 1, projection=wcs_out)
    if name == "SEGMAP":
        ax.imshow(data, origin="lower", cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    else:
        ax.imshow(np.sign(data) * np.abs(data) ** (1 / 2.2), origin="lower", cmap="magma",
                  vmin=-0.1, vmax=1.0)
    ax.set_title(name, pad=8)
    ax.coords[0].set_ticklabel(exclude_overlapping=True)
    ax.coords[0].set_axislabel("RA" if k == 0 else " ")
    ax.coords[1].set_axislabel("Dec" if k == 0 else " ")
    if k:
        ax.coords[1].set_ticklabel_visible(False)
plt.show()

# %%
# The example worked in a temporary folder; remove it.
shutil.rmtree(outdir)
