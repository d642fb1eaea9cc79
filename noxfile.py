"""Developer tasks.

`nox -s tests` runs the suite on every Python from 3.10 to 3.13 that is installed (missing ones
are skipped, and say so); `nox -s tests-3.12` on one. `lint`, `typecheck`, `docs` (the site,
built strictly, and its checks), `package` (build the sdist and wheel, check them) and `bench`
(measurements). Pythons installed with pyenv are found without selecting them first.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: Every tool and test dependency at a pinned version (see the file's header).
CONSTRAINTS = ("-c", ".ci/constraints.txt")


def pyenv_pythons(root: Path, wanted: list[str] = PYTHONS) -> list[Path]:
    """The ``bin`` directory of the newest pyenv CPython of each wanted minor version.

    pyenv's shims answer only for the versions selected (``pyenv global``, ``PYENV_VERSION``),
    so nox would report an installed 3.10 as not found; its own directories always answer.
    """
    newest: dict[str, tuple[int, Path]] = {}
    for path in (root / "versions").glob("3.*"):
        match = re.fullmatch(r"(3\.\d+)\.(\d+)", path.name)  # CPython only, no 3.13t, no -dev
        if match and match[1] in wanted and (path / "bin").is_dir():
            patch = int(match[2])
            if match[1] not in newest or patch > newest[match[1]][0]:
                newest[match[1]] = (patch, path / "bin")
    return [newest[minor][1] for minor in wanted if minor in newest]


def _find_pyenv_pythons() -> None:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = [str(path) for path in pyenv_pythons(root)]
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_find_pyenv_pythons()

nox.options.sessions = ["tests", "lint", "typecheck", "docs", "package"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite against the emulator (real loopback HTTP), README and docs included."""
    session.install(*CONSTRAINTS, "-e", ".[test,cli]")
    # Two workers: the suite mostly waits on loopback sockets and subprocesses (about 40% of a
    # core busy), so two halve its time, and it stays green with the other core busy.
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and formatting) and the layer contract (import-linter, see pyproject)."""
    session.install(*CONSTRAINTS, "-e", ".", "ruff", "import-linter")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install(*CONSTRAINTS, "-e", ".[test,cli]", "mypy")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (MkDocs Material); any warning fails the build."""
    session.install(*CONSTRAINTS, "-e", ".[docs]", "pytest", "pytest-timeout")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "-f",
        "docs/mkdocs.yml",
        *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )
    # The build's checks on their own, and the built reference: every public name and method.
    session.run("pytest", "tests/test_docs_site.py", "-q")


@nox.session
def package(session: nox.Session) -> None:
    """Build the sdist and wheel into dist/, check them, install the wheel, inspect both."""
    session.install(*CONSTRAINTS, "build", "twine")
    session.run("python", "-c", "import shutil; shutil.rmtree('dist', ignore_errors=True)")
    session.run("python", "-m", "build")
    session.run("twine", "check", "--strict", "dist/*")  # twine expands the glob itself
    wheel = next(Path("dist").glob("*.whl"))
    session.install(*CONSTRAINTS, f"{wheel}[test]")
    session.run("pytest", "tests/test_packaging.py", env={"WAVESPEED_DIST": "dist"})


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side measurements (`nox -s bench -- --quick` for a smoke run); never gates CI.

    Writes benchmarks/results/ (results/quick/ with --quick): JSON, Markdown table, plot.
    """
    session.install(*CONSTRAINTS, "-e", ".[bench,storage]", "moto[server]")
    session.run("python", "-m", "benchmarks", *session.posargs)
    # Separate programs, each with its own servers: keeping outputs in object storage, and the
    # money promises while Redis restarts, freezes and a worker is killed.
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "-m", "benchmarks.storage", *quick)
    session.run("python", "-m", "benchmarks.chaos", *quick)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing of the pure modules (mutmut; minutes; never in CI).

    Configured in pyproject's [tool.mutmut]; `nox -s mutation -- <mutant names>` reruns some.
    Prints the killed share per module; survivors: `mutmut results`, `mutmut show <name>`.
    """
    session.install(*CONSTRAINTS, "-e", ".[test]", "mutmut")
    session.run("mutmut", "run", *session.posargs)
    for module, score in mutation_scores().items():
        session.log(f"{module}: {score}")


def mutation_scores(root: Path = Path("mutants")) -> dict[str, str]:
    """Killed mutants per module (a timeout counts as killed, as mutmut counts it)."""
    scores: dict[str, str] = {}
    for meta in sorted(root.glob("wavespeed_async/**/*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        name = meta.relative_to(root).as_posix().removesuffix(".py.meta")
        killed = sum(code in (1, 3, 24, -24, 36, 152, 255) for code in codes.values())
        scores[name] = f"{killed}/{len(codes)} killed ({100 * killed / max(1, len(codes)):.1f}%)"
    return scores
