"""Compacting the lake's raw zone: one file per partition folder and day instead of one per offset block.

Raw files are written per Kafka offset block, so a quiet day can end up in dozens of small files.
Only blocks that can never be rewritten are merged: those whose whole offset range the writer's
consumer group has committed (a block still filling is rewritten whole by the next run, and would
come back beside its compacted copy). The merged file is renamed into place before its sources are
deleted and names them in its Parquet metadata, so a compaction interrupted between the two is
finished by the next one; readers see the same rows before and after.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pricepipe_assets.storage.lake import Lake

COMPACTED = re.compile(r"compacted-(\d+)\.parquet")
BLOCK = re.compile(r"p(\d+)-o(\d{12})-\d+\.parquet")
SOURCES_KEY = b"pricepipe.compacted_from"


@dataclass(frozen=True)
class Compaction:
    """What compacting one folder did."""

    folder: str
    files_merged: int
    rows: int
    file: str


def sealed(name: str, committed: dict[int, int], offsets_per_file: int) -> bool:
    """Whether a block file's whole offset range is committed, so no run will write it again."""
    match = BLOCK.fullmatch(name)
    if match is None:
        return False
    partition, start = int(match.group(1)), int(match.group(2))
    return start + offsets_per_file <= committed.get(partition, 0)


def _finish_interrupted(lake: Lake, folder: str, names: list[str]) -> list[str]:
    """Delete the sources a compacted file already holds (left by a compaction cut short); returns
    the names still present."""
    import pyarrow.parquet as pq

    present = set(names)
    for name in names:
        if COMPACTED.fullmatch(name):
            metadata = pq.read_schema(lake.path(folder, name), filesystem=lake.filesystem()).metadata or {}
            for source in json.loads(metadata.get(SOURCES_KEY, b"[]")):
                if source in present:
                    lake.remove(folder, source)
                    present.discard(source)
    return sorted(present)


def compact_folder(lake: Lake, folder: str, committed: dict[int, int], offsets_per_file: int) -> Compaction | None:
    """Merge a folder's sealed block files and its compacted file into one new compacted file.

    Returns None when there is nothing to merge (no sealed block beside at most one compacted file).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = _finish_interrupted(lake, folder, lake.list_names(folder))
    previous = [n for n in names if COMPACTED.fullmatch(n)]
    blocks = [n for n in names if sealed(n, committed, offsets_per_file)]
    if not blocks:
        return None
    sources = previous + blocks
    table = pa.concat_tables([pq.read_table(lake.path(folder, n), filesystem=lake.filesystem()) for n in sources],
                             promote_options="default")
    table = table.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), SOURCES_KEY: json.dumps(sources).encode()})
    generation = max((int(m.group(1)) for n in previous if (m := COMPACTED.fullmatch(n))), default=0) + 1
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    path = lake.write_bytes(buffer.getvalue().to_pybytes(), folder, f"compacted-{generation}.parquet")
    for source in sources:
        lake.remove(folder, source)
    return Compaction(folder, len(sources), table.num_rows, path)


def date_folders(lake: Lake, dataset: str) -> list[str]:
    """Every ``.../date=<day>`` folder of a Hive-partitioned dataset, at any depth of partitioning."""
    found: list[str] = []
    pending = [dataset]
    while pending:
        folder = pending.pop()
        for name in lake.list_folders(folder):
            (found if name.startswith("date=") else pending).append(f"{folder}/{name}")
    return sorted(found)
