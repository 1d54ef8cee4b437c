"""Sphinx HTML math renderer that draws ``:math:`` and ``.. math::`` with matplotlib.

MathJax typesets formulas in the reader's browser from a CDN, so an offline
copy of the documentation shows raw LaTeX; ``sphinx.ext.imgmath`` needs a
LaTeX installation.  This renderer needs neither: matplotlib's *mathtext*
(a TeX subset: fractions, sums, sub/superscripts, Greek, ``\\mathrm``,
``\\operatorname``, ``\\text``, ...) draws each formula at build time as an
SVG of glyph outlines, embedded in the page as a ``data:`` URI.  Pages work
offline, with no JavaScript and no extra files.

Use it with ``extensions += ["mathtext_math"]`` and
``html_math_renderer = "mathtext"``.  A formula that mathtext cannot parse
(``align`` environments, ``\\\\`` line breaks, unknown commands such as
``\\ge``; write ``\\geq``) stops the build with the parser's message and the
document's name.
"""

import base64
import html
import io
import re

from docutils import nodes
from sphinx.errors import ExtensionError

#: Font size (points) of the formulas; the theme's body text is about 12 pt.
FONT_SIZE = 12


def render_svg(latex):
    """Return ``(svg bytes, depth in points)`` of one formula in math mode."""
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import math_to_image

    buffer = io.BytesIO()
    with mpl.rc_context({"mathtext.fontset": "cm", "svg.fonttype": "path",
                         "svg.hashsalt": "astrodeblend"}):
        depth = math_to_image(f"${latex}$", buffer, prop=FontProperties(size=FONT_SIZE),
                              format="svg")
    # drop the date, so that a rebuild gives the same page
    svg = re.sub(rb"<dc:date>.*?</dc:date>", b"", buffer.getvalue(), flags=re.S)
    return svg, float(depth)


def _img(latex, *, inline, where):
    text = " ".join(latex.split())
    try:
        svg, depth = render_svg(text)
    except ValueError as exc:
        raise ExtensionError(f"{where}: matplotlib mathtext cannot draw the formula "
                             f"{text!r}:{exc}") from None
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    style = f' style="vertical-align: -{depth:.2f}pt"' if inline else ""
    return (f'<img class="math-svg{" math-inline" if inline else ""}" src="{uri}" '
            f'alt="{html.escape(text, quote=True)}"{style}/>')


def _where(translator, node):
    return f"{translator.builder.current_docname}:{node.line or '?'}"


def visit_math(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(_img(node.astext(), inline=True, where=_where(self, node)))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node.get("number"):
        self.body.append(f'<span class="eqno">({node["number"]})</span>')
    # sphinx joins several equations of one directive with blank lines
    for part in re.split(r"\n\s*\n", node.astext()):
        if part.strip():
            self.body.append(f"<p>{_img(part, inline=False, where=_where(self, node))}</p>")
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathtext", (visit_math, None), (visit_displaymath, None))
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
