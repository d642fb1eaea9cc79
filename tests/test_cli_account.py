"""The account commands of the CLI, run in-process (``cli.main``) against an emulator that
serves from its own thread: their output, ``--json`` and exit statuses."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from wavespeed_async import ImageEdit
from wavespeed_async.cli.account import since

from .support import FLUX, VIDEO, Cli

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses

EDIT = ImageEdit.model_id


def test_balance_prints_usd_and_falls_as_tasks_are_submitted(cli: Cli) -> None:
    assert cli.run("balance") == (0, "$100.0000 USD\n", "")
    cli.submit(VIDEO, {"prompt": "a fox"})
    assert cli.json("balance") == {"balance": pytest.approx(99.5), "currency": "USD"}


def test_models_lists_the_catalogue_and_search_filters_it(cli: Cli) -> None:
    status, out, _ = cli.run("models", "--search", "DREAMINA")
    assert status == 0
    ids = [line.split()[0] for line in out.splitlines()]
    assert VIDEO in ids
    assert EDIT in ids
    assert FLUX not in ids
    _, by_name, _ = cli.run("models", "--search", "Pro Text To Video")  # names count too
    assert [line.split()[0] for line in by_name.splitlines()] == [VIDEO]
    models = cli.json("models")
    assert isinstance(models, list)
    assert FLUX in [model["model_id"] for model in models]


def test_schema_shows_each_field_with_what_it_accepts(cli: Cli) -> None:
    status, out, _ = cli.run("schema", VIDEO)
    assert status == 0
    assert "  prompt: required, a non-empty string" in out
    assert "  aspect_ratio: optional, one of 16:9, 4:3, 1:1, 3:4, 9:16, 21:9, 9:21" in out
    schema = cli.json("schema", EDIT)
    assert isinstance(schema, dict)
    assert schema["required"] == ["prompt", "image"]


def test_schema_of_an_unknown_model_is_one_error_line_naming_it(cli: Cli) -> None:
    status, out, err = cli.run("schema", "acme/nothing")
    assert (status, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith("error: model 'acme/nothing' is not in the catalogue")


def test_price_quotes_an_input_without_creating_a_task(cli: Cli) -> None:
    status, out, _ = cli.run("price", FLUX, "--input", '{"prompt": "a", "num_images": 2}')
    single = cli.json("price", FLUX, "--input", '{"prompt": "a"}')
    assert isinstance(single, dict)
    assert status == 0
    assert out == f"${2 * single['discounted_price']:,.4f} USD per task of {FLUX}\n"
    assert single["model_id"] == FLUX
    assert cli.emu.submit_count == 0


def test_price_with_an_input_that_is_not_json_exits_1(cli: Cli) -> None:
    status, _, err = cli.run("price", FLUX, "--input", "prompt=a")
    assert status == 1
    assert err.splitlines()[-1].startswith("error: --input='prompt=a' is invalid")


def test_history_filters_by_model_and_status(cli: Cli) -> None:
    video = cli.submit(VIDEO, {"prompt": "a fox"})
    image = cli.submit(FLUX, {"prompt": "a lighthouse"})
    listed = cli.json("history", "--since", "1h")
    assert isinstance(listed, list)
    assert [item["id"] for item in listed] == [image, video]  # newest first
    status, out, _ = cli.run("history", "--model", FLUX)
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == [image]
    assert cli.json("history", "--status", "failed") == []
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert cli.json("history", "--since", later.strftime("%Y-%m-%dT%H:%M:%SZ")) == []


def test_since_takes_an_age_or_an_iso_time() -> None:
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.timezone.utc)
    assert since("90m", now=now) == dt.datetime(2026, 1, 2, 10, 30, tzinfo=dt.timezone.utc)
    assert since("1d", now=now) == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert since("2026-01-02T08:00:00Z") == dt.datetime(2026, 1, 2, 8, tzinfo=dt.timezone.utc)


def test_delete_names_the_ids_it_did_not_delete_and_exits_1(cli: Cli) -> None:
    first = cli.submit(VIDEO, {"prompt": "one"})
    second = cli.submit(VIDEO, {"prompt": "two"})
    assert cli.run("delete", first, "unknown-id") == (
        1,
        "deleted 1 of 2 predictions\n",
        "not deleted (unknown ids, or older than the API's 7 days): unknown-id\n",
    )
    status, out, _ = cli.run("delete", first, second, "--json")
    assert status == 1
    assert json.loads(out) == {"deleted_count": 1, "deleted": [second], "not_deleted": [first]}
    assert cli.emu.tasks == {}
    assert cli.run("delete", "unknown-id", "unknown-id")[0] == 1


def test_delete_of_every_id_given_exits_0(cli: Cli) -> None:
    first = cli.submit(VIDEO, {"prompt": "one"})
    second = cli.submit(VIDEO, {"prompt": "two"})
    assert cli.json("delete", first, second, first) == {
        "deleted_count": 2,
        "deleted": [first, second],
        "not_deleted": [],
    }


def test_cancel_deletes_a_running_task_and_exits_1_for_a_finished_one(cli: Cli) -> None:
    cli.portal.call(cli.emu.set_duration, VIDEO, 100_000.0)  # 100 s of real time
    running = cli.submit(VIDEO, {"prompt": "long"})
    status, out, _ = cli.run("cancel", running)
    assert status == 0
    assert out.startswith(f"cancelled {running}")
    assert running not in cli.emu.tasks
    finished = cli.submit(FLUX, {"prompt": "quick"})
    cli.portal.call(cli.emu.advance, 60.0)
    assert cli.run("cancel", finished, "--json") == (
        1,
        json.dumps({"id": finished, "cancelled": False}) + "\n",
        "",
    )
    assert finished in cli.emu.tasks


# --- batch --dry-run and --max-cost ---------------------------------------------------------


@pytest.fixture
def batch_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.jsonl"
    lines = [
        {"text_to_video": {"prompt": "a fox"}},
        {"text_to_video": {"prompt": "a fox"}},
        {"model": FLUX, "input": {"prompt": "a lighthouse", "num_images": 2}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_batch_dry_run_prints_the_quotes_and_the_balance_and_creates_nothing(
    cli: Cli, batch_file: Path
) -> None:
    status, out, _ = cli.run("batch", str(batch_file), "--dry-run")
    assert status == 0
    video, image, total = out.splitlines()
    assert video.split()[:5] == ["2", "x", "$0.5000", "=", "$1.0000"]
    assert VIDEO in video
    assert image.split()[:1] == ["1"]
    assert FLUX in image
    assert total.startswith("total $1.0")
    assert "balance $100.0000 USD" in total
    plan = cli.json("batch", str(batch_file), "--dry-run")
    assert isinstance(plan, dict)
    assert [line["count"] for line in plan["lines"]] == [2, 1]
    assert plan["within_limits"] is True
    assert cli.emu.submit_count == 0


def test_batch_with_max_cost_below_the_quote_exits_1_with_no_task(
    cli: Cli, batch_file: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    status, _, err = cli.run("batch", str(batch_file), "--max-cost", "1", "--out", str(out_dir))
    assert status == 1
    assert err.splitlines()[-1].startswith("error: the batch is quoted at $1.0")
    assert "more than max_cost ($1.0000)" in err
    assert cli.emu.submit_count == 0
    dry, _, _ = cli.run("batch", str(batch_file), "--dry-run", "--max-cost", "1")
    assert dry == 1


def test_batch_within_max_cost_runs(cli: Cli, batch_file: Path, tmp_path: Path) -> None:
    status, _, err = cli.run("batch", str(batch_file), "--max-cost", "2", "--out", str(tmp_path))
    assert status == 0, err
    assert cli.emu.submit_count == 3
