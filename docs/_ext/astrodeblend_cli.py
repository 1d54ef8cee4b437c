"""Render the ``astrodeblend`` command-line help into the documentation.

A tiny local Sphinx extension (no new dependency).  The directive::

    .. astrodeblend-cli::

inserts one section per subcommand of `astrodeblend.cli.build_parser`, with
the subcommand's one-line summary and its ``--help`` text in a literal
block, so the reference can never drift from the code.
"""

import os
from contextlib import contextmanager

from astrodeblend_api import parse_rst
from sphinx.util.docutils import SphinxDirective

WIDTH = 88


@contextmanager
def _fixed_width(columns=WIDTH):
    """Format argparse help at a fixed width whatever the terminal is."""
    old = {key: os.environ.get(key) for key in ("COLUMNS", "NO_COLOR", "PYTHON_COLORS")}
    os.environ["COLUMNS"] = str(columns)
    os.environ["NO_COLOR"] = "1"
    os.environ["PYTHON_COLORS"] = "0"
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def subcommands(parser):
    """Return ``[(name, summary, subparser), ...]`` in the order they were added.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The top-level parser.

    Returns
    -------
    list of tuple
    """
    import argparse

    out = []
    for action in parser._actions:  # argparse keeps no public accessor for these
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append((name, summaries.get(name, ""), sub))
    return out


def render_cli_rst(parser):
    """Return reStructuredText lines documenting ``parser`` and its subcommands.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`

    Returns
    -------
    list of str
    """
    for p in [parser] + [s for _, _, s in subcommands(parser)]:
        if hasattr(p, "color"):  # Python >= 3.14 colours help text
            p.color = False
    lines = []
    with _fixed_width():
        top = parser.format_help()
        subs = [(name, summary, sub.format_help()) for name, summary, sub in subcommands(parser)]
    lines += ["Overview", "--------", "", ".. code-block:: text", ""]
    lines += ["   " + line if line else "" for line in top.rstrip().splitlines()]
    lines.append("")
    for name, summary, text in subs:
        title = f"astrodeblend {name}"
        lines += [title, "-" * len(title), ""]
        if summary:
            summary = summary[0].upper() + summary[1:]
            lines += [summary.rstrip(".") + ".", ""]
        lines += [".. code-block:: text", ""]
        lines += ["   " + line if line else "" for line in text.rstrip().splitlines()]
        lines.append("")
    return lines


class AstrodeblendCLI(SphinxDirective):
    """``.. astrodeblend-cli::``: the help of every ``astrodeblend`` subcommand."""

    has_content = False
    required_arguments = 0

    def run(self):
        from astrodeblend.cli import build_parser

        lines = render_cli_rst(build_parser())
        return parse_rst(self, lines, "astrodeblend-cli")


def setup(app):
    app.add_directive("astrodeblend-cli", AstrodeblendCLI)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
