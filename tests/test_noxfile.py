"""noxfile.py finds the Pythons the README promises, pyenv's included."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def noxfile() -> Iterator[ModuleType]:
    """noxfile.py, loaded once (nox refuses a session registered twice), PATH restored after."""
    pytest.importorskip("nox", reason="noxfile.py needs nox")
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", os.environ.get("PATH", ""))  # loading it adds pyenv's Pythons
        spec.loader.exec_module(module)
        yield module


def test_every_installed_pyenv_cpython_from_3_10_to_3_13_is_found_newest_patch_first(
    noxfile: ModuleType, tmp_path: Path
) -> None:
    for name in ("3.9.18", "3.10.2", "3.10.13", "3.11.7", "3.13.0", "3.13.0t", "3.12-dev"):
        (tmp_path / "versions" / name / "bin").mkdir(parents=True)
    found = noxfile.pyenv_pythons(tmp_path)
    assert found == [tmp_path / "versions" / v / "bin" for v in ("3.10.13", "3.11.7", "3.13.0")]


def test_no_pyenv_means_nothing_is_added(noxfile: ModuleType, tmp_path: Path) -> None:
    assert noxfile.pyenv_pythons(tmp_path / "absent") == []
