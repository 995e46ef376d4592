"""The platform's "now": the newest event time any symbol has reached.

Live, that is wall time to within a few seconds; replaying history, it is the replayed moment,
so a window such as "the last 6 complete hours" or "older than 7 days" means the same thing in
both modes, and a replayed past is answered as if live. Before any event there is no clock.
"""

from __future__ import annotations

import datetime as dt

from pricepipe_assets.resources.cassandra import CassandraResource

# One row per symbol: a small table read whole.
SELECT_SYMBOLS = "SELECT symbol, exchange, latest_event_time FROM symbols"


def platform_now(cassandra: CassandraResource) -> dt.datetime | None:
    """The newest event time of any symbol (UTC), or None when no event was stored yet."""
    rows = cassandra.session().execute(cassandra.prepare(SELECT_SYMBOLS))
    newest = max((row.latest_event_time for row in rows if row.latest_event_time is not None), default=None)
    return None if newest is None else newest.replace(tzinfo=dt.UTC)
