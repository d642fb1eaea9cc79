"""``python -m wavespeed_async``: the same as the ``wavespeed-async`` command."""

from .cli import main

raise SystemExit(main())
