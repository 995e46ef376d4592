"""Hostile-input campaign on Kafka: generated bad messages on every topic the platform consumes, read
by the platform itself (the stream worker `pricepipe stream`, and a real `dagster-daemon` with its
sensors and runs), beside real data.

Every consumed topic gets its share of ``--messages`` hostile messages (deep nesting, megabyte
payloads, random and invalid UTF-8 bytes, numbers of any length, wrong types, absurd values, lone
surrogates, truncated and empty messages), mixed with real records: a day of BTCUSDT minutes, a day of
its hours, the first BTCUSD_PERP trades of 2026-05-08, and one quote, order book, daily candle and
prediction after the flood. Hostile records are written for the symbol ``HOSTILE``, so one that
happens to be valid never overwrites a real row. Then it counts:

- crashes: runs that failed (each would have been retried on the same offsets), and a stream worker
  that exited;
- stalled topics: consumer groups not at the end of their topic when the time is up;
- silent drops: messages the contract refuses that did not reach `deadletter`, and real records
  missing from Cassandra;
- doubled dead letters: a refused message dead-lettered more than once.

    .venv/bin/python -m benchmarks.hostile_kafka [--messages 100000] [--seed 26] [--timeout 1200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from benchmarks.daemon import REPO, running_daemon, running_stream_worker, wait_for
from benchmarks.ingest import Isolated, dumps
from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.records import Candle, DeadLetter, Prediction, Quote, Record, RecordError, Trade, decode
from pricepipe_assets.defs.lake.jobs import TOPIC_CONSUMERS
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.kafka import batches
from pricepipe_assets.sources.binance.dumps import Dataset
from pricepipe_assets.storage.cassandra_schema import candle_bucket

CONSUMED = tuple(TOPIC_CONSUMERS)
MINUTE_DAY, TRADE_DAY = dt.date(2024, 1, 1), dt.date(2026, 5, 8)
REAL_TRADES = 5_000
# Payloads of 100 kB and more are this share of the flood: enough to try every consumer on them,
# few enough that the campaign moves hundreds of megabytes, not gigabytes.
LARGE_SHARE = 0.002
Message = tuple[str, str, bytes | None]  # (family, topic, value)


def _nested(rng: random.Random) -> bytes:
    depth = rng.choice([500, 1_001, 2_000, 5_000, 20_000])
    return (b"[" * depth + b"]" * depth) if rng.random() < 0.5 else (b'{"a":' * depth + b"1" + b"}" * depth)


def _field(template: dict[str, Any], rng: random.Random) -> str:
    return rng.choice([name for name in template if name != "v"])


def _with(template: dict[str, Any], field: str, value: Any) -> bytes:
    return json.dumps({**template, field: value}).encode()


def _json_with(template: dict[str, Any], field: str, raw_value: bytes) -> bytes:
    """``template`` with ``field`` set to ``raw_value`` exactly as given (JSON no encoder would write)."""
    return _with(template, field, "\0PLACEHOLDER\0").replace(b'"\\u0000PLACEHOLDER\\u0000"', raw_value)


FAMILIES: dict[str, Callable[[random.Random, dict[str, Any]], bytes | None]] = {
    "nested message": lambda rng, t: _nested(rng),
    "nested field": lambda rng, t: _json_with(t, _field(t, rng), _nested(rng)),
    "long number": lambda rng, t: _json_with(t, _field(t, rng), rng.choice([b"", b"-"]) + b"9" * rng.randint(20, 5_000)),
    "number as long string": lambda rng, t: _with(t, _field(t, rng), "1" * rng.randint(20, 5_000)),
    "absurd value": lambda rng, t: _with(t, _field(t, rng), rng.choice([1e300, 5e-324, 2**63, -(2**63) - 1, 10**30,
                                                                         -1, 0, "NaN", "inf", 1e-13])),
    "wrong type": lambda rng, t: _with(t, _field(t, rng), rng.choice([None, True, [], {}, [1, 2], {"a": 1}, "", " "])),
    "lone surrogate": lambda rng, t: _json_with(t, _field(t, rng), b'"\\ud800x"'),
    "invalid UTF-8": lambda rng, t: _with(t, "symbol", "HOSTILE").replace(b"HOSTILE", b"HOS\xff\xfeTILE"),
    "random bytes": lambda rng, t: rng.randbytes(rng.randint(1, 4_096)),
    "truncated": lambda rng, t: json.dumps(t).encode()[: rng.randint(0, len(json.dumps(t)) - 1)],
    "not an object": lambda rng, t: json.dumps(rng.choice([[t], "text", 42, None, True])).encode(),
    "missing field": lambda rng, t: json.dumps({k: v for k, v in t.items() if k != _field(t, rng)}).encode(),
    "empty": lambda rng, t: rng.choice([b"", None]),
}


def _large(rng: random.Random, template: dict[str, Any]) -> bytes:
    """100 kB to 1.2 MB in a text field (compressible, so the broker's 1 MiB limit takes it)."""
    return _with(template, rng.choice(["symbol", "exchange"]), "A" * rng.randint(100_000, 1_200_000))


def templates(real: dict[str, Record]) -> dict[str, dict[str, Any]]:
    """Per topic, a real record of its type moved to the symbol ``HOSTILE``, for the flood to mutate."""
    return {topic: {**record.to_dict(), "symbol": "HOSTILE"} for topic, record in real.items()}


def flood(count: int, seed: int, shapes: dict[str, dict[str, Any]]) -> list[Message]:
    rng = random.Random(seed)
    names = list(FAMILIES)
    messages = []
    for index in range(count):
        topic = CONSUMED[index % len(CONSUMED)]
        if rng.random() < LARGE_SHARE:
            messages.append(("large payload", topic, _large(rng, shapes[topic])))
        else:
            family = rng.choice(names)
            messages.append((family, topic, FAMILIES[family](rng, shapes[topic])))
    return messages


def real_records(data: Path) -> dict[str, list[Record]]:
    """Real data for every consumed topic: dumps where there are some, the rest derived from them."""
    minutes = [c for c in dumps(data).records(Dataset.klines("BTCUSDT", "1m"), MINUTE_DAY, MINUTE_DAY)
               if isinstance(c, Candle)]
    hours = [c for c in dumps(data).records(Dataset.klines("BTCUSDT", "1h"), TRADE_DAY, TRADE_DAY)
             if isinstance(c, Candle)]
    trades = []
    for trade in dumps(data).records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY):
        if isinstance(trade, Trade):
            trades.append(trade)
        if len(trades) == REAL_TRADES:
            break
    last = minutes[-1]
    day = Candle("binance", "BTCUSDT", "1d", minutes[0].open_time, last.close_time, minutes[0].open,
                 max(c.high for c in minutes), min(c.low for c in minutes), last.close,
                 sum(c.volume for c in minutes), sum(c.quote_volume for c in minutes), sum(c.trades for c in minutes),
                 True)
    at, mid = last.close_time, last.close
    return {topics.CANDLES_1M: minutes, topics.CANDLES_1H: hours, topics.CANDLES_1D: [day], topics.TRADES: trades,
            topics.QUOTES: [Quote("bitmex", "XBTUSD", at, mid - 0.5, mid + 0.5, 1.0, 2.0)],
            topics.ORDERBOOK: [OrderBook("binance", "ETHUSDT", at, 1, ((mid - 0.5, 1.0),), ((mid + 0.5, 2.0),))],
            topics.PREDICTIONS: [Prediction("BTCUSDT", "sentinel", "1", "1m", at, last.open_time + 60_000, mid,
                                            mid - 10, mid + 10)]}


def interleave(real: dict[str, list[Record]], hostile: list[Message], rng: random.Random) -> list[Message]:
    """The real records spread at random through the flood, each topic's in their own order."""
    keyed: list[tuple[float, Message]] = [(float(index), message) for index, message in enumerate(hostile)]
    for topic, records in real.items():
        positions = sorted(rng.uniform(0, len(hostile)) for _ in records)
        keyed += [(at, ("real", topic, record.to_json())) for at, record in zip(positions, records, strict=True)]
    keyed.sort(key=lambda pair: pair[0])
    return [message for _, message in keyed]


def produce(kafka: KafkaResource, messages: list[Message]) -> dict[tuple[str, int, int], str]:
    """Every message, as a client would send it; returns the (full topic, partition, offset) of each
    one the contract refuses, with its family."""
    producer = kafka.producer(**{"message.max.bytes": 4_000_000, "linger.ms": 50})
    refused: dict[tuple[str, int, int], str] = {}
    failed: list[str] = []

    def delivered(family: str) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:
            if error is not None:
                failed.append(f"{family}: {error}")
                return
            try:
                decode(message.topic().removeprefix(kafka.topic_prefix), message.value())
            except RecordError:
                refused[message.topic(), message.partition(), message.offset()] = family
        return report

    started = time.monotonic()
    for index, (family, topic, value) in enumerate(messages):
        while True:
            try:
                producer.produce(kafka.topic(topic), key=family.encode(), value=value, on_delivery=delivered(family))
                break
            except BufferError:
                producer.poll(0.5)
        producer.poll(0)
        if index and index % 20_000 == 0:
            print(f"produced {index:,} of {len(messages):,} messages ({time.monotonic() - started:.0f} s)", flush=True)
    if producer.flush(120) or failed:
        raise RuntimeError(f"Kafka did not take every message: {failed[:3]}")
    return refused


def lagging(kafka: KafkaResource) -> dict[str, int]:
    """Per consuming asset and topic, the messages its group has not committed yet."""
    lags = {}
    for topic, assets in TOPIC_CONSUMERS.items():
        for asset in assets:
            lag = batches.lag(batches.committed_and_watermarks(kafka, kafka.consumer_group(asset), topic))
            if lag:
                lags[f"{asset} on {topic}"] = lag
    return lags


def dead_letters(kafka: KafkaResource) -> Counter[tuple[str, int, int]]:
    """How often each (source topic, partition, offset) is on `deadletter`."""
    consumer = kafka.consumer(f"bench.deadletter-reader-{time.monotonic_ns()}")
    consumer.subscribe([kafka.topic(topics.DEADLETTER)])
    seen: Counter[tuple[str, int, int]] = Counter()
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < 5:
            polled = [m for m in consumer.consume(num_messages=10_000, timeout=1) if m.error() is None]
            if polled:
                quiet_since = time.monotonic()
            for message in polled:
                letter = DeadLetter.from_json(message.value())
                seen[letter.source_topic, letter.source_partition, letter.source_offset] += 1
    finally:
        consumer.close()
    return seen


def missing_real(cassandra: CassandraResource, real: dict[str, list[Record]]) -> dict[str, int]:
    """Per topic, the real records not in Cassandra after the flood."""
    session = cassandra.session()

    def candles(interval: str, records: list[Record]) -> int:
        stored = set()
        for bucket in {candle_bucket(interval, r.timestamp) for r in records}:
            stored |= {row.open_time for row in session.execute(
                "SELECT open_time FROM candles WHERE symbol = 'BTCUSDT' AND interval = %s AND bucket = %s",
                (interval, bucket))}
        return sum(_time(r.timestamp) not in stored for r in records)

    minutes = {r.timestamp // 60_000 * 60_000 for r in real[topics.TRADES]}
    stats = {row.minute for row in session.execute(
        "SELECT minute FROM trade_stats_minute WHERE symbol = 'BTCUSD_PERP' AND bucket = %s", (TRADE_DAY,))}
    quote = session.execute("SELECT bid FROM latest_prices WHERE symbol = 'XBTUSD'").one()
    book = session.execute("SELECT sequence FROM order_books WHERE symbol = 'ETHUSDT'").one()
    prediction = real[topics.PREDICTIONS][0]
    predicted = session.execute(
        "SELECT predicted FROM model_predictions WHERE symbol = 'BTCUSDT' AND horizon = '1m' AND bucket = %s "
        "AND model = 'sentinel'", (candle_bucket("1m", prediction.target_time),)).one()
    missing = {topics.CANDLES_1M: candles("1m", real[topics.CANDLES_1M]),
               topics.CANDLES_1H: candles("1h", real[topics.CANDLES_1H]),
               topics.CANDLES_1D: candles("1d", real[topics.CANDLES_1D]),
               topics.TRADES: sum(_time(m) not in stats for m in minutes),
               topics.QUOTES: int(quote is None or quote.bid != real[topics.QUOTES][0].bid),
               topics.ORDERBOOK: int(book is None),
               topics.PREDICTIONS: int(predicted is None)}
    return {topic: count for topic, count in missing.items() if count}


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)


def failed_runs(home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [f"{run.job_name} {run.tags.get('pricepipe/offset_ranges', '')}"
                for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))]


def campaign(data: Path, count: int, seed: int, timeout_s: float) -> dict[str, Any]:
    real = real_records(data)
    hostile = flood(count, seed, templates({topic: records[0] for topic, records in real.items()}))
    messages = interleave(real, hostile, random.Random(seed))
    with Isolated() as env, tempfile.TemporaryDirectory(prefix="pricepipe-bench-lake-") as lake:
        refused = produce(env.kafka, messages)
        print(f"produced {len(messages):,} messages: {len(hostile):,} hostile ({len(refused):,} refused by the "
              f"contract), {len(messages) - len(hostile):,} real", flush=True)
        variables = {**env.variables(), "PRICEPIPE_LAKE_URI": lake, "PRICEPIPE_STATE_DIR": str(Path(lake) / "state"),
                     "PRICEPIPE_SENSOR_INTERVAL_S": "2"}
        started = time.monotonic()
        with running_daemon(REPO / "workspace.yaml", variables, prefix="pricepipe-bench-home-") as home, \
                running_stream_worker({**variables, "DAGSTER_HOME": str(home)}, home / "stream.log") as worker:
            try:
                wait_for(lambda: not lagging(env.kafka), home, "every consumer group at the end of its topic",
                         timeout_s=timeout_s, every_s=5)
            except RuntimeError as error:
                print(error, file=sys.stderr)
            drained_s = time.monotonic() - started
            stalled = lagging(env.kafka)
            crashes = failed_runs(home) + ([f"the stream worker exited with {worker.returncode}"]
                                           if worker.poll() is not None else [])
        letters = dead_letters(env.kafka)
        missing = missing_real(env.cassandra, real)
    families = Counter(family for family, _, _ in hostile)
    refused_families = Counter(refused.values())
    return {"messages": len(messages), "hostile": len(hostile), "refused": len(refused), "families": families,
            "refused_families": refused_families, "drained_s": drained_s, "stalled": stalled, "crashes": crashes,
            "silent_drops": sum(1 for key in refused if key not in letters),
            "doubled": sum(1 for key, seen in letters.items() if seen > 1),
            "unexpected_letters": sum(1 for key in letters if key not in refused), "missing_real": missing}


def report(result: dict[str, Any]) -> None:
    print("\n| family | messages | refused by the contract |\n| --- | ---: | ---: |")
    for family, count in sorted(result["families"].items()):
        print(f"| {family} | {count:,} | {result['refused_families'][family]:,} |")
    print(f"\nall consumer groups at the end after {result['drained_s']:.0f} s; stalled: {result['stalled'] or 'none'}; "
          f"failed runs: {result['crashes'] or 'none'}; real records missing: {result['missing_real'] or 'none'}")
    print(f"figure: hostile_kafka_messages = {result['hostile']}")
    print(f"figure: hostile_kafka_refused = {result['refused']}")
    print(f"figure: hostile_kafka_crashes = {len(result['crashes'])}")
    print(f"figure: hostile_kafka_stalled_topics = {len({key.split(' on ')[1] for key in result['stalled']})}")
    print(f"figure: hostile_kafka_silent_drops = {result['silent_drops'] + sum(result['missing_real'].values())}")
    print(f"figure: hostile_kafka_doubled_dead_letters = {result['doubled']}")
    print(f"figure: hostile_kafka_unexpected_dead_letters = {result['unexpected_letters']}")
    print(f"figure: hostile_kafka_drain_s = {result['drained_s']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="hostile messages, spread over the topics")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--timeout", type=float, default=1200, help="seconds the platform gets to read everything")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    report(campaign(args.data, args.messages, args.seed, args.timeout))


if __name__ == "__main__":
    main()
