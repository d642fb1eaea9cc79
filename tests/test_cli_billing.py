"""The bill on the command line: ``billings ID...`` and ``usage [--since]``, run in-process
(``cli.main``) against an emulator serving from its own thread; their tables, ``--json`` and
exit statuses, checked against what the emulated balance lost."""

from __future__ import annotations

import pytest

from .support import FLUX, VIDEO, Cli

BALANCE = 100.0


def test_billings_prints_each_billed_price_and_a_total_equal_to_what_the_balance_lost(
    cli: Cli,
) -> None:
    video = cli.submit(VIDEO, {"prompt": "a fox"})
    image = cli.submit(FLUX, {"prompt": "a fox"})
    spent = BALANCE - cli.emu.balance
    status, out, err = cli.run("billings", video, image)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == [video, image]
    assert VIDEO in lines[0]
    assert lines[-1] == f"total ${spent:,.4f} USD for 2 of 2 predictions"


def test_billings_names_a_prediction_that_was_not_billed(cli: Cli) -> None:
    video = cli.submit(VIDEO, {"prompt": "a fox"})
    unknown = "0" * 32
    status, out, _ = cli.run("billings", video, unknown)
    assert status == 0
    assert f"{unknown}           -  not billed (yet)" in out.splitlines()
    assert out.splitlines()[-1].endswith("for 1 of 2 predictions")


def test_billings_json_lists_one_record_per_billed_prediction(cli: Cli) -> None:
    video = cli.submit(VIDEO, {"prompt": "a fox"})
    image = cli.submit(FLUX, {"prompt": "a fox"})
    records = cli.json("billings", image, video)
    assert isinstance(records, list)
    assert {record["prediction_id"]: record["model"] for record in records} == {
        video: VIDEO,
        image: FLUX,
    }
    assert sum(record["price"] for record in records) == pytest.approx(BALANCE - cli.emu.balance)
    assert all(record["created_at"].endswith("Z") for record in records)


def test_billings_refuses_a_malformed_id_before_any_request(cli: Cli) -> None:
    sent = len(cli.emu.requests)
    status, out, err = cli.run("billings", "../balance")
    assert (status, out) == (1, "")
    assert "prediction" in err
    assert len(cli.emu.requests) == sent


def test_usage_table_gives_the_days_the_models_and_the_total_spent(cli: Cli) -> None:
    cli.submit(VIDEO, {"prompt": "a fox"})
    cli.submit(VIDEO, {"prompt": "a cat"})
    cli.submit(FLUX, {"prompt": "a fox"})
    spent = BALANCE - cli.emu.balance
    status, out, err = cli.run("usage")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    by_model = {line.split()[0]: line.split()[1:] for line in lines if "/" in line.split()[0]}
    assert by_model[VIDEO][0] == "2"
    assert by_model[FLUX][0] == "1"
    assert lines[0].split()[1:] == ["3", f"${spent:,.4f}"]  # today, all three
    assert lines[-1].startswith(f"total ${spent:,.4f} USD for 3 predictions since ")


def test_usage_json_agrees_with_what_the_balance_lost(cli: Cli) -> None:
    cli.submit(VIDEO, {"prompt": "a fox"})
    cli.submit(FLUX, {"prompt": "a fox"})
    usage = cli.json("usage", "--since", "1h")
    assert isinstance(usage, dict)
    assert usage["total"] == pytest.approx(BALANCE - cli.emu.balance)
    assert usage["count"] == 2
    assert usage["currency"] == "USD"
    assert [day["count"] for day in usage["days"]] == [2]
    assert {entry["model"] for entry in usage["models"]} == {VIDEO, FLUX}


def test_usage_since_an_iso_time_counts_up_to_now_and_a_bad_since_is_refused(cli: Cli) -> None:
    cli.submit(VIDEO, {"prompt": "a fox"})
    usage = cli.json("usage", "--since", "2001-01-01T00:00:00Z")
    assert isinstance(usage, dict)
    assert usage["count"] == 1  # the window reaches now
    status, out, err = cli.run("usage", "--since", "yesterday")
    assert (status, out) == (1, "")
    assert "--since" in err
