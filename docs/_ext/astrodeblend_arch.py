"""The architecture page's table of modules and their imports, read from the code.

A tiny local Sphinx extension.  ``.. astrodeblend-imports::`` renders one
row per module or subpackage of ``astrodeblend``: its floor (1 for modules
that import no other part of the package, one more than the highest of its
imports otherwise), the first sentence of its docstring and the parts of the
package it imports, at the top of a file or inside a function.  The table is
made from the source at every build, so it cannot drift from the code; an
import circle makes the build warn (an error with ``-W``).
"""

import ast
import importlib.util
import re
from pathlib import Path

from astrodeblend_api import parse_rst
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PACKAGE = "astrodeblend"
# the installed package's source (also when the docs are built from a copy)
ROOT = Path(importlib.util.find_spec(PACKAGE).origin).resolve().parent

# the package's face (lazy re-exports by name) and its ``python -m`` entry
_NOT_UNITS = {"__init__", "__main__"}


def parts(root=ROOT):
    """Return ``{name: [files]}``: each module, and each subpackage (``name/``) whole."""
    found = {}
    for path in sorted(root.iterdir()):
        if path.suffix == ".py" and path.stem not in _NOT_UNITS:
            found[path.stem] = [path]
        elif path.is_dir() and (path / "__init__.py").is_file():
            found[f"{path.name}/"] = sorted(path.rglob("*.py"))
    return found


def _module_of(path, root):
    rel = path.relative_to(root.parent).with_suffix("")
    names = list(rel.parts)
    return names[:-1] if names[-1] == "__init__" else names, names[-1] == "__init__"


def _imported(path, root):
    """The dotted names below the package that ``path`` imports (anywhere in the file)."""
    names, is_package = _module_of(path, root)
    package = names if is_package else names[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = base + (node.module.split(".") if node.module else [])
            else:
                module = (node.module or "").split(".")
            if module[:1] != [PACKAGE]:
                continue
            if node.module is None or len(module) == 1:  # from . import io, utils
                out |= {".".join(module + [alias.name]) for alias in node.names}
            else:
                out.add(".".join(module))
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE + ".")}
    return out


def import_table(root=ROOT):
    """Return ``{part: set of parts it imports}`` for the parts of the package."""
    found = parts(root)
    owner = {}
    for name, files in found.items():
        for path in files:
            owner[".".join(_module_of(path, root)[0])] = name
    table = {}
    for name, files in found.items():
        deps = set()
        for path in files:
            for dotted in _imported(path, root):
                pieces = dotted.split(".")
                # the longest module path that is a file of some part
                for cut in range(len(pieces), 1, -1):
                    part = owner.get(".".join(pieces[:cut]))
                    if part is not None:
                        break
                if part is not None and part != name:
                    deps.add(part)
        table[name] = deps
    return table


def circles(table):
    """Return the import circles of ``table`` (lists of parts), empty when imports are one-way."""
    found, state, stack = [], {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for dep in sorted(table.get(name, ())):
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[name] = "done"

    for name in sorted(table):
        if name not in state:
            visit(name)
    return found


def floors(table):
    """Return ``{part: floor}``: 1 for parts that import none, else 1 + the highest import."""
    memo = {}

    def floor(name):
        if name not in memo:
            memo[name] = 1 + max((floor(dep) for dep in table[name]), default=0)
        return memo[name]

    return {name: floor(name) for name in table}


def summary(files):
    """The first sentence of the docstring of a module, or of a package's ``__init__``."""
    first = files[0]
    init = [f for f in files if f.name == "__init__.py" and f.parent == files[0].parent]
    if init:
        first = init[0]
    doc = ast.get_docstring(ast.parse(first.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    return text.split(". ")[0].rstrip(".")


def rows(root=ROOT):
    """Return ``[(floor, part, summary, imports)]``, top floor first."""
    table = import_table(root)
    found = parts(root)
    level = floors(table) if not circles(table) else dict.fromkeys(table, 0)
    ordered = sorted(table, key=lambda n: (-level[n], n.strip("_/")))
    return [(level[n], n, summary(found[n]), sorted(table[n], key=lambda d: d.strip("_/")))
            for n in ordered]


def _literal_refs(text):
    """Turn a docstring's `name` references into literals: they resolve in their module only."""
    return re.sub(r"(?<![`:\w])`~?([^`]+)`(?!`)", r"``\1``", text or "")


class AstrodeblendImports(SphinxDirective):
    """``.. astrodeblend-imports::``: the package's parts, floors and imports."""

    has_content = False

    def run(self):
        table = import_table()
        for circle in circles(table):
            logger.warning(f"import circle in astrodeblend: {' -> '.join(circle)}",
                           location=self.get_location())
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 6 16 44 34", "",
                 "   * - floor", "     - part", "     - owns (its docstring)",
                 "     - imports (within astrodeblend)"]
        for level, name, text, deps in rows():
            lines += [f"   * - {level}", f"     - ``{name}``",
                      f"     - {_literal_refs(text) or ' '}",
                      "     - " + (", ".join(f"``{d}``" for d in deps) or "(none)")]
        lines.append("")
        return parse_rst(self, lines, "astrodeblend-imports")


def inside(root=ROOT):
    """Return ``{package: [(module, summary, sibling modules it imports)]}``."""
    out = {}
    for name, files in parts(root).items():
        if not name.endswith("/") or len(files) < 2:
            continue
        modules = {".".join(_module_of(f, root)[0]): f for f in files}
        entries = []
        for dotted, path in modules.items():
            siblings = sorted({m.rsplit(".", 1)[-1] for m in _imported(path, root)
                               if m in modules and m != dotted}, key=lambda m: m.strip("_"))
            short = dotted.rsplit(".", 1)[-1] if path.name != "__init__.py" else "__init__"
            entries.append((short, summary([path]), siblings))
        order = {"__init__": 0}
        out[name] = sorted(entries, key=lambda e: (order.get(e[0], 1), e[0].strip("_")))
    return out


class AstrodeblendPackages(SphinxDirective):
    """``.. astrodeblend-packages::``: the modules inside each subpackage."""

    has_content = False

    def run(self):
        lines = []
        for package, entries in inside().items():
            lines += [f"``{package}``", ""]
            for module, text, siblings in entries:
                uses = f" (imports {', '.join(f'``{s}``' for s in siblings)})" if siblings \
                    else ""
                lines.append(f"- ``{module}``: {_literal_refs(text) or ' '}{uses}")
            lines.append("")
        return parse_rst(self, lines, "astrodeblend-packages")


def setup(app):
    app.add_directive("astrodeblend-imports", AstrodeblendImports)
    app.add_directive("astrodeblend-packages", AstrodeblendPackages)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
