"""Resolve cross-references to astrodeblend's own objects the way its docstrings write them.

Docstrings name objects as users import them, not where ``automodapi``
documents them: ``astrodeblend.GalaxyImage`` (documented as
``astrodeblend.image.GalaxyImage``), a bare ```GalaxyImage``` in another
module, ```DeblendResult.sources```, or an instance attribute such as
```cutouts``` that the class docstring describes.  This local extension
handles Sphinx's ``missing-reference`` event for the Python domain:

1. a name exported by the package (``astrodeblend.X``) goes to the page of
   the module that documents it (`astrodeblend_api.public_home`), and
   ``astrodeblend.mod.sub.X`` to ``astrodeblend.mod.X`` when that is the same
   object, exported and documented there;
2. otherwise the first documented object among ``module.Class.name``,
   ``module.name`` (the context of the reference) and the objects of the
   package whose full name ends with ``.name``, when exactly one does;
3. a name the class of the context has (an attribute, or one its docstring
   lists) goes to the class.

Anything else stays unresolved, so that ``sphinx-build -n`` reports it.
It also hides private base classes (``_BaselineDeblender``) from the
"Bases:" line of class pages, showing their public bases instead.
"""

import importlib
import inspect

from sphinx.util.nodes import make_refnode

PACKAGE = "astrodeblend"


def _objects(env):
    return env.get_domain("py").objects


def _suffix_matches(objects, name):
    tail = "." + name
    return [full for full in objects if full.startswith(PACKAGE + ".") and full.endswith(tail)]


def _unique_match(objects, name, module):
    """The one documented object of the package named ``*.name``, or None.

    Where several are, one object documented under two names gives the
    shorter name; otherwise the one in the referring module wins, then the
    one in its package.
    """
    matches = _suffix_matches(objects, name)
    if len(matches) > 1:  # one object documented under two names: the shorter one
        found = {id(_import(m)) for m in matches}
        if len(found) == 1 and _import(matches[0]) is not None:
            return min(matches, key=len)
    if len(matches) > 1 and module:
        for scope in (module, module.rsplit(".", 1)[0]):
            near = [m for m in matches if m.startswith(scope + ".")]
            if len(near) == 1:
                return near[0]
    return matches[0] if len(matches) == 1 else None


def _import(dotted):
    """Import ``module.attr.attr`` and return the object, or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def _class_knows(cls, name):
    """True when ``cls`` has attribute ``name`` or its docstring lists it."""
    if not inspect.isclass(cls):
        return False
    if hasattr(cls, name):
        return True
    doc = inspect.getdoc(cls) or ""
    return any(line.split(":")[0].strip() == name for line in doc.splitlines()
               if not line.startswith(" ") and ":" in line)


def candidates(target, module=None, cls=None):
    """Full names to try for ``target`` referenced from ``module`` / ``cls`` (in order)."""
    names = []
    if target.startswith(PACKAGE + "."):
        exported = target[len(PACKAGE) + 1:]
        head, _, rest = exported.partition(".")
        try:
            import astrodeblend
            from astrodeblend_api import public_home

            if head in astrodeblend.__all__:
                home = public_home(head, getattr(astrodeblend, head))
                if home:
                    names.append(".".join(filter(None, (home, head, rest))))
        except Exception:  # noqa: BLE001, S110 - a failed lookup leaves the target unresolved
            pass
        return names
    if module and cls:
        names.append(f"{module}.{cls}.{target}")
    if module:
        names.append(f"{module}.{target}")
    return names


def resolve(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target:
        return None
    objects = _objects(env)
    module, cls = node.get("py:module"), node.get("py:class")
    if module and not module.startswith(PACKAGE) and not target.startswith(PACKAGE):
        return None
    found = next((name for name in candidates(target, module, cls) if name in objects), None)
    if found is None and not target.startswith(PACKAGE + "."):
        found = _unique_match(objects, target, module)
    if found is None and target.startswith(PACKAGE + "."):
        # astrodeblend.models.config.X, documented where it is exported:
        # astrodeblend.models.X (the same object)
        path, _, name = target.rpartition(".")
        obj = _import(target)
        found = next((m for m in _suffix_matches(objects, name)
                      if path.startswith(m.rpartition(".")[0]) and obj is not None
                      and _import(m) is obj), None)
    if found is None and module and cls and "." not in target:
        owner = f"{module}.{cls}"
        if owner in objects and _class_knows(_import(owner), target):
            found = owner
    if found is None and target.count(".") == 1:  # Class.attribute of an instance
        owner_name, attribute = target.split(".")
        owner = next((n for n in candidates(owner_name, module) if n in objects), None) \
            or _unique_match(objects, owner_name, module)
        if owner and _class_knows(_import(owner), attribute):
            found = owner
    if found is None:
        return None
    entry = objects[found]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode,
                        found)


def public_bases(app, name, obj, options, bases):
    """Replace private base classes by their own bases (recursively), in place."""
    result = []
    pending = list(bases)
    while pending:
        base = pending.pop(0)
        if getattr(base, "__name__", "").startswith("_") and inspect.isclass(base):
            pending[:0] = [b for b in base.__bases__ if b is not object] or [object]
        elif base not in result:
            result.append(base)
    bases[:] = result


def setup(app):
    app.connect("missing-reference", resolve)
    app.connect("autodoc-process-bases", public_bases)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
