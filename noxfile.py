"""Developer tasks: `nox -s tests lint typecheck`, and `nox -s bench` for measurements."""

from __future__ import annotations

import json
from pathlib import Path

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


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing of the pure modules (mutmut; minutes; never in CI).

    Configured in pyproject's [tool.mutmut]; `nox -s mutation -- <mutant names>` reruns some.
    Prints the killed share per module; survivors: `mutmut results`, `mutmut show <name>`.
    """
    session.install("-e", ".[test]", "mutmut>=3.3,<4")
    session.run("mutmut", "run", *session.posargs)
    for module, score in mutation_scores().items():
        session.log(f"{module}: {score}")


#: The part of webhooks.py the mutation goal covers: the signing scheme, not the receiver.
WEBHOOK_SCHEME = ("x__key_", "x_sign_webhook_", "x_verify_webhook_", "x__header_", "x__parse_body_")


def mutation_scores(root: Path = Path("mutants")) -> dict[str, str]:
    """Killed mutants per module (a timeout counts as killed, as mutmut counts it)."""
    scores: dict[str, str] = {}
    for meta in sorted(root.glob("wavespeed_async/*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        groups = {meta.name.removesuffix(".py.meta"): codes}
        if meta.name == "webhooks.py.meta":
            groups["webhooks (sign/verify)"] = {
                key: code
                for key, code in codes.items()
                if key.rpartition(".")[2].startswith(WEBHOOK_SCHEME)
            }
        for name, group in groups.items():
            killed = sum(code in (1, 3, 24, -24, 36, 152, 255) for code in group.values())
            scores[name] = (
                f"{killed}/{len(group)} killed ({100 * killed / max(1, len(group)):.1f}%)"
            )
    return scores
