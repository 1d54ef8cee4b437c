"""Cheap checks of the documentation sources (the full build is ``sphinx-build -W``).

- every public name of ``astrodeblend.__all__`` has a numpydoc docstring
  with an Examples section (exceptions excepted);
- every public module of the package has a page in ``docs/api.rst``;
- the local Sphinx extensions of ``docs/_ext`` work: the CLI reference
  covers every subcommand, and ``CHANGELOG.md`` converts to RST that
  docutils reads without a warning;
- the ``>>>`` examples written in the ``.rst`` pages run.
"""

import doctest
import importlib
import inspect
import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXT = DOCS / "_ext"

# Modules documented elsewhere (cli.rst) or private helpers.
NOT_IN_API = {"cli", "weights", "__main__", "__init__"}


@pytest.fixture(scope="module")
def ext():
    """Import the local Sphinx extensions of docs/_ext."""
    sys.path.insert(0, str(EXT))
    try:
        yield {name: importlib.import_module(name)
               for name in ("astrodeblend_cli", "astrodeblend_api", "md_changelog")}
    finally:
        sys.path.remove(str(EXT))


def _public_objects():
    import astrodeblend

    for name in astrodeblend.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(astrodeblend, name)
        if inspect.ismodule(obj):  # a submodule of the same name shadows the function
            obj = getattr(obj, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            continue
        yield name, obj


@pytest.mark.parametrize("name", [n for n, _ in _public_objects()])
def test_public_names_have_examples(name):
    obj = dict(_public_objects())[name]
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"astrodeblend.{name} has no docstring"
    assert "Examples\n--------" in doc, f"astrodeblend.{name} has no Examples section"
    assert ">>>" in doc, f"astrodeblend.{name}: the Examples section has no doctest"


def test_every_public_module_is_in_the_api_reference():
    package = ROOT / "astrodeblend"
    modules = {p.stem for p in package.glob("*.py")}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    modules = {m for m in modules if not m.startswith("_")} - NOT_IN_API
    api = (DOCS / "api.rst").read_text()
    missing = sorted(m for m in modules if f".. automodapi:: astrodeblend.{m}\n" not in api)
    assert not missing, f"modules without an automodapi section in docs/api.rst: {missing}"


def test_cli_reference_covers_every_subcommand(ext):
    from astrodeblend.cli import build_parser

    parser = build_parser()
    names = [name for name, _, _ in ext["astrodeblend_cli"].subcommands(parser)]
    assert names == ["info", "make-dataset", "train", "sample", "deblend", "evaluate", "demo"]
    text = "\n".join(ext["astrodeblend_cli"].render_cli_rst(parser))
    for name in names:
        assert f"astrodeblend {name}\n" in text
        assert f"usage: astrodeblend {name}" in text
    # help is formatted at a fixed width, whatever the terminal
    assert max(len(line) for line in text.splitlines()) <= ext["astrodeblend_cli"].WIDTH + 3


def _rst_problems(text):
    """Return docutils' messages (warning level and above) for an RST text."""
    from docutils.core import publish_doctree

    stream = io.StringIO()
    publish_doctree(text, settings_overrides={"warning_stream": stream, "report_level": 2,
                                              "halt_level": 5})
    return stream.getvalue()


def test_changelog_converts_without_warnings(ext):
    convert = ext["md_changelog"].markdown_to_rst
    rst = convert((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert "New Features" in rst
    assert _rst_problems(rst) == ""


def test_changelog_conversion_escapes_markup(ext):
    convert = ext["md_changelog"].markdown_to_rst
    markdown = ("# Changelog\n\n## 1.0\n\n### Bug Fixes\n"
                "- `read_image` of `.fits.fz` files; `a`s and `multi\n"
                "  line` code, foo_ bar, a lone * star, |pipes|, **bold**,\n"
                "  [a link](https://example.org)\n"
                "  - a nested item\n- second item\n")
    rst = convert(markdown)
    assert "``read_image``" in rst and "``multi line``" in rst
    assert "**bold**" in rst and "`a link <https://example.org>`__" in rst
    assert "Changelog" not in rst  # the page has its own title
    assert _rst_problems(rst) == ""


def test_toplevel_table_links_every_public_name(ext):
    import astrodeblend

    rows = ext["astrodeblend_api"].toplevel_rows()
    names = [name for name, _, _, _ in rows]
    assert names == [n for n in astrodeblend.__all__ if not n.startswith("__")]
    targets = dict((name, target) for name, _, target, _ in rows)
    assert targets["GalaxyImage"] == "astrodeblend.image.GalaxyImage"
    assert targets["read_image"] == "astrodeblend.io.read_image"


def test_architecture_table_is_read_from_the_code():
    sys.path.insert(0, str(EXT))
    try:
        arch = importlib.import_module("astrodeblend_arch")
    finally:
        sys.path.remove(str(EXT))
    table = arch.import_table()
    assert arch.circles(table) == []  # imports run one way
    assert arch.circles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    rows = arch.rows()
    assert rows[0][1] == "cli" and {"blend/", "data/", "io/", "errors"} <= set(table)
    assert table["errors"] == set() and "io/" in table["blend/"]
    assert "blend/" not in table["io/"] and "batch" not in table["pipeline"]
    inside = arch.inside()
    blend = {module: siblings for module, _, siblings in inside["blend/"]}
    assert blend["_scene"] == [] and "_scene" in blend["_survey"]


def test_reexported_constants_keep_their_comments(ext):
    # documented where re-exported (a package's __init__), defined in a private module
    from astrodeblend.blend import PROTOCOLS
    from astrodeblend.io import MAX_PIXELS

    comment = ext["astrodeblend_api"].defining_comment
    assert comment("astrodeblend.blend.PROTOCOLS", PROTOCOLS)[0].startswith(
        "Names of the blending protocols")
    assert "readers accept" in " ".join(comment("astrodeblend.io.MAX_PIXELS", MAX_PIXELS))
    from astrodeblend.result import CATALOG_COLUMNS  # its own module's comment: kept

    assert comment("astrodeblend.result.CATALOG_COLUMNS", CATALOG_COLUMNS) is None


@pytest.mark.parametrize("page", sorted(
    str(p.relative_to(DOCS)) for p in DOCS.rglob("*.rst")
    if p.parts[len(DOCS.parts)] not in {"_build", "api", "auto_examples", "generated"}
    and ">>>" in p.read_text()))
def test_rst_doctests(page):
    result = doctest.testfile(str(DOCS / page), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_default_model_facts(ext):
    from astrodeblend.pipeline import default_model_path

    # the model ships with the package: a wheel without it must fail here, not skip
    assert default_model_path().is_file(), f"no default model at {default_model_path()}"
    facts = dict(ext["astrodeblend_api"].default_model_facts())
    assert len(facts["weights hash (``ADBMHASH``)"].strip("`")) == 64
    assert int(facts["parameters of the generator"].replace(",", "")) > 0


# ------------------------------------------------------------ maths, sidebars, references
def _conf():
    """The names defined by docs/conf.py (imports the package, as Sphinx does)."""
    import runpy

    return runpy.run_path(str(DOCS / "conf.py"))


def _formulas():
    import re

    for page in sorted(DOCS.rglob("*.rst")):
        if page.parts[len(DOCS.parts)] in {"_build", "api", "auto_examples", "generated"}:
            continue
        text = page.read_text()
        for match in re.finditer(r":math:`([^`]+)`", text):
            yield page.name, match.group(1)
        for match in re.finditer(r"\.\. math::\n((?:\n|   .*\n)+)", text):
            for part in re.split(r"\n\s*\n", match.group(1)):
                if part.strip():
                    yield page.name, " ".join(part.split())


def test_maths_is_drawn_at_build_time_not_by_mathjax(ext):
    sys.path.insert(0, str(EXT))
    try:
        mathtext = importlib.import_module("mathtext_math")
    finally:
        sys.path.remove(str(EXT))
    conf = _conf()
    assert "sphinx.ext.mathjax" not in conf["extensions"]
    assert "mathtext_math" in conf["extensions"] and conf["html_math_renderer"] == "mathtext"
    formulas = list(_formulas())
    assert len(formulas) >= 5
    for page, latex in formulas:  # matplotlib's mathtext must parse every formula
        svg, depth = mathtext.render_svg(latex)
        assert svg.startswith(b"<?xml") and b"<path" in svg, (page, latex)
        assert depth >= 0


def test_pages_without_subpages_have_no_empty_section_navigation():
    import re

    conf = _conf()
    index = (DOCS / "index.rst").read_text()
    pages = re.findall(r"^   ([\w/]+)$", index, flags=re.M)
    assert "getting_started" in pages and "cli" in pages
    for page in pages:
        source = DOCS / f"{page}.rst"
        if source.is_file() and ".. toctree::" not in source.read_text() \
                and ".. automodapi::" not in source.read_text():
            assert conf["html_sidebars"].get(page) == [], page


def test_own_names_resolve_to_their_documented_home(ext):
    sys.path.insert(0, str(EXT))
    try:
        refs = importlib.import_module("astrodeblend_refs")
    finally:
        sys.path.remove(str(EXT))
    assert refs.candidates("astrodeblend.GalaxyImage") == ["astrodeblend.image.GalaxyImage"]
    assert refs.candidates("astrodeblend.DeblendResult.sources") == [
        "astrodeblend.result.DeblendResult.sources"]
    assert refs.candidates("GalaxyImage", "astrodeblend.result", "DeblendResult") == [
        "astrodeblend.result.DeblendResult.GalaxyImage", "astrodeblend.result.GalaxyImage"]
    objects = {"astrodeblend.models.ModelConfig": None,
               "astrodeblend.models.config.ModelConfig": None,
               "astrodeblend.result.CATALOG_COLUMNS": None,
               "astrodeblend.detect.CATALOG_COLUMNS": None}
    assert refs._unique_match(objects, "ModelConfig", "astrodeblend.train") == \
        "astrodeblend.models.ModelConfig"
    assert refs._unique_match(objects, "CATALOG_COLUMNS", "astrodeblend.result") == \
        "astrodeblend.result.CATALOG_COLUMNS"
    from astrodeblend import DeblendResult

    assert refs._class_knows(DeblendResult, "cutouts")  # listed under Attributes
    assert not refs._class_knows(DeblendResult, "no_such_name")


# Names that other modules' docstrings reference but that their module does
# not export yet (so automodapi does not document them): each belongs in the
# ``__all__`` of its module.  Remove an entry once it is exported.
PENDING_EXPORTS = set()


@pytest.mark.slow
def test_nitpicky_build_resolves_every_own_reference(tmp_path):
    """``sphinx-build -n`` (gallery off, about a minute) finds every reference target."""
    import re
    import shutil
    import subprocess

    for extra in ("sphinx_automodapi", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme"):
        pytest.importorskip(extra)  # the [docs] extra; the other tests need only [test]
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns(
        "_build", "auto_examples", "api", "generated", "sg_execution_times.rst"))
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    run = subprocess.run([sys.executable, "-m", "sphinx", "-n", "-q", "-b", "html",
                          "-D", "plot_gallery=0", str(tmp_path / "docs"),
                          str(tmp_path / "html")], capture_output=True, text=True, check=False)
    unresolved = set(re.findall(r"reference target not found: (\S+)", run.stderr))
    assert unresolved - PENDING_EXPORTS == set(), run.stderr[-3000:]
    # docutils errors (a malformed table, a bad directive) fail the -W build of CI
    assert [line for line in run.stderr.splitlines() if "ERROR:" in line] == []
    for page in ("getting_started", "cli"):
        html = (tmp_path / "html" / f"{page}.html").read_text()
        assert "bd-docs-nav" not in html  # no empty "Section Navigation" box
    html = (tmp_path / "html" / "user_guide" / "deblending.html").read_text()
    assert "math-svg" in html and "mathjax" not in html.lower()
