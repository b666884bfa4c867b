"""Read and write the lake: a local directory or a gs:// prefix, through pyarrow's filesystems."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from servesweep.lake.schema import PARTITION_COLUMN, SCHEMA_VERSION, SCHEMAS, TABLES


class LakeError(RuntimeError):
    pass


def resolve(lake_uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and root path for a lake URI. gs:// honours STORAGE_EMULATOR_HOST (tests, local dev)."""
    if lake_uri.startswith("gs://"):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            scheme, _, host = emulator.rpartition("://")
            filesystem = pafs.GcsFileSystem(
                anonymous=True, endpoint_override=host, scheme=scheme or "http", retry_time_limit=timedelta(seconds=5)
            )
        else:
            filesystem = pafs.GcsFileSystem()
        return filesystem, lake_uri.removeprefix("gs://").rstrip("/")
    if "://" in lake_uri and not lake_uri.startswith("file://"):
        raise LakeError(f"unsupported lake URI {lake_uri!r}: use a local path or gs://bucket/prefix")
    path = os.path.abspath(lake_uri.removeprefix("file://"))
    return pafs.LocalFileSystem(), path


def to_table(name: str, rows: Iterable[Mapping[str, Any]] | pa.Table) -> pa.Table:
    """Rows (dicts) or a table, cast to the table's schema; unknown columns are an error."""
    schema = SCHEMAS[name]
    if isinstance(rows, pa.Table):
        extra = set(rows.column_names) - set(schema.names)
        if extra:
            raise LakeError(f"{name}: columns not in schema v{SCHEMA_VERSION}: {sorted(extra)}")
        columns = {f.name: rows[f.name] if f.name in rows.column_names else pa.nulls(len(rows), f.type)
                   for f in schema}
        columns["schema_version"] = pa.array([SCHEMA_VERSION] * len(rows), pa.int32())
        return pa.table(columns).cast(schema)
    rows = [dict(row, schema_version=SCHEMA_VERSION) for row in rows]
    for row in rows:
        extra = set(row) - set(schema.names)
        if extra:
            raise LakeError(f"{name}: columns not in schema v{SCHEMA_VERSION}: {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=schema)


def write_run(lake_uri: str, run_id: str, tables: Mapping[str, pa.Table]) -> dict[str, int]:
    """Write one run's tables, replacing whatever that run id had before. Returns rows per table."""
    filesystem, root = resolve(lake_uri)
    written: dict[str, int] = {}
    for name in TABLES:
        table = tables.get(name, SCHEMAS[name].empty_table())
        if len(table) and set(table[PARTITION_COLUMN].unique().to_pylist()) != {run_id}:
            raise LakeError(f"{name}: rows must all carry run_id={run_id!r}")
        _delete_partition(filesystem, f"{root}/{name}/{PARTITION_COLUMN}={run_id}")
        if len(table):
            ds.write_dataset(
                table.cast(SCHEMAS[name]),
                f"{root}/{name}",
                filesystem=filesystem,
                format="parquet",
                partitioning=ds.partitioning(pa.schema([SCHEMAS[name].field(PARTITION_COLUMN)]), flavor="hive"),
                existing_data_behavior="delete_matching",
                basename_template=f"part-v{SCHEMA_VERSION}-{{i}}.parquet",
            )
        written[name] = len(table)
    return written


def _delete_partition(filesystem: pafs.FileSystem, path: str) -> None:
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        filesystem.delete_dir(path)


def dataset(lake_uri: str, table: str) -> ds.Dataset | None:
    """The table as a pyarrow dataset over every run, or None when no run wrote it yet."""
    filesystem, root = resolve(lake_uri)
    path = f"{root}/{table}"
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return None
    selector = pafs.FileSelector(path, recursive=True)
    if not any(f.path.endswith(".parquet") for f in filesystem.get_file_info(selector)):
        return None
    return ds.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive",
                      schema=SCHEMAS[table])


def read_table(lake_uri: str, table: str, run_ids: list[str] | None = None) -> pa.Table:
    data = dataset(lake_uri, table)
    if data is None:
        return SCHEMAS[table].empty_table()
    expression = ds.field(PARTITION_COLUMN).isin(run_ids) if run_ids else None
    return data.to_table(filter=expression)


def run_ids(lake_uri: str) -> list[str]:
    """Run ids present in the points table (a recursive listing: object stores have no real folders)."""
    filesystem, root = resolve(lake_uri)
    selector = pafs.FileSelector(f"{root}/points", recursive=True, allow_not_found=True)
    prefix = f"{PARTITION_COLUMN}="
    found = {
        part.removeprefix(prefix)
        for info in filesystem.get_file_info(selector) if info.path.endswith(".parquet")
        for part in info.path.split("/") if part.startswith(prefix)
    }
    return sorted(found)
