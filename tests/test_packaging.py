"""What the published artifacts hold: the wheel ships the package with its typing marker and
the emulator's media, and nothing of the tests; the version has one source.

The wheel and sdist are built by `nox -s package`, which runs this file with ``WAVESPEED_DIST``
naming the folder they are in; a plain `pytest` run skips it (building takes a fresh venv).
"""

from __future__ import annotations

import email.parser
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

import wavespeed_async

DIST = os.environ.get("WAVESPEED_DIST")
pytestmark = pytest.mark.skipif(
    not DIST, reason="needs built artifacts: run by `nox -s package` (WAVESPEED_DIST=dist)"
)


def _one(pattern: str) -> Path:
    found = sorted(Path(DIST or ".").glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST}, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def wheel_names() -> set[str]:
    with zipfile.ZipFile(_one("*.whl")) as wheel:
        return set(wheel.namelist())


@pytest.fixture(scope="module")
def metadata() -> email.message.Message:
    with zipfile.ZipFile(_one("*.whl")) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(wheel.read(name).decode())


def test_wheel_ships_the_typing_marker(wheel_names: set[str]) -> None:
    assert "wavespeed_async/py.typed" in wheel_names


def test_wheel_ships_the_emulator_media(wheel_names: set[str]) -> None:
    media = Path(wavespeed_async.__file__).parent / "emulator" / "media"
    expected = {f"wavespeed_async/emulator/media/{p.name}" for p in media.iterdir()}
    assert expected, "the source tree has no emulator media to compare with"
    assert expected <= wheel_names


def test_wheel_ships_the_pytest_plugin_and_no_tests(wheel_names: set[str]) -> None:
    assert "wavespeed_async/emulator/pytest_plugin.py" in wheel_names
    assert not [n for n in wheel_names if n.startswith(("tests/", "benchmarks/", "docs/"))]


def test_wheel_carries_the_license_and_the_version_of_the_package(
    wheel_names: set[str], metadata: email.message.Message
) -> None:
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel_names)
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Version"] == wavespeed_async.__version__
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers


def test_sdist_holds_the_license_docs_and_tests() -> None:
    with tarfile.open(_one("*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "docs/mkdocs.yml"} <= names
    assert "tests/test_packaging.py" in names
