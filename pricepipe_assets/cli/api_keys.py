"""``pricepipe api-key``: make, list and revoke the keys of the HTTP API.

A key is printed once, by ``create``, and stored only as its hash, so a lost key is revoked and
made again, never looked up. ``list`` shows what each key may do, never the key or its hash.
"""

from __future__ import annotations

import argparse
from typing import Any

from pricepipe_assets.settings import Settings
from pricepipe_assets.storage import api_keys
from pricepipe_assets.storage.cassandra import cassandra_cluster


def _run(args: argparse.Namespace, settings: Settings) -> int:
    cassandra = cassandra_cluster(settings)
    try:
        if args.action == "create":
            secret = api_keys.create(cassandra, args.name, args.scopes.split(","), args.rate)
            print(secret)
            print(f"[api-key] {args.name}: scopes {args.scopes}, {args.rate}; the key is shown only this once")
            if not (settings.api_key or settings.api_auth):
                print("[api-key] note: the API checks keys only with PRICEPIPE_API_AUTH=true (or PRICEPIPE_API_KEY set)")
            return 0
        if args.action == "revoke":
            if not api_keys.revoke(cassandra, args.name):
                print(f"[api-key] no key named {args.name!r}")
                return 1
            print(f"[api-key] {args.name} revoked; the API refuses it (and its sessions) within seconds")
            return 0
        print(_table(api_keys.list_keys(cassandra)))
        return 0
    finally:
        cassandra.close()


def _table(keys: list[api_keys.ApiKey]) -> str:
    rows = [("name", "scopes", "rate", "created")]
    rows += [(key.name, ",".join(sorted(key.scopes)), str(key.rate or "unlimited"),
              key.created_at.isoformat(timespec="seconds") if key.created_at else "") for key in keys]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _rate(text: str) -> api_keys.Rate:
    try:
        return api_keys.Rate.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_api_key_command(commands: Any) -> None:
    """Register ``api-key`` with the ``pricepipe`` parser's sub-commands."""
    command = commands.add_parser("api-key", help="create, list or revoke the API's keys (stored hashed in Cassandra)")
    actions = command.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (the only time it is shown)")
    create.add_argument("name", help="what the key is for, e.g. grafana (a-z, 0-9, '_', '.', '-')")
    create.add_argument("--scopes", required=True,
                        help=f"comma-separated, some of {', '.join(api_keys.SCOPES)}: read (symbols, candles, prices, "
                        "order books, statistics, moving averages), forecasts (forecasts, predictions), stream "
                        "(the chart's live updates)")
    create.add_argument("--rate", type=_rate, default=api_keys.DEFAULT_RATE,
                        help=f"requests per second or minute, e.g. 10/s or 600/m, per API worker "
                        f"(default {api_keys.DEFAULT_RATE})")
    actions.add_parser("list", help="names, scopes, rates and creation times (never a key)")
    revoke = actions.add_parser("revoke", help="delete a key; the API refuses it within seconds")
    revoke.add_argument("name")
    command.set_defaults(handler=_run)
