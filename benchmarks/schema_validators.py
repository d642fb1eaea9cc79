"""jsonschema vs jsonschema-rs on hostile catalogue schemas: the figures behind the choice.

Run: ``python benchmarks/schema_validators.py``. For each hostile case it prints the time of one
validation and the longest the event loop went without running while the validation ran in a
worker thread (``anyio.to_thread``): a validator that holds the GIL blocks the loop all the same.
A case that passes ``--limit`` seconds is abandoned and shown as ``>limit``.

Measured (jsonschema 4.26.0, jsonschema-rs 0.61.2, CPython 3.11, 2 shared cores, --limit 5)::

    case                               validator              time   loop stall
    ^(a+)+$, 'a'*24+'!'                jsonschema         564.3 ms       563 ms
    ^(a+)+$, 'a'*24+'!'                jsonschema-rs        2.0 ms         2 ms
    ^(a+)+$, 'a'*100000+'!'            jsonschema-rs        1.5 ms         1 ms
    allOf/$ref doubling, depth 16      jsonschema        1742.4 ms        17 ms
    allOf/$ref doubling, depth 16      jsonschema-rs        2.6 ms         3 ms
    allOf/$ref doubling, depth 20      jsonschema             >5 s        26 ms
    allOf/$ref doubling, depth 24      jsonschema-rs      635.4 ms       609 ms

jsonschema backtracks (each extra 'a' doubles the time, and Python's ``re`` holds the GIL, so
the loop stalls as long); jsonschema-rs's regex engine is linear. Neither bounds an
exponential ``$ref`` expansion, and jsonschema-rs holds the GIL while it validates: hence
``_wire/schema.py`` counts a schema's expansion before compiling it and leaves one past
10,000 subschemas (depth 14 of this doubling) to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import jsonschema
import jsonschema_rs


def redos(n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = {"properties": {"p": {"type": "string", "pattern": "^(a+)+$"}}}
    return schema, {"p": "a" * n + "!"}


def doubling(depth: int) -> tuple[dict[str, Any], dict[str, Any]]:
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(depth)
    }
    defs[f"d{depth}"] = {"type": "string", "minLength": 1}
    return {"$defs": defs, "properties": {"p": {"$ref": "#/$defs/d0"}}}, {"p": "x"}


def python_jsonschema(schema: dict[str, Any], instance: Any) -> int:
    return len(list(jsonschema.Draft202012Validator(schema).iter_errors(instance)))


def rust_jsonschema(schema: dict[str, Any], instance: Any) -> int:
    options = jsonschema_rs.RegexOptions()
    validator = jsonschema_rs.Draft202012Validator(schema, offline=True, pattern_options=options)
    return len(list(validator.iter_errors(instance)))


async def measure(check: Callable[[], int], limit: float) -> tuple[str, float]:
    """The validation's time (or ``>limit``) and the loop's longest stall meanwhile, in ms."""
    worst, last, done = 0.0, time.perf_counter(), False

    async def watch() -> None:
        nonlocal worst, last
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst, last = max(worst, now - last), now

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        with anyio.move_on_after(limit):
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        done = True
    took = time.perf_counter() - started
    return (f">{limit:g} s" if took >= limit else f"{took * 1000:.1f} ms"), worst * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=float, default=10.0)
    limit = parser.parse_args().limit
    warnings.simplefilter("ignore")
    cases = [
        ("^(a+)+$, 'a'*20+'!'", redos(20)),
        ("^(a+)+$, 'a'*24+'!'", redos(24)),
        ("^(a+)+$, 'a'*100000+'!'", redos(100_000)),
        ("allOf/$ref doubling, depth 16", doubling(16)),
        ("allOf/$ref doubling, depth 20", doubling(20)),
        ("allOf/$ref doubling, depth 24", doubling(24)),
    ]
    print(f"{'case':34} {'validator':14} {'time':>12} {'loop stall':>12}")
    for name, (schema, instance) in cases:
        validators = (("jsonschema", python_jsonschema), ("jsonschema-rs", rust_jsonschema))
        for label, validate in validators:
            if label == "jsonschema" and "100000" in name:
                print(f"{name:34} {label:14} {'(skipped: 2^100000 steps)':>26}")
                continue
            check = functools.partial(validate, schema, instance)
            took, stall = await measure(check, limit)
            print(f"{name:34} {label:14} {took:>12} {stall:>9.0f} ms", flush=True)


if __name__ == "__main__":
    anyio.run(main)
