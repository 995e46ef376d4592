"""The platform's "now": each symbol's newest event time.

Live, that is wall time to within a few seconds for every symbol; replaying history, it is the
replayed moment of that symbol's stream, so a window such as "the last 6 complete hours" or
"older than 7 days" means the same thing in both modes, and a replayed past is answered as if
live. Symbols keep their own clocks because replays of different eras can run side by side
(candles of one year beside the only day of trades a mirror holds): one symbol's present must not
make another's history look expired. Before a symbol's first event it has no clock.
"""

from __future__ import annotations

import datetime as dt

from pricepipe_assets.storage.cassandra import CassandraCluster

# One row per symbol: a small table read whole.
SELECT_SYMBOLS = "SELECT symbol, exchange, latest_event_time FROM symbols"
# Written with the event time as Cassandra's write time, so a late older event never moves a clock back.
UPDATE_SYMBOL = """
UPDATE symbols USING TIMESTAMP ? SET exchange = ?, latest_event_time = ? WHERE symbol = ?
"""


def symbol_clocks(cassandra: CassandraCluster) -> dict[str, dt.datetime]:
    """Each symbol's newest event time (UTC) among the symbols that have one."""
    rows = cassandra.session().execute(cassandra.prepare(SELECT_SYMBOLS))
    return {row.symbol: row.latest_event_time.replace(tzinfo=dt.UTC) for row in rows
            if row.latest_event_time is not None}


def platform_now(cassandra: CassandraCluster) -> dt.datetime | None:
    """The newest event time of any symbol, or None when no event was stored yet."""
    return max(symbol_clocks(cassandra).values(), default=None)
