"""The layout's promises: the client is one class of doors, modules stay readable, no globals."""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import pkgutil
import re
from pathlib import Path

import pytest

import wavespeed_async
from wavespeed_async import ACCOUNT_LEVELS, AsyncWaveSpeed, Limits, WaveSpeed
from wavespeed_async.emulator import Emulator

from .support import client_for

PACKAGE = Path(wavespeed_async.__file__).parent
pytestmark = pytest.mark.anyio


def test_the_client_inherits_no_class_and_defines_every_public_method_in_client_py() -> None:
    assert AsyncWaveSpeed.__bases__ == (object,)
    public = [name for name in dir(AsyncWaveSpeed) if not name.startswith("_")]
    for name in public:
        member = inspect.getattr_static(AsyncWaveSpeed, name)
        function = getattr(member, "fget", member)
        if callable(function):
            assert inspect.getsourcefile(function) == str(PACKAGE / "client.py"), name
            assert inspect.getdoc(function), f"{name} has no docstring"
    # The blocking facade offers every one of them.
    assert {"text_to_video", "map", "balance", "price", "cancel"} <= set(public)
    assert set(public) - {"coordinator", "engine", "aclose"} <= set(dir(WaveSpeed))


def test_no_module_is_longer_than_one_sitting() -> None:
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    limit = {"client.py": 700}
    too_long = {name: n for name, n in lengths.items() if n > limit.get(name, 500)}
    assert not too_long
    top_level = [path.name for path in PACKAGE.glob("*.py")]
    assert len(top_level) <= 15, top_level


def test_every_logger_is_named_after_its_module() -> None:
    for module in pkgutil.walk_packages(wavespeed_async.__path__, "wavespeed_async."):
        if module.name.endswith("__main__"):
            continue
        log = getattr(importlib.import_module(module.name), "log", None)
        if isinstance(log, logging.Logger):
            assert log.name == module.name


def test_account_levels_cannot_be_changed_by_a_caller() -> None:
    with pytest.raises(TypeError):
        ACCOUNT_LEVELS["gold"] = Limits(submits_per_minute=1)  # type: ignore[index]
    assert Limits.for_level("gold").submits_per_minute == 3000


@pytest.mark.parametrize("umask", [0o077, 0o022])
async def test_a_saved_output_gets_the_mode_the_live_umask_gives_a_new_file(
    emulator: Emulator, tmp_path: Path, umask: int
) -> None:
    async with client_for(emulator) as client:
        prediction = await client.run("wavespeed-ai/flux-dev", {"prompt": "a fox"})
        previous = os.umask(umask)  # set after import: the library must read it live
        try:
            [path] = await client.download(prediction, tmp_path)
        finally:
            os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_package_imports_no_module_by_a_private_name_of_another() -> None:
    """A module calls another's public names: ``from x import _y`` is refused (tests aside)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private and node.module.split(".")[-1] != "__future__":
                    offenders.append(f"{path.relative_to(PACKAGE)}: {node.module} {private}")
    assert not offenders


def test_every_install_line_works_from_a_checkout() -> None:
    # The package is not on the index: no page or message may tell anyone to install it from
    # there ("pip install wavespeed-async[...]"); a checkout's ".[extra]" or the plain
    # dependency works.
    root = PACKAGE.parent
    texts = [root / "README.md", *(root / "docs" / "pages").glob("*.md")]
    texts += list(PACKAGE.rglob("*.py"))
    pattern = re.compile(r"pip install\s+['\"]?wavespeed-async")
    offending = [str(path.relative_to(root)) for path in texts if pattern.search(path.read_text())]
    assert not offending
