"""The curated public surface: complete, documented, and importable without the emulator."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import wavespeed_async

ROOT = Path(__file__).parent.parent


def test_all_lists_every_public_name_and_each_has_a_docstring() -> None:
    public = {name for name in dir(wavespeed_async) if not name.startswith("_")}
    modules = {name for name in public if inspect.ismodule(getattr(wavespeed_async, name))}
    assert public - modules == set(wavespeed_async.__all__) - {"__version__"}
    for name in wavespeed_async.__all__:
        obj = getattr(wavespeed_async, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_public_methods_of_the_client_and_future_are_documented() -> None:
    for cls in (wavespeed_async.AsyncWaveSpeed, wavespeed_async.PredictionFuture):
        for name, member in vars(cls).items():
            if not name.startswith("_") and callable(member):
                assert inspect.getdoc(member), f"{cls.__name__}.{name} has no docstring"


def test_importing_the_client_does_not_import_the_emulator() -> None:
    code = "import sys, wavespeed_async; print('wavespeed_async.emulator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [
        line.strip()
        for line in readme.split("```")[1].splitlines()[1:]  # after the language tag
        if line.strip() and not line.startswith("#")
    ]
    assert len(commands) == 2, "the README opens with exactly two set-up commands"
    assert commands[1] in ci.splitlines()


def test_package_ships_py_typed() -> None:
    assert (ROOT / "wavespeed_async" / "py.typed").exists()
