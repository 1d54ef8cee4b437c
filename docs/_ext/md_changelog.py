"""Convert ``CHANGELOG.md`` into reStructuredText at build time.

A tiny local Sphinx extension (myst is not a dependency).  The changelog
keeps the simple Markdown of the project (``#`` headings, ``-`` bullets with
indented continuation lines, backtick code, ``**bold**`` and
``[text](url)`` links); `markdown_to_rst` turns it into RST that docutils
reads without warnings, and the ``builder-inited`` hook writes it to
``docs/generated/changelog.rst.inc``, which ``changelog.rst`` includes.
"""

import re
from pathlib import Path

_HEADINGS = {1: "=", 2: "-", 3: "^", 4: '"'}
_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _plain(value):
    """Convert Markdown text without code spans: keep links and bold, escape the rest."""
    placeholders = []

    def keep(rst):
        placeholders.append(rst)
        return f"\x00{len(placeholders) - 1}\x00"

    value = _LINK.sub(lambda m: keep(f"`{m.group(1)} <{m.group(2)}>`__"), value)
    value = _BOLD.sub(lambda m: keep(f"**{m.group(1)}**"), value)
    # escape what RST would read as markup
    value = value.replace("\\", "\\\\")
    value = re.sub(r"([*|`])", r"\\\1", value)
    value = re.sub(r"(\w)_(?=\W|$)", r"\1\\_", value)
    return re.sub(r"\x00(\d+)\x00", lambda m: placeholders[int(m.group(1))], value)


def _inline(text):
    """Convert the inline Markdown of one line of text to RST."""
    pieces = []
    pos = 0
    # split out code spans first: their content is literal
    for match in _CODE.finditer(text):
        pieces.append(("text", text[pos:match.start()]))
        pieces.append(("code", match.group(1)))
        pos = match.end()
    pieces.append(("text", text[pos:]))
    out = []
    for i, (kind, value) in enumerate(pieces):
        if kind == "code":
            before = out[-1][-1:] if out and out[-1] else ""
            after = pieces[i + 1][1][:1] if i + 1 < len(pieces) else ""
            # RST inline markup must be delimited by space or punctuation
            left = "\\ " if re.match(r"\w", before) else ""
            right = "\\ " if re.match(r"\w", after) else ""
            out.append(f"{left}``{value.strip()}``{right}")
            continue
        out.append(_plain(value))
    return "".join(out)


def markdown_to_rst(markdown):
    """Return the RST text of a changelog written in simple Markdown.

    Parameters
    ----------
    markdown : str
        The contents of ``CHANGELOG.md``.

    Returns
    -------
    str
        RST; the top-level ``#`` title is dropped (the page has its own).
    """
    blocks = []  # ("heading", level, text) | ("item", depth, text) | ("para", 0, text)
    for raw in markdown.splitlines():
        line = raw.rstrip()
        heading = re.match(r"^(#{1,4})\s+(.*)$", line)
        bullet = re.match(r"^(\s*)[-*+]\s+(.*)$", line)
        if heading:
            blocks.append(["heading", len(heading.group(1)), heading.group(2).strip()])
        elif bullet:
            blocks.append(["item", len(bullet.group(1)) // 2, bullet.group(2).strip()])
        elif not line.strip():
            blocks.append(["blank", 0, ""])
        elif blocks and blocks[-1][0] in ("item", "para"):
            # continuation line: join, so that code spans may cross lines
            blocks[-1][2] += " " + line.strip()
        else:
            blocks.append(["para", 0, line.strip()])
    lines = []
    previous, depth = "blank", 0
    for kind, level, text in blocks:
        if kind == "heading":
            if level > 1:
                title = _inline(text)
                lines += ["", title, _HEADINGS[level - 1] * max(len(title), 3), ""]
        elif kind == "item":
            if previous != "item" or level != depth:
                lines.append("")  # RST wants a blank line around nested lists
            lines.append("  " * level + "- " + _inline(text))
            depth = level
        elif kind == "para":
            lines += ["", _inline(text), ""]
        else:
            lines.append("")
        previous = kind
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"


def _write_changelog(app):
    source = Path(app.srcdir).parent / "CHANGELOG.md"
    target = Path(app.srcdir) / "generated" / "changelog.rst.inc"
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        text = markdown_to_rst(source.read_text(encoding="utf-8"))
    else:
        text = "The changelog is in ``CHANGELOG.md`` at the top of the repository.\n"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


def setup(app):
    app.connect("builder-inited", _write_changelog)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
