"""The demo report's HTML page: one self-contained file next to its PNG figures."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Table:
    """A small table of already formatted cells."""

    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass
class Figure:
    """A PNG in the report folder and its caption."""

    filename: str
    caption: str


@dataclass
class Section:
    """One part of the report.

    Attributes
    ----------
    key : str
        Anchor name (and figure file prefix).
    title : str
    paragraphs : list of str
        Plain text (escaped when rendered).
    figures : list of Figure
    tables : list of Table
    notes : list of str
        Warnings raised while the section ran, and other remarks.
    seconds : float
        Wall time of the section.
    error : str or None
        Set when the section failed.
    """

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1.5em 2em 4em; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 0.2em; margin-top: 2.2em; }
.meta, .time { color: #57606a; font-size: 0.9em; }
nav ol { columns: 2; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; border-radius: 4px; }
figcaption { color: #57606a; font-size: 0.9em; margin-top: 0.3em; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 0.92em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.7em; text-align: right; }
th { background: #f6f8fa; }
td:first-child, th:first-child { text-align: left; }
.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 0.4em 0.8em; }
.error { background: #ffebe9; border-left: 4px solid #cf222e; padding: 0.4em 0.8em; }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in table.rows
    )
    return (
        f"<table><caption>{html.escape(table.caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _section(index: int, section: Section) -> str:
    parts = [f'<section id="{html.escape(section.key)}">']
    parts.append(f"<h2>{index}. {html.escape(section.title)}</h2>")
    for paragraph in section.paragraphs:
        parts.append(f"<p>{html.escape(paragraph)}</p>")
    if section.error is not None:
        parts.append(f'<p class="error">This section failed: {html.escape(section.error)}</p>')
    for figure in section.figures:
        parts.append(
            f'<figure><img src="{html.escape(figure.filename)}" '
            f'alt="{html.escape(figure.caption)}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
        )
    for table in section.tables:
        parts.append(_table(table))
    for note in section.notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    parts.append(f'<p class="time">Section time: {section.seconds:.1f} s</p></section>')
    return "\n".join(parts)


def render(title: str, meta: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page as a string."""
    toc = "".join(
        f'<li><a href="#{html.escape(s.key)}">{html.escape(s.title)}</a></li>' for s in sections
    )
    body = "\n".join(_section(i, s) for i, s in enumerate(sections, start=1))
    meta_html = "<br>".join(html.escape(line) for line in meta)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">{meta_html}</p>"
        f"<nav><ol>{toc}</ol></nav>\n{body}\n</body></html>\n"
    )
