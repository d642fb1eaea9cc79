"""The documentation site: the build's own checks (docs/hooks.py), and the built API reference.

The build test needs the ``docs`` extra (mkdocs); ``nox -s docs`` runs this file after the
strict build.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks() -> ModuleType:
    pytest.importorskip("mkdocs", reason="the docs checks need mkdocs (the docs extra)")
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(*rows: tuple[str, ...]) -> str:
    head, *body = rows
    cells = "".join(f"<th>{cell}</th>" for cell in head)
    lines = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{lines}</tbody></table>"


def test_docs_build_refuses_a_table_without_rows() -> None:
    hooks = _hooks()
    # What Markdown makes of a header and its separator line with no row under them.
    empty = _table(("Metric", "ours"), ("", ""))
    assert hooks.table_problems(empty) == ["table 1 (Metric | ours) has no rows"]
    assert hooks.table_problems(_table(("Metric", "ours"), ("CPU", "0.44"))) == []


@pytest.mark.parametrize("cell", ["nan", "nanx", "nan KB", "nan%", "NaN lower"])
def test_docs_build_refuses_a_nan_cell(cell: str) -> None:
    problems = _hooks().table_problems(_table(("Target", "Measured"), ("< 10 KB", cell)))
    assert problems == [f"table 1 (Target | Measured): a cell reads {cell!r}"]


def test_docs_build_accepts_words_that_contain_nan() -> None:
    table = _table(("Metric", "note"), ("financial", "nano, finance, 1.5 nanoseconds"))
    assert _hooks().table_problems(table) == []


def test_docs_build_refuses_a_repeated_heading_but_not_repeated_api_entries() -> None:
    hooks = _hooks()
    page = (
        '<h3 id="learned">Learned polling</h3><h3 id="learned_1">Learned polling</h3>'
        '<h3 id="wavespeed_async.AsyncWaveSpeed.run">run</h3>'
        '<h3 id="wavespeed_async.WaveSpeed.run">run</h3>'
    )
    assert hooks.duplicate_headings(page) == ["heading 'Learned polling' appears 2 times"]


def test_reference_check_names_what_is_missing() -> None:
    hooks = _hooks()
    everything = "".join(f'<h2 id="wavespeed_async.{name}">' for name in hooks.public_api())
    assert hooks.missing_from_reference(everything) == []
    without_run = everything.replace('id="wavespeed_async.WaveSpeed.run"', "")
    assert hooks.missing_from_reference(without_run) == ["WaveSpeed.run"]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="building the site needs mkdocs (the docs extra)")
    pytest.importorskip("mkdocstrings", reason="the API reference needs mkdocstrings (docs extra)")
    site = tmp_path_factory.mktemp("site")
    config = str(DOCS / "mkdocs.yml")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(site)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "Formatting signatures requires" not in build.stderr  # ruff is in the docs extra
    return site


def test_reference_page_has_every_public_method_of_both_clients(built_site: Path) -> None:
    from wavespeed_async import AsyncWaveSpeed, WaveSpeed

    page = (built_site / "reference" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'\bid="wavespeed_async\.([\w.]+)"', page))
    for cls in (AsyncWaveSpeed, WaveSpeed):
        methods = [
            name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))
        ]
        missing = [name for name in methods if f"{cls.__name__}.{name}" not in anchors]
        assert missing == [], f"{cls.__name__} methods with no entry: {missing}"
    assert len([a for a in anchors if a.startswith("WaveSpeed.")]) >= 22


def test_reference_page_has_every_name_of_all(built_site: Path) -> None:
    import wavespeed_async

    page = (built_site / "reference" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'\bid="wavespeed_async\.(?:errors\.)?([\w]+)"', page))
    missing = [name for name in wavespeed_async.__all__ if name not in anchors | {"__version__"}]
    assert missing == []


def test_blocking_methods_show_their_parameters_one_per_line(built_site: Path) -> None:
    page = (built_site / "reference" / "index.html").read_text(encoding="utf-8")
    start = page.index('id="wavespeed_async.WaveSpeed.text_to_video"')
    entry = html.unescape(re.sub(r"<[^>]+>", "", page[start : start + 6000]))
    # Wrapped by the formatter (ruff), not one line cut off at the right edge.
    assert "text_to_video(\n    prompt: str,\n" in entry
    assert "aspect_ratio" in entry
    assert ") -> Prediction" in entry
