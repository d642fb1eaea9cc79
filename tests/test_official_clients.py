"""WaveSpeed's own clients, unmodified, against the emulator: proof it speaks the platform.

- the Python SDK ``wavespeed`` 2.0.5 (the ``test`` extra), in a worker thread;
- the MCP server ``wavespeed-mcp`` (PyPI), installed once into its own venv under
  ``~/.cache/wavespeed-async-tests/mcp-venv``; its tool functions are called in a subprocess,
  since it reads its configuration from the environment when imported;
- the JavaScript SDK ``wavespeed`` and the CLI ``@wavespeed/cli`` (npm), installed once into
  ``~/.cache/wavespeed-async-tests/npm`` (skipped when ``npm`` is missing or the install
  fails, e.g. offline). The CLI takes its base URL from its user config
  (``wavespeed config --base-url``), kept in a temporary ``XDG_CONFIG_HOME``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from wavespeed_async.emulator import Emulator
from wavespeed_async.emulator._media import png

from .support import FLUX, VIDEO

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # subprocesses or a soak

EDIT = "bytedance/dreamina-v3.0/edit"
IMAGE = "https://example.com/in.png"
KEY = "official-client-key"
#: Pinned so that a new release cannot change what these tests prove without a commit.
NPM_PACKAGES = ("wavespeed@0.3.2", "@wavespeed/cli@0.2.2")
MCP_PACKAGES = ("wavespeed-mcp==0.1.27", "pydantic<2.11")
CACHE = Path.home() / ".cache" / "wavespeed-async-tests"
NPM_CACHE = CACHE / "npm"
RUN_TIMEOUT = 60  # seconds for any one client run: a hang fails instead of stalling the suite


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(speed=1000, api_key=KEY) as emulator:  # a 30 s video takes 30 ms
        yield emulator


# --- the Python SDK ---------------------------------------------------------------------------


async def test_python_sdk_runs_both_seed_models(emu: Emulator) -> None:
    import wavespeed

    client = wavespeed.Client(api_key=KEY, base_url=emu.base_url)
    edit = {"prompt": "add a hat", "image": IMAGE, "size": "512*512"}

    def run_all() -> list[dict[str, Any]]:
        return [
            client.run(VIDEO, {"prompt": "a fox"}, poll_interval=0.005),
            client.run(EDIT, edit, poll_interval=0.005),
            client.run(FLUX, {"prompt": "cat"}, enable_sync_mode=True),
        ]

    video, image, synced = await anyio.to_thread.run_sync(run_all)
    assert video["outputs"][0].endswith(".mp4")
    assert image["outputs"][0].endswith(".png")
    assert len(synced["outputs"]) == 1
    assert emu.submit_count == 3


async def test_python_sdk_uploads_a_file(emu: Emulator, tmp_path: Path) -> None:
    import wavespeed

    picture = png(16, 16, (9, 9, 9))
    path = tmp_path / "input.png"
    path.write_bytes(picture)
    client = wavespeed.Client(api_key=KEY, base_url=emu.base_url)
    url = await anyio.to_thread.run_sync(client.upload, str(path))
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert (response.status, await response.read()) == (200, picture)
    assert emu.auth_leaks() == []


# --- the MCP server ---------------------------------------------------------------------------

_MCP_SCRIPT = """
import json, sys
from wavespeed_mcp import server
image = server.text_to_image(prompt="a lighthouse at dusk", num_images=2)
edited = server.image_to_image(image=sys.argv[1], images=[], prompt="make it winter")
video = server.generate_video(image=sys.argv[1], prompt="the lighthouse in a storm")
print(json.dumps([json.loads(result.text) for result in (image, edited, video)]))
"""


@pytest.fixture(scope="session")
def mcp_python() -> Path:
    """A Python with ``wavespeed-mcp``, in its own cached venv.

    Not in the ``test`` extra: it pins ``fastapi==0.109.2`` and ``uvicorn==0.27.1``, which
    would downgrade ours, and the ``mcp`` those pins allow (1.12) imports a private name that
    pydantic 2.11 removed, hence ``pydantic<2.11`` here.
    """
    venv = CACHE / "mcp-venv"
    python, marker = venv / "bin" / "python", venv / "installed.txt"
    if not marker.exists() or marker.read_text() != " ".join(MCP_PACKAGES):
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            install = [str(python), "-m", "pip", "install", "-q", *MCP_PACKAGES]
            subprocess.run(install, check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as error:
            pytest.skip(f"could not install {' '.join(MCP_PACKAGES)} from PyPI: {error}")
        marker.write_text(" ".join(MCP_PACKAGES))
    return python


async def test_mcp_server_tools_generate_images_and_a_video(
    emu: Emulator, mcp_python: Path
) -> None:
    env = {
        **os.environ,
        "WAVESPEED_API_KEY": KEY,
        "WAVESPEED_API_HOST": emu.base_url,
        "WAVESPEED_API_RESOURCE_MODE": "url",
        "WAVESPEED_LOG_LEVEL": "WARNING",
    }
    with anyio.fail_after(RUN_TIMEOUT):
        done = await anyio.run_process([str(mcp_python), "-c", _MCP_SCRIPT, IMAGE], env=env)
    image, edited, video = json.loads(done.stdout)
    assert [result["status"] for result in (image, edited, video)] == ["success"] * 3
    assert len(image["urls"]) == 2
    assert edited["urls"][0].endswith(".png")
    assert video["urls"][0].endswith(".mp4")
    assert sorted(task.model for task in emu.tasks.values()) == [
        "wavespeed-ai/flux-dev",
        "wavespeed-ai/flux-kontext-pro",
        "wavespeed-ai/wan-2.1/i2v-480p-lora",
    ]


# --- the JavaScript SDK and the CLI (npm) -----------------------------------------------------


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The npm packages, installed once into a cache outside the repository."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the JavaScript clients")
    modules = NPM_CACHE / "node_modules"
    if not (modules / "@wavespeed" / "cli" / "dist" / "cli.js").exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE)]
        try:
            subprocess.run([*command, *NPM_PACKAGES], check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as error:
            pytest.skip(f"could not install {' '.join(NPM_PACKAGES)} from npm: {error}")
    return modules


_JS_SCRIPT = """
const { Client } = require("wavespeed");
const [baseUrl, key, file, video_model, image_model] = process.argv.slice(2);
(async () => {
  const client = new Client(key, { baseUrl });
  const video = await client.run(video_model, { prompt: "a fox" }, { pollInterval: 0.01 });
  const synced = await client.run(image_model, { prompt: "a cat" }, { enableSyncMode: true });
  const url = await client.upload(file);
  console.log(JSON.stringify({ video, synced, url }));
})().catch((error) => { console.error(error); process.exit(1); });
"""


async def test_javascript_sdk_runs_models_and_uploads(
    emu: Emulator, node_modules: Path, tmp_path: Path
) -> None:
    script = tmp_path / "run.cjs"
    script.write_text(_JS_SCRIPT)
    picture = tmp_path / "in.png"
    picture.write_bytes(png(8, 8, (1, 2, 3)))
    env = {**os.environ, "NODE_PATH": str(node_modules)}
    with anyio.fail_after(RUN_TIMEOUT):
        done = await anyio.run_process(
            ["node", str(script), emu.base_url, KEY, str(picture), VIDEO, FLUX], env=env
        )
    answer = json.loads(done.stdout)
    assert answer["video"]["outputs"][0].endswith(".mp4")
    assert len(answer["synced"]["outputs"]) == 1
    async with aiohttp.ClientSession() as session, session.get(answer["url"]) as response:
        assert await response.read() == picture.read_bytes()
    assert emu.auth_leaks() == []


async def test_cli_commands_all_succeed(emu: Emulator, node_modules: Path, tmp_path: Path) -> None:
    cli = node_modules / "@wavespeed" / "cli" / "dist" / "cli.js"
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # its model cache lives under ~/.cache/wavespeed
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "WAVESPEED_API_KEY": KEY,
        "NO_COLOR": "1",
        "CI": "1",
    }

    async def wavespeed(*args: str) -> Any:
        with anyio.fail_after(RUN_TIMEOUT):
            done = await anyio.run_process(["node", str(cli), *args], env=env, check=False)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return json.loads(done.stdout) if "--json" in args else done.stdout.decode()

    await wavespeed("config", "--base-url", emu.base_url)
    answers: dict[str, Any] = {}

    async def keep(name: str, *args: str) -> None:
        answers[name] = await wavespeed(*args)

    async with anyio.create_task_group() as group:  # read-only commands, side by side
        group.start_soon(keep, "balance", "balance", "--json")
        group.start_soon(keep, "models", "models", "--json")
        group.start_soon(keep, "schema", "schema", EDIT, "--json")
        group.start_soon(
            keep, "price", "price", FLUX, "-p", "a cat", "-i", "num_images=2", "--json"
        )
    assert answers["balance"]["balance"] == 100.0
    assert VIDEO in json.dumps(answers["models"])
    assert "image" in json.dumps(answers["schema"])
    assert answers["price"]["unit_price"] == 0.006
    run = await wavespeed("run", FLUX, "-p", "a cat", "--sync", "--json")  # JS SDK test polls
    assert run["outputs"][0].endswith(".png")
    (task_id,) = emu.tasks
    history = await wavespeed("history", "--json")
    assert [item["id"] for item in history["items"]] == [task_id]
    assert (await wavespeed("delete", task_id, "--yes", "--json"))["deleted"] == [task_id]
    assert emu.tasks == {}
    assert emu.balance == pytest.approx(100.0 - 0.003)
