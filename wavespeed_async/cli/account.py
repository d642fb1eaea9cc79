"""The account commands of ``wavespeed-async``, and the quote table of ``batch --dry-run``.

The commands are balance, models, schema, price, history, delete, cancel, billings and
usage. Each prints a readable table to stdout, or JSON with ``--json``; errors are one line
on stderr and exit status 1 (``cli.main`` prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import re
import shlex
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._wire.convert import MAX_PAYLOAD_DEPTH, converter, nested_too_deep, parse_datetime
from .._wire.schema import describe
from ..batch.cost import CostPlan
from ..client import AsyncWaveSpeed
from ..errors import InvalidInput

__all__ = ["add_commands", "print_cost_plan"]

Command = Callable[[str, Any, str], argparse.ArgumentParser]
ClientOpener = Callable[
    [argparse.Namespace], contextlib.AbstractAsyncContextManager[tuple[AsyncWaveSpeed, float]]
]
Body = Callable[[argparse.Namespace, AsyncWaveSpeed], Awaitable[int]]

HISTORY_STATUSES = ("completed", "failed", "processing")
PAGE_MAX = 100  # the API's largest page
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_commands(command: Command, open_client: ClientOpener) -> None:
    """Register the account commands with ``cli``'s ``command`` helper."""

    def run(body: Body) -> Callable[[argparse.Namespace], Awaitable[int]]:
        async def handler(args: argparse.Namespace) -> int:
            async with open_client(args) as (client, _):
                return await body(args, client)

        return handler

    command("balance", run(_balance), "Show the account's balance in USD.")
    models = command("models", run(_models), "List the models of the catalogue.")
    models.add_argument("--search", default=None, help="only models whose id, name or type has it")
    schema = command("schema", run(_schema), "Show the inputs a model accepts.")
    schema.add_argument("model", help="a model id, e.g. bytedance/dreamina-v3.0/edit")
    price = command("price", run(_price), "Quote what one task would cost (creates nothing).")
    price.add_argument("model", help="the model id to quote")
    price.add_argument(
        "--input", default="{}", help="the model's input as a JSON object (default: %(default)s)"
    )
    history = command("history", run(_history), "List recent predictions, newest first.")
    history.add_argument("--model", default=None, help="only this model id (default: all)")
    history.add_argument(
        "--status",
        choices=HISTORY_STATUSES,
        default=None,
        help="only this status, one of %(choices)s (default: all)",
    )
    history.add_argument(
        "--since", default=None, help="an age (30m, 2h, 1d) or an ISO time (default: 24 h ago)"
    )
    history.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help=f"predictions per page, 1 to {PAGE_MAX} (default: %(default)s)",
    )
    history.add_argument(
        "--page", type=int, default=1, metavar="N", help="which page, 1 or more (default: 1)"
    )
    delete = command("delete", run(_delete), "Delete predictions for good (results, outputs).")
    delete.add_argument("ids", nargs="+", metavar="ID", help="the task ids to delete")
    cancel = command("cancel", run(_cancel), "Cancel an unfinished prediction by deleting it.")
    cancel.add_argument("id", help="the task id to cancel (a finished task is kept)")
    billings = command("billings", run(_billings), "Show what predictions were billed, in USD.")
    billings.add_argument("ids", nargs="+", metavar="ID", help="the task ids to look up")
    usage = command("usage", run(_usage), "Show the account's spend per day and per model.")
    usage.add_argument(
        "--since", default="7d", help="an age (30m, 2h, 7d) or an ISO time (default: %(default)s)"
    )


def _usd(amount: float | None) -> str:
    return "-" if amount is None else f"${amount:,.4f}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))


async def _balance(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    balance = await client.balance()
    if args.json:
        _print_json({"balance": balance, "currency": "USD"})
    else:
        print(f"{_usd(balance)} USD")
    return 0


async def _models(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    models = await client.models()
    if args.search:
        text = args.search.lower()
        models = [
            model
            for model in models
            if any(text in value.lower() for value in (model.model_id, model.name, model.type))
        ]
    if args.json:
        _print_json([converter.unstructure(model) for model in models])
        return 0
    width = max((len(model.model_id) for model in models), default=0)
    for model in models:
        price = _usd(model.base_price)
        print(f"{model.model_id:<{width}}  {model.type or '-':<16} {price:>9}  {model.name}")
    return 0


async def _schema(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    model = await client.model(args.model)
    if args.json:
        _print_json(model.input_schema)
        return 0
    properties: Mapping[str, Any] = model.input_schema.get("properties") or {}
    print(f"{model.model_id}: {model.description or model.name}".rstrip(": "))
    for name in model.fields:  # a catalogue may send anything: each field is shown as it can
        field = properties[name] if isinstance(properties[name], Mapping) else {}
        need = "required" if name in model.required else "optional"
        default = f" (default {_shown(field['default'])})" if "default" in field else ""
        print(f"  {name}: {need}, {describe(field)}{default}")
    return 0


def _shown(value: object) -> str:
    """A catalogue's default as JSON, at most 80 characters (any value: it may be hostile)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return "<a value JSON cannot show>"
    return text if len(text) <= 80 else f"{text[:60]}...<{len(text)} characters>"


def _input(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
        deep = nested_too_deep(value)
    except ValueError:
        value, deep = text, False
    except RecursionError:
        deep = True
    if deep:
        raise InvalidInput(
            "--input", "<nested too deep>", f"JSON nested at most {MAX_PAYLOAD_DEPTH} levels"
        )
    if not isinstance(value, dict):
        raise InvalidInput("--input", text, 'a JSON object, such as \'{"prompt": "a fox"}\'')
    return value


async def _price(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    quote = await client.price(args.model, _input(args.input))
    if args.json:
        _print_json(converter.unstructure(quote))
        return 0
    listed = f" (list price {_usd(quote.price)})" if quote.price != quote.cost else ""
    print(f"{_usd(quote.cost)} {quote.currency} per task of {quote.model_id}{listed}")
    return 0


def since(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``: an age such as ``30m``, ``2h``, ``1d``, or an ISO-8601 time."""
    allowed = "an age (45s, 30m, 2h, 7d) or an ISO-8601 time, from year 1 on"
    match = _SINCE.match(text.strip().lower())
    if match:
        now = now or dt.datetime.now(dt.timezone.utc)
        try:
            return now - dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
        except OverflowError:  # 3000000d: before year 1; 99999999999d: past timedelta
            raise InvalidInput("--since", text, allowed) from None
    dated = re.match(r"^\d{4}-\d{2}-\d{2}", text.strip())
    when = parse_datetime(text, quiet=True) if dated else None
    if when is None:
        raise InvalidInput("--since", text, allowed)
    return when


async def _history(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    if not 1 <= args.limit <= PAGE_MAX:
        raise InvalidInput("--limit", args.limit, f"from 1 to {PAGE_MAX}")
    if args.page < 1:
        raise InvalidInput("--page", args.page, "1 or more")
    after = since(args.since) if args.since else None
    query = {"model": args.model, "status": args.status, "created_after": after}
    predictions = await client.recent_predictions(**query, page=args.page, page_size=args.limit)
    # A full page may be the last: ask for the one prediction after it.
    more = len(predictions) == args.limit and bool(
        await client.recent_predictions(**query, page=args.page * args.limit + 1, page_size=1)
    )
    if args.json:
        _print_json([converter.unstructure(prediction) for prediction in predictions])
    for prediction in [] if args.json else predictions:
        created = converter.unstructure(prediction.created_at) if prediction.created_at else "-"
        print(f"{prediction.id}  {prediction.raw_status:<10} {created}  {prediction.model}")
    if not predictions:
        where = "on this page" if args.page > 1 else "in the history"
        print(
            f"no predictions {where} (the API keeps 7 days; --since widens the default 24 h)",
            file=sys.stderr,
        )
    if more:
        print(f"more predictions exist: {_next_page(args)}", file=sys.stderr)
    return 0


def _next_page(args: argparse.Namespace) -> str:
    """The history command that shows the next page (the same filters)."""
    argv = ["wavespeed-async", "history"]
    for option in ("model", "status", "since", "base_url"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option.replace('_', '-')}", value]
    argv += ["--limit", str(args.limit), "--page", str(args.page + 1)]
    return shlex.join(argv + (["--json"] if args.json else []))


async def _delete(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    ids = list(dict.fromkeys(args.ids))  # each once, in the order given
    # One request per id: the API answers a count, and the user needs the ids.
    counts = await asyncio.gather(*(client.delete(prediction_id) for prediction_id in ids))
    deleted = [i for i, count in zip(ids, counts, strict=True) if count]
    kept = [i for i, count in zip(ids, counts, strict=True) if not count]
    if args.json:
        _print_json({"deleted_count": len(deleted), "deleted": deleted, "not_deleted": kept})
    else:
        print(f"deleted {len(deleted)} of {len(ids)} predictions")
    if kept:
        print(
            f"not deleted (unknown ids, or older than the API's 7 days): {' '.join(kept)}",
            file=sys.stderr,
        )
    return 1 if kept else 0


async def _cancel(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    cancelled = await client.cancel(args.id)
    if args.json:
        _print_json({"id": args.id, "cancelled": cancelled})
    elif cancelled:
        print(f"cancelled {args.id} (deleted; billing for it is the platform's call)")
    else:
        print(f"{args.id} had already finished: nothing was deleted")
    return 0 if cancelled else 1


async def _billings(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    records = await client.billings(*args.ids)
    if args.json:
        _print_json([converter.unstructure(record) for record in records])
        return 0
    billed = {record.prediction_id for record in records}
    for record in records:
        created = converter.unstructure(record.created_at) if record.created_at else "-"
        print(f"{record.prediction_id}  {_usd(record.price):>10}  {created}  {record.model}")
    for missing in dict.fromkeys(task_id for task_id in args.ids if task_id not in billed):
        print(f"{missing}  {'-':>10}  not billed (yet)")
    total = math.fsum(record.price for record in records)
    print(f"total {_usd(total)} USD for {len(records)} of {len(set(args.ids))} predictions")
    return 0


async def _usage(args: argparse.Namespace, client: AsyncWaveSpeed) -> int:
    end = dt.datetime.now(dt.timezone.utc)
    usage = await client.usage(since(args.since, now=end), end)
    per_model = sorted(usage.per_model.values(), key=lambda entry: (-entry.amount, entry.model))
    if args.json:
        _print_json(
            {
                "start": converter.unstructure(usage.start),
                "end": converter.unstructure(usage.end),
                "total": usage.total,
                "count": usage.count,
                "currency": "USD",
                "days": [
                    {"date": day.date.isoformat(), "count": day.count, "amount": day.amount}
                    for day in usage.days
                ],
                "models": [converter.unstructure(entry) for entry in per_model],
            }
        )
        return 0
    for day in usage.days:
        print(f"{day.date.isoformat()}  {day.count:>6}  {_usd(day.amount):>10}")
    width = max((len(entry.model) for entry in per_model), default=0)
    for entry in per_model:
        print(f"{entry.model:<{width}}  {entry.count:>6}  {_usd(entry.amount):>10}")
    print(f"total {_usd(usage.total)} USD for {usage.count} predictions since", end=" ")
    print(converter.unstructure(usage.start))
    return 0


def print_cost_plan(plan: CostPlan, max_cost: float | None, *, as_json: bool) -> bool:
    """Print a batch's quotes and the balance; returns whether it may run (limit and balance)."""
    limit = plan.balance if max_cost is None else min(max_cost, plan.balance)
    fits = plan.total <= limit + 1e-9
    if as_json:
        lines = [
            {
                "model": line.item.model,
                "input": line.item.input,
                "count": line.count,
                "cost": line.quote.cost,
                "total": line.total,
            }
            for line in plan.lines
        ]
        summary = {"total": plan.total, "balance": plan.balance, "max_cost": max_cost}
        _print_json({"lines": lines, **summary, "within_limits": fits, "currency": "USD"})
        return fits
    for line in plan.lines:
        shown = json.dumps(line.item.input, ensure_ascii=False)
        shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
        print(f"{line.count:>4} x {_usd(line.quote.cost):>9} = {_usd(line.total):>10}  ", end="")
        print(f"{line.item.model} {shown}")
    print(f"total {_usd(plan.total)} USD; balance {_usd(plan.balance)} USD", end="")
    print("" if max_cost is None else f"; max cost {_usd(max_cost)} USD")
    return fits
