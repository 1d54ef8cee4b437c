"""Sphinx configuration of the astrodeblend documentation.

Build it offline, with warnings as errors::

    sphinx-build -W -b html docs docs/_build/html

The gallery examples in ``docs/examples`` run during the build (on CPU, on
data the package makes itself) and their figures go into
``docs/auto_examples``.  Nothing is downloaded: intersphinx is off unless
``ASTRODEBLEND_INTERSPHINX=1`` is set on a machine with network access.
"""

import os
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# Use the checkout next to this file even when the package is not installed.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

# Gallery examples and autodoc import matplotlib: never open a window.
os.environ.setdefault("MPLBACKEND", "Agg")

import astrodeblend  # noqa: E402

# -- Project information ------------------------------------------------------
project = "astrodeblend"
author = "astrodeblend developers"
copyright = f"{datetime.now(timezone.utc).year}, {author}"
release = astrodeblend.__version__
version = ".".join(release.split(".")[:2])

# -- General configuration ----------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_automodapi.automodapi",
    "sphinx_automodapi.automodsumm",
    "sphinx_gallery.gen_gallery",
    # local extensions in docs/_ext
    "astrodeblend_cli",
    "astrodeblend_api",
    "astrodeblend_arch",
    "md_changelog",
    "mathtext_math",
    "astrodeblend_refs",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated", "**/sg_execution_times.rst",
                    "sg_execution_times.rst", "examples/GALLERY_HEADER.rst"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
default_role = "obj"
pygments_style = "sphinx"

# numpydoc / autodoc
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
autodoc_typehints = "none"
autoclass_content = "class"

# automodapi writes one page per public object into docs/api/
automodapi_toctreedirnm = "api"
automodapi_writereprocessed = False
automodsumm_inherited_members = False
automodsumm_writereprocessed = False
graphviz_output_format = "svg"

# Formulas are drawn at build time by matplotlib's mathtext (docs/_ext/
# mathtext_math.py) and embedded as SVG: pages show maths offline, with no
# MathJax from a CDN and no LaTeX installation.
html_math_renderer = "mathtext"

# -- Nitpicky builds (``sphinx-build -n``) ------------------------------------
# Every reference to astrodeblend's own objects must resolve (docs/_ext/
# astrodeblend_refs.py maps the names docstrings use to the documented
# ones).  Third-party objects cannot resolve offline, where intersphinx is
# off: only those are ignored here.
THIRD_PARTY = ("pathlib", "os", "argparse", "concurrent", "numpy", "scipy", "torch", "astropy",
               "photutils", "matplotlib", "skimage", "distributed", "dask", "h5py", "PIL",
               "tqdm")
nitpick_ignore_regex = [(r"py:.*", rf"~?({'|'.join(THIRD_PARTY)})(\..+)?")]

# -- Intersphinx: off by default (the build must work offline) ----------------
if os.environ.get("ASTRODEBLEND_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "astropy": ("https://docs.astropy.org/en/stable/", None),
        "photutils": ("https://photutils.readthedocs.io/en/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
    }
else:
    intersphinx_mapping = {}

# -- sphinx-gallery -----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": ["examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"plot_",          # execute every plot_*.py
    "ignore_pattern": r"__init__\.py",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "plot_gallery": "True",
    # the Figure objects that astrodeblend.plotting returns (docs/_ext), then
    # pyplot figures; a name, not the function, so that the config pickles
    "image_scrapers": ("gallery_scrapers.astrodeblend_figures", "matplotlib"),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "show_memory": False,
    "show_signature": False,
    "write_computation_times": True,
}

# Gallery examples must not hide their own warnings, but a few third-party
# notices are noise in a rendered page.
warnings.filterwarnings("ignore", message=".*Matplotlib is currently using agg.*")

# -- HTML output --------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"astrodeblend {release}"
html_static_path = ["_static"]
html_css_files = ["astrodeblend.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
# The primary sidebar ("Section Navigation") lists the pages below the
# current top-level page.  Top-level pages without sub-pages (no toctree,
# no automodapi) get none, rather than an empty box; their own sections are
# in the right-hand "On this page".
html_sidebars = {
    source.stem: [] for source in sorted(DOCS.glob("*.rst"))
    if source.stem != root_doc
    and not any(d in source.read_text(encoding="utf-8")
                for d in (".. toctree::", ".. automodapi::"))
}
html_last_updated_fmt = None
html_show_sourcelink = True
