"""The report's page: one self-contained HTML file (figures embedded as data URIs, no script, no network)."""

import base64
import html
import os
import urllib.parse

from lacnn_zoo.io import printable

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
.note { color: #666; font-size: 0.9em; } .left-out { color: #8a5a00; }
.warning { color: #a00000; font-weight: 600; }
tr.differs td { background: #fff4c2; }
"""


class Link:
    """A table cell that links to `href` (a relative path), showing `text`."""

    def __init__(self, href, text):
        self.href, self.text = href, text


class Page:
    """Sections of headings, paragraphs, tables and figures; `write` makes the HTML."""

    def __init__(self, title, subtitle=""):
        self.title, self.subtitle, self.parts = title, subtitle, []
        self.numbers = {}  # what the figures show, for report.json

    def heading(self, text):
        self.parts.append(f"<h2>{_escape(text)}</h2>")

    def text(self, text, kind=None):
        css = f' class="{kind}"' if kind else ""
        self.parts.append(f"<p{css}>{_escape(text)}</p>")

    def left_out(self, section, reason):
        self.text(f"{section}: left out, {reason}.", kind="left-out")
        self.numbers.setdefault("left_out", {})[section] = reason

    def table(self, header, rows, highlight=()):
        """`header` None: a two-column table of names and values; the rows at the indices `highlight` are
        highlighted."""
        head = "".join(f"<th>{_escape(str(h))}</th>" for h in header or ())
        marked = set(highlight)
        body = "".join(("<tr class=\"differs\">" if i in marked else "<tr>")
                       + "".join(f"<td>{_td(v)}</td>" for v in row) + "</tr>" for i, row in enumerate(rows))
        self.parts.append(f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>")

    def figure(self, path, alt):
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        self.parts.append(f'<img src="data:image/png;base64,{data}" alt="{_escape(alt)}" '
                          f'title="{_escape(os.path.basename(path))}">')

    def render(self):
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_escape(self.title)}'
                f"</title><style>{STYLE}</style></head><body><h1>{_escape(self.title)}</h1>"
                f'<p class="note">{_escape(self.subtitle)}</p>' + "\n".join(self.parts) + "</body></html>\n")


def _escape(text):
    """HTML text of `text`; a path's bytes that are not UTF-8 are shown as \\xff, not lost in an encoding error."""
    return html.escape(printable(text))


def _td(value):
    if isinstance(value, Link):
        return f'<a href="{html.escape(urllib.parse.quote(value.href.replace(os.sep, "/")))}">{_escape(value.text)}</a>'
    return _escape(_cell(value))


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"  # 289,066 parameters
    return str(value)
