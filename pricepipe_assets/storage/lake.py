"""The data lake: Hive-partitioned Parquet datasets on the local filesystem or on HDFS.

The lake is pricepipe's single source of truth, so writes are idempotent by construction: a
writer names its files (e.g. by Kafka offset range) and writing the same name again replaces the
file instead of adding a duplicate. HDFS is reached over WebHDFS (plain HTTP), which needs no
native libhdfs or Hadoop install on the client.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pydantic import BaseModel, PrivateAttr

from pricepipe_assets.settings import Settings

# pyarrow's dataset writer refuses a table that spans more partitions than its ``max_partitions``
# (default 1,024), and keeps at most ``max_open_files`` (default 1,024) files open at once.
PARTITIONS_PER_WRITE = 1000

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs


class Lake(BaseModel):
    """A lake root: a local folder, or ``webhdfs://namenode:port/path``."""

    uri: str
    hdfs_user: str = "root"
    hdfs_rpc_port: int = 8020

    _filesystem: Any = PrivateAttr(default=None)

    @property
    def is_hdfs(self) -> bool:
        return urlparse(self.uri).scheme == "webhdfs"

    @property
    def root(self) -> str:
        """The root folder as a path on :meth:`filesystem`."""
        return urlparse(self.uri).path.rstrip("/") if self.is_hdfs else self.uri.rstrip("/")

    def filesystem(self) -> pafs.FileSystem:
        """A pyarrow filesystem over the lake's storage, created once per resource."""
        if self._filesystem is None:
            import pyarrow.fs as pafs

            if self.is_hdfs:
                import fsspec

                parsed = urlparse(self.uri)
                webhdfs = fsspec.filesystem("webhdfs", host=parsed.hostname, port=parsed.port, user=self.hdfs_user)
                self._filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(webhdfs))
            else:
                self._filesystem = pafs.LocalFileSystem()
        return self._filesystem

    def path(self, *parts: str) -> str:
        """A path below the lake root, as :meth:`filesystem` understands it."""
        return posixpath.join(self.root, *parts)

    def spark_uri(self, *parts: str) -> str:
        """The same location as a URI Spark can open.

        Spark talks to HDFS over its native RPC (``hdfs://``) rather than WebHDFS: pyspark's
        shaded Hadoop client lacks the JAX-RS runtime that its WebHDFS client needs.
        """
        if self.is_hdfs:
            return f"hdfs://{urlparse(self.uri).hostname}:{self.hdfs_rpc_port}{self.path(*parts)}"
        return "file://" + self.path(*parts)

    def write_dataset(
        self,
        table: pa.Table,
        dataset: str,
        partition_cols: list[str],
        basename: str,
    ) -> list[str]:
        """Write ``table`` under ``dataset`` as Hive partitions (``col=value/``), one file per partition.

        Files are named ``<basename>-0.parquet`` inside each partition folder; writing the same
        basename again overwrites, which is what makes replays idempotent. Each file is written
        under a hidden name first (readers skip names with a leading dot) and renamed into place,
        so a writer killed half-way leaves no truncated file behind. A table spanning more than
        ``PARTITIONS_PER_WRITE`` partitions (years of daily candles partitioned by day) is written
        in slices of whole partitions, so each partition still gets exactly one file. Returns the
        files written, as lake paths.
        """
        import pyarrow.dataset as ds

        staged: list[str] = []
        partitioning = ds.partitioning(table.select(partition_cols).schema, flavor="hive")
        for part in _partition_slices(table, partition_cols, PARTITIONS_PER_WRITE):
            ds.write_dataset(
                part,
                self.path(dataset),
                format="parquet",
                partitioning=partitioning,
                basename_template=f".{basename}-{{i}}.parquet.tmp",
                existing_data_behavior="overwrite_or_ignore",
                filesystem=self.filesystem(),
                file_visitor=lambda written_file: staged.append(written_file.path),
                create_dir=True,
            )
        return [self._publish(path) for path in staged]

    def _publish(self, staged: str) -> str:
        """Rename a hidden staged file to its final name, replacing an older file of that name.

        HDFS refuses to rename onto an existing file, so the older one is removed first: a
        reader may then miss that one file for a moment, but never sees half of one.
        """
        import pyarrow.fs as pafs

        filesystem = self.filesystem()
        folder, name = posixpath.split(staged)
        final = posixpath.join(folder, name[1:].removesuffix(".tmp"))
        if filesystem.get_file_info(final).type != pafs.FileType.NotFound:
            filesystem.delete_file(final)
        filesystem.move(staged, final)
        return final

    def dataset(self, dataset: str, partitioning: pa.Schema | None = None) -> ds.Dataset:
        """A pyarrow dataset over ``dataset``; ``partitioning`` types the Hive partition columns."""
        import pyarrow.dataset as ds

        hive = ds.partitioning(partitioning, flavor="hive") if partitioning is not None else "hive"
        return ds.dataset(self.path(dataset), format="parquet", partitioning=hive, filesystem=self.filesystem())

    def read_dataset(
        self,
        dataset: str,
        *,
        partitioning: pa.Schema | None = None,
        columns: list[str] | None = None,
        filter: ds.Expression | None = None,
    ) -> pa.Table:
        """Read a dataset (or the rows matching ``filter``); an absent dataset reads as an error naming it."""
        if not self.exists(dataset):
            raise FileNotFoundError(f"lake dataset {dataset!r} does not exist under {self.uri}")
        return self.dataset(dataset, partitioning).to_table(columns=columns, filter=filter)

    def read_named(self, dataset: str, basename: str, partitioning: pa.Schema) -> pa.Table | None:
        """The rows of every file ``write_dataset`` wrote under ``basename`` in any partition of
        ``dataset``, with the partition columns; None when there is none."""
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        if not self.exists(dataset):
            return None
        selector = pafs.FileSelector(self.path(dataset), recursive=True)
        paths = [info.path for info in self.filesystem().get_file_info(selector)
                 if info.type == pafs.FileType.File and posixpath.basename(info.path).startswith(f"{basename}-")]
        if not paths:
            return None
        return ds.dataset(paths, format="parquet", filesystem=self.filesystem(), partition_base_dir=self.path(dataset),
                          partitioning=ds.partitioning(partitioning, flavor="hive")).to_table()

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write one file below the root atomically; returns its lake path.

        The bytes go to a hidden name first (a leading dot, which pyarrow and Spark readers skip)
        and are renamed into place, so no reader ever sees half a file.
        """
        path = self.path(*parts)
        filesystem = self.filesystem()
        folder = posixpath.dirname(path)
        filesystem.create_dir(folder, recursive=True)
        temporary = posixpath.join(folder, f".{posixpath.basename(path)}.tmp")
        with filesystem.open_output_stream(temporary) as stream:
            stream.write(data)
        return self._publish(temporary)

    def read_bytes(self, *parts: str) -> bytes:
        with self.filesystem().open_input_stream(self.path(*parts)) as stream:
            data: bytes = stream.read()
        return data

    def list_names(self, *parts: str) -> list[str]:
        """Names of the files directly in a folder below the root, sorted; none when it is absent."""
        import pyarrow.fs as pafs

        if not self.exists(*parts):
            return []
        infos = self.filesystem().get_file_info(pafs.FileSelector(self.path(*parts)))
        return sorted(posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.File)

    def list_folders(self, *parts: str) -> list[str]:
        """Names of the folders directly in a folder below the root (e.g. ``symbol=BTCUSDT``), sorted."""
        import pyarrow.fs as pafs

        if not self.exists(*parts):
            return []
        infos = self.filesystem().get_file_info(pafs.FileSelector(self.path(*parts)))
        return sorted(posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.Directory)

    def remove(self, *parts: str) -> None:
        """Delete one file below the root, if it exists."""
        if self.exists(*parts):
            self.filesystem().delete_file(self.path(*parts))

    def exists(self, *parts: str) -> bool:
        import pyarrow.fs as pafs

        found: bool = self.filesystem().get_file_info(self.path(*parts)).type != pafs.FileType.NotFound
        return found

    def delete(self, *parts: str) -> None:
        """Remove a folder below the root (used by retention and tests), if it exists."""
        if self.exists(*parts):
            self.filesystem().delete_dir(self.path(*parts))


def data_lake(settings: Settings) -> Lake:
    """The lake the settings name."""
    return Lake(uri=settings.lake_uri, hdfs_user=settings.hdfs_user, hdfs_rpc_port=settings.hdfs_rpc_port)


def _partition_slices(table: pa.Table, partition_cols: list[str], limit: int) -> list[pa.Table]:
    """``table`` as slices of at most ``limit`` whole partitions each; the table itself when it
    spans no more (the common case costs one group-by, no sort). The sort is stable, so rows keep
    their order within a partition."""
    import numpy as np

    if table.num_rows == 0 or table.select(partition_cols).group_by(partition_cols).aggregate([]).num_rows <= limit:
        return [table]
    table = table.sort_by([(column, "ascending") for column in partition_cols])
    changes = np.zeros(table.num_rows, dtype=bool)
    changes[0] = True
    for column in partition_cols:
        values = table.column(column).to_numpy(zero_copy_only=False)
        changes[1:] |= values[1:] != values[:-1]
    starts = [*np.flatnonzero(changes)[::limit].tolist(), table.num_rows]
    return [table.slice(begin, end - begin) for begin, end in zip(starts, starts[1:], strict=False)]
