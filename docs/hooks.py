"""Checks the docs build makes on every page it renders (an MkDocs hook; failing fails the build).

- A published table has rows, and no cell reads ``nan`` (a partial benchmark run's leftovers).
- No two headings of a page say the same thing (API reference headings excepted: ``run`` is a
  method of both clients).
- The API reference has an entry for every name of ``wavespeed_async.__all__`` and every public
  method of ``AsyncWaveSpeed`` and ``WaveSpeed``.

The functions are plain, so tests/test_docs.py checks them on their own too.
"""

from __future__ import annotations

import html
import inspect
import re
from collections import Counter
from typing import Any

from mkdocs.exceptions import PluginError

TABLE = re.compile(r"<table\b.*?</table>", re.DOTALL)
ROW = re.compile(r"<tr\b.*?</tr>", re.DOTALL)
CELL = re.compile(r"<t([dh])\b[^>]*>(.*?)</t\1>", re.DOTALL)
HEADING = re.compile(r'<h([1-6])\b[^>]*\bid="([^"]*)"[^>]*>(.*?)</h\1>', re.DOTALL)
TAG = re.compile(r"<[^>]+>")
NAN = re.compile(r"(?<![\w.])nanx?(?![a-z])", re.IGNORECASE)  # nan, nanx, nan KB, nan%
ANCHOR = re.compile(r'\bid="(wavespeed_async\.[\w.]+)"')
API_PREFIX = "wavespeed_async."


def _text(fragment: str) -> str:
    return " ".join(html.unescape(TAG.sub("", fragment)).replace("¶", "").split())


def table_problems(content: str) -> list[str]:
    """Tables without a body row, and cells that read ``nan``."""
    problems = []
    for number, table in enumerate(TABLE.findall(content), 1):
        rows = [CELL.findall(row) for row in ROW.findall(table)]
        # Markdown renders a header with no rows as one row of empty cells.
        body = [
            row
            for row in rows
            if row and all(kind == "d" for kind, _ in row) and any(_text(c) for _, c in row)
        ]
        header = _text(" | ".join(text for _, text in rows[0])) if rows and rows[0] else ""
        if not body:
            problems.append(f"table {number} ({header or 'no header'}) has no rows")
        for row in body:
            for _, cell in row:
                if NAN.search(_text(cell)):
                    problems.append(f"table {number} ({header}): a cell reads {_text(cell)!r}")
    return problems


def duplicate_headings(content: str) -> list[str]:
    """Headings written twice on one page (the generated API entries are not counted)."""
    texts = [
        _text(text)
        for _, anchor, text in HEADING.findall(content)
        if not anchor.startswith(API_PREFIX)
    ]
    return [f"heading {text!r} appears {n} times" for text, n in Counter(texts).items() if n > 1]


def public_api() -> list[str]:
    """What the reference must have an entry for: ``__all__``, and both clients' methods."""
    import wavespeed_async
    from wavespeed_async import AsyncWaveSpeed, WaveSpeed

    names = [name for name in wavespeed_async.__all__ if name != "__version__"]
    for cls in (AsyncWaveSpeed, WaveSpeed):
        names += [
            f"{cls.__name__}.{name}"
            for name, value in inspect.getmembers(cls)
            if not name.startswith("_")
            and (inspect.isfunction(value) or isinstance(value, property))
        ]
    return names


def missing_from_reference(content: str) -> list[str]:
    """The public names that the reference page has no entry for."""
    anchors = {anchor.removeprefix(API_PREFIX) for anchor in ANCHOR.findall(content)}
    anchors |= {anchor.removeprefix("errors.") for anchor in anchors}
    return [name for name in public_api() if name not in anchors]


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Fail the build on an empty table, a ``nan`` cell, a repeated heading, a missing entry."""
    problems = table_problems(html) + duplicate_headings(html)
    if page.file.src_uri == "reference.md":
        problems += [f"no entry for {name}" for name in missing_from_reference(html)]
    if problems:
        raise PluginError(f"{page.file.src_uri}: " + "; ".join(problems))
    return html
