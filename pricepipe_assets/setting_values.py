"""Parsers of ``PRICEPIPE_*`` values: text in, a typed value out, or a ValueError whose message
says what was expected (``Settings.from_env`` puts the variable's name in front of it)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse


def parse_int(text: str, *, minimum: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"must be at least {minimum}, got {value}")
    return value


def parse_share(text: str) -> float:
    """A non-negative fraction such as 0.05 (5 %)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number such as 0.05, got {text!r}") from None
    if not 0 <= value < 10:
        raise ValueError(f"must be between 0 and 10, got {value}")
    return value


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_cron(text: str) -> str:
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected a cron expression of 5 fields such as '*/30 * * * *', got {text!r}")
    return " ".join(fields)


def parse_speed(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number such as 60, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"must be positive, got {value}")
    return value


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def parse_trades_replay(text: str) -> str:
    """``<market>/<SYMBOL>@<first day>[..<last day>]``, e.g. ``futures/cm/BTCUSD_PERP@2026-05-08``; empty: none."""
    text = text.strip()
    if text and not re.fullmatch(r"(spot|futures/um|futures/cm)/[A-Z0-9_]+@\d{4}-\d{2}-\d{2}(\.\.\d{4}-\d{2}-\d{2})?", text):
        raise ValueError(f"expected <market>/<SYMBOL>@<YYYY-MM-DD>[..<YYYY-MM-DD>] such as "
                         f"futures/cm/BTCUSD_PERP@2026-05-08, got {text!r}")
    return text


def parse_list(text: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    if not items:
        raise ValueError("expected a comma-separated list with at least one item")
    return items


def parse_symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(symbol.upper() for symbol in parse_list(text))
    for symbol in symbols:
        if not symbol.replace("_", "").isalnum() or not symbol.isascii():
            raise ValueError(f"symbol {symbol!r} must be ASCII letters, digits and _ only")
    return symbols


def parse_url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        url = text.strip().rstrip("/")
        scheme = urlparse(url).scheme
        if scheme not in schemes:
            raise ValueError(f"expected a URL starting with one of {', '.join(s + '://' for s in schemes)}, got {text!r}")
        return url

    return parse


def parse_postgres_url(text: str) -> str:
    """Empty: no PostgreSQL (Dagster keeps its SQLite files); else a libpq URL."""
    return parse_url("postgresql", "postgres")(text) if text.strip() else ""


def parse_lake_uri(text: str) -> str:
    """A lake is a local folder (plain path or ``file://``) or ``webhdfs://host:port/path``."""
    raw = text.strip()
    parsed = urlparse(raw)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else raw
        return str(Path(path).expanduser().resolve())
    if parsed.scheme == "webhdfs":
        if not parsed.hostname or not parsed.port:
            raise ValueError(f"a webhdfs lake needs host and port, e.g. webhdfs://namenode:9870/pricepipe, got {text!r}")
        return raw.rstrip("/")
    raise ValueError(f"expected a folder or webhdfs://host:port/path, got {text!r}")


def parse_identifier(text: str) -> str:
    """A CQL identifier: it is spliced into DDL, so only plain lower-case names are accepted."""
    name = text.strip()
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", name):
        raise ValueError(f"expected a lower-case name of letters, digits and _ (at most 48), got {text!r}")
    return name


def parse_replication(text: str) -> str:
    """``SimpleStrategy:1`` or ``NetworkTopologyStrategy:dc1=3,dc2=2`` -> a CQL replication map."""
    strategy, _, spec = text.strip().partition(":")
    if strategy == "SimpleStrategy":
        factor = parse_int(spec or "1", minimum=1)
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}"
    if strategy == "NetworkTopologyStrategy":
        pairs = []
        for item in parse_list(spec):
            dc, _, dc_factor = item.partition("=")
            if not dc.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"bad datacenter name {dc!r}")
            pairs.append(f"'{dc}': {parse_int(dc_factor, minimum=1)}")
        return "{'class': 'NetworkTopologyStrategy', " + ", ".join(pairs) + "}"
    raise ValueError(f"expected SimpleStrategy:N or NetworkTopologyStrategy:dc=N,..., got {text!r}")


CONSISTENCY_LEVELS = ("ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")


def parse_consistency(text: str) -> str:
    """A Cassandra consistency level by name; empty: chosen from the keyspace's replication."""
    level = text.strip().upper()
    if level and level not in CONSISTENCY_LEVELS:
        raise ValueError(f"expected one of {', '.join(CONSISTENCY_LEVELS)}, got {text!r}")
    return level


def replication_factor(replication: str) -> int:
    """The smallest replication factor of a CQL replication map (of any datacenter)."""
    return min(int(factor) for factor in re.findall(r":\s*(\d+)", replication))


def parse_choice(*options: str) -> Callable[[str], str]:
    """One of ``options``, case-insensitive."""
    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return word

    return parse
