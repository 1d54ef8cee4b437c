"""List the names of ``astrodeblend.__all__`` with links to their reference pages.

A tiny local Sphinx extension.  ``.. astrodeblend-toplevel::`` renders a table
of every public name of the package with its one-line summary, linked to the
page of the (public) module that defines it, where ``automodapi`` documents
it.  Each object is thereby documented once, under its module, and the table
can never miss a name that the package exports.
"""

import importlib
import inspect

from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)


def public_home(name, obj):
    """Return the public module that documents ``obj`` (exported as ``name``).

    That is the shallowest module below the package, on the way to
    ``obj.__module__``, whose ``__all__`` lists ``name`` (the one that
    ``automodapi`` documents in ``api.rst``): ``astrodeblend.io`` for a
    function defined in ``astrodeblend.io.readers``.

    Parameters
    ----------
    name : str
        The exported name.
    obj : object
        The object.

    Returns
    -------
    str or None
    """
    module = getattr(obj, "__module__", None) or ""
    parts = [p for p in module.split(".") if p]
    for depth in range(2, len(parts) + 1):
        candidate = ".".join(parts[:depth])
        try:
            mod = importlib.import_module(candidate)
        except (ImportError, ValueError):
            return None
        if name in getattr(mod, "__all__", ()):
            return candidate
    return None


def _kind(obj):
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "func"
    return "data"


def _summary(obj):
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first


def toplevel_rows():
    """Return ``[(name, role, target, summary), ...]`` for ``astrodeblend.__all__``."""
    import astrodeblend

    rows = []
    for name in astrodeblend.__all__:
        if name.startswith("__"):
            continue
        try:
            obj = getattr(astrodeblend, name)
        except Exception as exc:  # noqa: BLE001 - report any import failure
            logger.warning(f"astrodeblend.{name} cannot be imported: {exc}")
            continue
        if inspect.ismodule(obj):
            # a submodule of the same name (deblend, train, evaluate) shadows the
            # function once imported: document the function it defines
            obj = getattr(obj, name, obj)
        home = public_home(name, obj)
        if home is None:
            logger.warning(f"astrodeblend.{name}: no public module lists it in __all__")
            continue
        kind = _kind(obj)
        role = {"exception": "class", "data": "data"}.get(kind, kind)
        rows.append((name, role, f"{home}.{name}", _summary(obj)))
    return rows


class AstrodeblendToplevel(SphinxDirective):
    """``.. astrodeblend-toplevel::``: the package's public names, linked."""

    has_content = False

    def run(self):
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "",
                 "   * - name", "     - summary"]
        for name, role, target, summary in toplevel_rows():
            lines += [f"   * - :{role}:`{name} <{target}>`", f"     - {summary or ' '}"]
        lines.append("")
        container = __import__("docutils.nodes", fromlist=["section"]).section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="astrodeblend-toplevel"),
                                 container)
        return container.children


def setup(app):
    app.add_directive("astrodeblend-toplevel", AstrodeblendToplevel)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
