"""``pricepipe stream``: the worker as a process, until SIGINT or SIGTERM; and the reset of a
consumer group's offsets, which is how a range of the live tables is written again."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
import time
from collections.abc import Sequence

from pricepipe_assets.cli import stream_reports as reports
from pricepipe_assets.contract.topics import ALL_TOPICS
from pricepipe_assets.kafka.client import KafkaCluster, kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.stream import worker
from pricepipe_assets.stream.stages import STAGES, Stores

STATUS_EVERY_S = 30.0


def run(settings: Settings, stop: threading.Event | None = None) -> int:
    """Write the live tables until ``stop`` is set, or SIGINT/SIGTERM when run as the main thread."""
    stop = stop or threading.Event()
    kafka = kafka_cluster(settings)
    kafka.ensure_topics(ALL_TOPICS)
    cassandra_cluster(settings).migrate()

    def stores() -> Stores:
        return Stores(kafka, cassandra_cluster(settings), kafka.publisher(), settings.trade_candle_grace_s * 1000)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    started = worker.start(stores, stop)
    runners = [runner for runner, _ in started]
    report = reports.instance_report()
    if report is None:
        print("[stream] no DAGSTER_HOME: materializations are not reported to Dagster", file=sys.stderr)
    reporter = reports.Reporter(runners, settings.stream_report_s, report or (lambda event: None))
    threading.Thread(target=reporter.run, args=(stop,), name="stream-reports", daemon=True).start()
    print(f"[stream] writing {', '.join(step.asset for stage in STAGES for step in stage.steps)} from "
          f"{kafka.bootstrap_servers}", file=sys.stderr, flush=True)
    status_at = time.monotonic() + STATUS_EVERY_S
    ended: list[str] = []
    while not stop.wait(1.0) and not ended:
        # A stage whose thread ended writes nothing more: end the process, so that whatever runs it
        # (`pricepipe run`, Compose, Kubernetes) starts it again and the group hands its partitions on.
        ended = [runner.stage.asset for runner, thread in started if not thread.is_alive()]
        if time.monotonic() > status_at:
            print(f"[stream] reported {reporter.reported} materializations", file=sys.stderr, flush=True)
            status_at += STATUS_EVERY_S
    stop.set()
    for _, thread in started:
        thread.join(timeout=30)
    if ended:
        print(f"[stream] the stage of {', '.join(ended)} ended; stopping", file=sys.stderr, flush=True)
        return 1
    print("[stream] stopped", file=sys.stderr, flush=True)
    return 0


def reset(kafka: KafkaCluster, assets: Sequence[str], to: dt.datetime | str) -> dict[str, int]:
    """Move the consumer groups of each asset's stage to ``to`` ("earliest", "latest" or a time) on
    every topic the stage reads, so the workers write from there again; returns the partitions moved
    per asset. The assets of a stage read one consumer's batches in order (the hourly statistics
    after the minutes, `trade_candles` after the stored trades), so they move together; every write
    is an upsert, so writing a range again changes only what was wrong.

    Kafka refuses to move a group that has members: stop the workers first.
    """
    stages = {step.asset: stage for stage in STAGES for step in stage.steps}
    unknown = [asset for asset in assets if asset not in stages]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not written by the stream worker, which writes {', '.join(stages)}")
    moved = {}
    for asset in dict.fromkeys(step.asset for name in assets for step in stages[name].steps):
        moved[asset] = _move(kafka, kafka.consumer_group(asset), stages[asset].topics, to)
    return moved


def _move(kafka: KafkaCluster, group: str, topics: Sequence[str], to: dt.datetime | str) -> int:
    from confluent_kafka import KafkaException, TopicPartition

    from pricepipe_assets.kafka.batches import partitions_of

    consumer = kafka.consumer(group)
    try:
        wanted = []
        for topic in topics:
            full = kafka.topic(topic)
            for partition in partitions_of(consumer, full):
                low, high = consumer.get_watermark_offsets(TopicPartition(full, partition), timeout=10)
                if isinstance(to, dt.datetime):
                    (found,) = consumer.offsets_for_times([TopicPartition(full, partition, int(to.timestamp() * 1000))],
                                                          timeout=10)
                    wanted.append(TopicPartition(full, partition, found.offset if found.offset >= 0 else high))
                else:
                    wanted.append(TopicPartition(full, partition, low if to == "earliest" else high))
        # A worker that just stopped is still a member until the broker has seen it leave, or until
        # its session timed out if it was killed: wait that long before calling the group busy.
        deadline = time.monotonic() + worker.SESSION_TIMEOUT_MS / 1000 + 5
        while True:
            try:
                consumer.commit(offsets=wanted, asynchronous=False)
                return len(wanted)
            except KafkaException as error:
                if time.monotonic() > deadline:
                    (described,) = [f.result() for f in kafka.admin().describe_consumer_groups([group]).values()]
                    members = ", ".join(f"{m.client_id} on {m.host}" for m in described.members) or "none"
                    raise RuntimeError(f"Kafka refused to move {group} ({error.args[0].str()}; members: {members}): "
                                       "stop the stream workers first") from None
                time.sleep(0.5)
    finally:
        consumer.close()
