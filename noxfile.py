"""Developer tasks: `nox -s tests lint typecheck`, and `nox -s bench` for measurements."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against the emulator (real loopback HTTP)."""
    session.install("-e", ".[test,cli]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".[test,cli]", "mypy")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side measurements (`nox -s bench -- --quick` for a smoke run); never gates CI.

    Writes benchmarks/results/ (results/quick/ with --quick): JSON, Markdown table, plot.
    """
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)
