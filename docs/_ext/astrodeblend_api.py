"""List the names of ``astrodeblend.__all__`` with links to their reference pages.

A tiny local Sphinx extension.  ``.. astrodeblend-toplevel::`` renders a table
of every public name of the package with its one-line summary, linked to the
page of the (public) module that defines it, where ``automodapi`` documents
it.  Each object is thereby documented once, under its module, and the table
can never miss a name that the package exports.
"""

import importlib
import inspect
import re

from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)


def parse_rst(directive, lines, source):
    """Return the nodes of the RST ``lines`` that a local directive made."""
    container = __import__("docutils.nodes", fromlist=["section"]).section()
    container.document = directive.state.document
    nested_parse_with_titles(directive.state, StringList(lines, source=source), container)
    return container.children


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
        return parse_rst(self, lines, "astrodeblend-toplevel")


# ------------------------------------------------------------ the default model
def default_model_facts(path=None):
    """Return ``[(label, value), ...]`` describing a model checkpoint.

    Read with the package's own safe loader (``weights_only=True``): file,
    size, sha256 of the file, the weights hash written to ``ADBMHASH``, the
    architecture, the parameter counts and, when the checkpoint kept them,
    the training settings and the last validation scores.

    Parameters
    ----------
    path : str or `~pathlib.Path`, optional
        The checkpoint; the shipped default model when None.

    Returns
    -------
    list of tuple of str
    """
    from pathlib import Path

    from astrodeblend._checkpoint import load_checkpoint
    from astrodeblend.io import sha256_file
    from astrodeblend.pipeline import Deblender, default_model_path

    path = Path(path) if path is not None else default_model_path()
    payload = load_checkpoint(path)
    deblender = Deblender.load(path, device="cpu")  # what a deblend run records
    model_hash, config = deblender.model_hash, deblender.config
    models = {"generator": deblender.generator}
    if deblender.detector is not None:
        models["detector"] = deblender.detector
    facts = [("file", f"``astrodeblend/weights/{path.name}``"
              if path == default_model_path() else f"``{path.name}``"),
             ("file size", f"{path.stat().st_size / 2 ** 20:.1f} MiB"),
             ("sha256 of the file", f"``{sha256_file(path)}``"),
             ("weights hash (``ADBMHASH``)", f"``{model_hash}``")]
    for name, module in models.items():
        n_params = sum(p.numel() for p in module.parameters())
        facts.append((f"parameters of the {name}", f"{n_params:,}"))
    cfg = config.to_dict()
    facts.append(("architecture (``ModelConfig``)",
                  ", ".join(f"``{k}={v!r}``" for k, v in cfg.items())))
    train_cfg = payload.get("train_config") or {}
    if train_cfg:
        keys = ("epochs", "batch_size", "lr", "seed", "w_l1", "w_adv", "w_flux", "w_det",
                "det_pos_weight", "train_generator", "init_from", "augment", "amp")
        facts.append(("training settings (``TrainConfig``)",
                      ", ".join(f"``{k}={train_cfg[k]!r}``" for k in keys if k in train_cfg)))
    if payload.get("epoch") is not None:
        facts.append(("epochs trained", str(payload["epoch"])))
    history = payload.get("history") or []
    if history:
        last = history[-1]
        scores = [f"{label} {last[key]:.3g}" for key, label in
                  (("val_psnr", "PSNR (dB)"), ("val_ssim", "SSIM"),
                   ("val_psnr_blend", "PSNR of the untouched blend (dB)"),
                   ("det_recall", "detector recall"),
                   ("det_precision", "detector precision")) if key in last]
        if scores:
            facts.append((f"validation, epoch {last.get('epoch', '?')}", ", ".join(scores)))
        seconds = sum(float(row.get("time_s", 0) or 0) for row in history)
        if seconds:
            facts.append(("training time (sum over epochs)", f"{seconds / 3600:.2f} h"))
    # model-card entries written next to the weights (tools/make_default_model.py)
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        import json

        card = json.loads(card_path.read_text(encoding="utf-8"))
        # the recipe and its step timings are in tools/default_recipe.json and the card text
        known = {"name", "generator_sha256", "model_sha256", "model_config", "train_config", "epochs",
                 "history", "recipe", "timings"}
        for key, value in card.items():
            if key not in known and value not in (None, "", [], {}):
                text = value if isinstance(value, str) else json.dumps(value)
                text = re.sub(r"([\\*|`_])", r"\\\1", " ".join(text.split()))
                facts.append((key.replace("_", " "), text))  # literal in RST
    return facts


class AstrodeblendDefaultModel(SphinxDirective):
    """``.. astrodeblend-default-model::``: facts read from the shipped checkpoint."""

    has_content = False

    def run(self):
        try:
            facts = default_model_facts()
        except Exception as exc:  # noqa: BLE001 - any failure is a documentation problem
            logger.warning(f"cannot describe the default model: {exc}",
                           location=self.get_location())
            return []
        lines = [".. list-table::", "   :widths: 30 70", ""]
        for label, value in facts:
            lines += [f"   * - {label}", f"     - {value}"]
        lines.append("")
        return parse_rst(self, lines, "astrodeblend-default-model")


# ------------------------------------------------------- re-exported constants
def defining_comment(name, obj):
    """Return the ``#:`` comment lines of a constant documented where it is re-exported.

    autodoc reads the comment of ``astrodeblend.io.MAX_PIXELS`` from
    ``astrodeblend/io/__init__.py``, which only imports it, and so shows the
    docstring of ``int``.  This looks in the modules below the documented one
    for the one that defines the same object with a ``#:`` comment.

    Parameters
    ----------
    name : str
        Full documented name, ``module.attribute``.
    obj : object
        The constant.

    Returns
    -------
    list of str or None
        None when the documented module has a comment of its own, or no module
        below it has one.
    """
    import sys

    from sphinx.pycode import ModuleAnalyzer

    modname, _, attr = name.rpartition(".")
    if not modname.startswith("astrodeblend"):
        return None

    def comment(module):
        try:
            return ModuleAnalyzer.for_module(module).find_attr_docs().get(("", attr))
        except Exception:  # noqa: BLE001 - no source to analyse
            return None

    if comment(modname):
        return None
    for module in sorted(m for m in list(sys.modules) if m.startswith(modname + ".")):
        if getattr(sys.modules[module], attr, None) is obj:
            lines = comment(module)
            if lines:
                return list(lines)
    return None


def _constant_docs(app, what, name, obj, options, lines):
    if what not in ("data", "attribute"):
        return
    found = defining_comment(name, obj)
    if found is not None:
        lines[:] = found


def setup(app):
    app.add_directive("astrodeblend-toplevel", AstrodeblendToplevel)
    app.connect("autodoc-process-docstring", _constant_docs)
    app.add_directive("astrodeblend-default-model", AstrodeblendDefaultModel)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
