"""Read and write the lake: a local directory or a gs:// prefix, through pyarrow's filesystems.

Layout (hive partitions by run id; a *generation* is one write of one run)::

    {lake}/{table}/run_id={run}/part-v{schema}-{generation}-0.parquet   data files of a generation
    {lake}/_commits/run_id={run}/{generation}.json                     its commit: a Manifest of those files

A write puts the new generation's files beside the old ones (locally under a temporary name, fsynced, then
renamed; on GCS an object only appears once complete and no name is ever reused), then commits by creating
the manifest, then prunes: it deletes failed writes' leftovers, and generations superseded more than
SUPERSEDED_GRACE_S ago. A failed write therefore leaves the run as it was.

Readers take a snapshot: the newest manifest of every run, and read only the files those list, so every
table of a run comes from one complete generation. Runs without a manifest (lakes written before manifests)
read their ``part-v{schema}-{i}.parquet`` files. A reader whose snapshot predates a commit still finds its
files during the grace; one that outlives it fails and is retried on a fresh snapshot (servesweep.lake.query).
Anything else in the lake (a README, a stray file) is ignored. One writer per run id at a time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from servesweep.lake.schema import (
    PACKED_GAPS,
    PARTITION_COLUMN,
    RUN_MIGRATIONS,
    SCHEMA_VERSION,
    SCHEMAS,
    TABLES,
    pack_gaps,
    with_gaps,
)
from servesweep.lake.uri import (
    LakeError,
    LakeLocation,
    check_bucket,
    filesystem,
    first_line,
    parse_lake_uri,
    validate_lake_uri,
)

__all__ = ["LakeError", "Manifest", "Snapshot", "open_lake", "read_table", "run_ids", "snapshot", "to_table",
           "validate_lake_uri", "write_run"]

COMMITS = "_commits"
_GENERATION = r"g\d{8}-[0-9a-f]{8}"
_PART = re.compile(rf"^part-v\d+-(?P<generation>{_GENERATION})-\d+\.parquet$")
_LEGACY_PART = re.compile(r"^part-v\d+-\d+\.parquet$")
_MANIFEST = re.compile(rf"^(?P<generation>{_GENERATION})\.json$")
_TEMP = re.compile(rf"^\.(part-v\d+-|)(?P<generation>{_GENERATION}).*\.tmp$")
_SNAPSHOT_ATTEMPTS = 5
# How long a superseded generation stays for readers whose snapshot predates the commit (a report, a long
# query); a reader holding one longer fails and is retried on a fresh snapshot (servesweep.lake.query).
SUPERSEDED_GRACE_S = 600.0


class Manifest(BaseModel):
    """The commit of one generation of a run: its data file names per table (inside the run's partition)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    generation: str
    schema_version: int
    files: dict[str, list[str]]
    rows: dict[str, int]

    @field_validator("files")
    @classmethod
    def _plain_part_names(cls, files: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = [name for names in files.values() for name in names if not _PART.match(name)]
        if bad:
            raise ValueError(f"not part file names: {bad}")
        return files


@dataclass(frozen=True)
class Lake:
    location: LakeLocation
    fs: pafs.FileSystem

    @property
    def uri(self) -> str:
        return self.location.uri

    def path(self, *parts: str) -> str:
        return "/".join((self.location.root, *parts))

    def partition(self, table: str, run_id: str) -> str:
        return self.path(table, f"{PARTITION_COLUMN}={run_id}")

    def infos(self, path: str, recursive: bool = False) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
        found = [info for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]
        return sorted(found, key=lambda info: info.path)

    def files(self, path: str, recursive: bool = False) -> list[str]:
        return [info.path for info in self.infos(path, recursive)]


def open_lake(lake_uri: str, *, must_exist: bool) -> Lake:
    """The lake's filesystem; a gs:// bucket must answer within a bound. Readers want a lake that exists."""
    location = parse_lake_uri(lake_uri)
    lake = Lake(location, filesystem(location))
    if location.gcs:
        check_bucket(location, lake.fs)
    if must_exist:
        kind = _call(lake, lambda: lake.fs.get_file_info(location.root).type)
        if kind == pafs.FileType.NotFound:
            raise LakeError(f"no lake at {lake_uri}: nothing there yet")
        if kind != pafs.FileType.Directory:
            raise LakeError(f"no lake at {lake_uri}: {location.root} is not a directory")
    return lake


def _call(lake: Lake, call: Callable[[], Any]) -> Any:
    """A filesystem call whose failure becomes a one-line LakeError (GCS errors carry pages of metadata)."""
    try:
        return call()
    except OSError as error:
        raise LakeError(f"lake {lake.uri}: {first_line(error)}") from error


# --- write -----------------------------------------------------------------------------------------------

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


def write_run(lake_uri: str, run_id: str, tables: Mapping[str, pa.Table],
              options: WriteOptions | None = None) -> dict[str, int]:
    """Replace one run's tables as one commit (see the module doc). Returns rows per table."""
    checked = {name: _checked(name, run_id, tables.get(name)) for name in TABLES}
    lake = open_lake(lake_uri, must_exist=False)
    generation = _next_generation(lake, run_id)
    files: dict[str, list[str]] = {}
    for name, table in checked.items():
        files[name] = []
        if len(table):
            file = f"part-v{SCHEMA_VERSION}-{generation}-0.parquet"
            _put(lake, f"{lake.partition(name, run_id)}/{file}",
                 functools.partial(_write_parquet, storage_form(name, table), options=options))
            files[name].append(file)
    rows = {name: len(table) for name, table in checked.items()}
    manifest = Manifest(run_id=run_id, generation=generation, schema_version=SCHEMA_VERSION, files=files, rows=rows)
    payload = manifest.model_dump_json(indent=1).encode()
    _put(lake, lake.path(COMMITS, f"{PARTITION_COLUMN}={run_id}", f"{generation}.json"),
         lambda out: out.write(payload))
    _prune(lake, run_id)
    return rows


def _checked(name: str, run_id: str, table: pa.Table | None) -> pa.Table:
    if table is None:
        return SCHEMAS[name].empty_table()
    if len(table) and set(table[PARTITION_COLUMN].unique().to_pylist()) != {run_id}:
        raise LakeError(f"{name}: rows must all carry run_id={run_id!r}")
    return table.cast(SCHEMAS[name])


def _next_generation(lake: Lake, run_id: str) -> str:
    """One above every generation the run has, committed or not, so a crashed write's leftovers sort below it;
    the random part keeps names unique even so (no object is ever overwritten)."""
    names = [info.base_name for info in _run_files(lake, run_id)]
    numbers = [int(g[1:9]) for g in (_generation_of(n) for n in names) if g]
    return f"g{max(numbers, default=0) + 1:08d}-{secrets.token_hex(4)}"


def _run_files(lake: Lake, run_id: str) -> list[pafs.FileInfo]:
    """Every file of a run: its commits and its partitions' files."""
    folders = [lake.path(COMMITS, f"{PARTITION_COLUMN}={run_id}"), *(lake.partition(t, run_id) for t in TABLES)]
    return [info for folder in folders for info in _call(lake, functools.partial(lake.infos, folder))]


def _generation_of(name: str) -> str | None:
    match = _PART.match(name) or _MANIFEST.match(name) or _TEMP.match(name)
    return match.group("generation") if match else None


@dataclass(frozen=True)
class WriteOptions:
    """How data files are written; the defaults were chosen by benchmarks/lake (RESULTS.md: the options table).

    Dictionaries pay only on strings (ids repeat for a whole point); statistics only on scalars (nothing
    prunes by a gap blob's min/max); LZ4 costs little on incompressible float noise and shrinks the rest."""

    compression: str = "lz4"
    row_group_size: int = 256 * 1024

    def write(self, table: pa.Table, out: BinaryIO) -> None:
        fields = list(table.schema)
        strings = [f.name for f in fields if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        scalars = [f.name for f in fields if not (pa.types.is_nested(f.type) or pa.types.is_binary(f.type)
                                                  or pa.types.is_large_binary(f.type))]
        pq.write_table(table, out, compression=self.compression, row_group_size=self.row_group_size,
                       use_dictionary=strings, write_statistics=scalars)


WRITE_OPTIONS = WriteOptions()


def storage_form(name: str, table: pa.Table) -> pa.Table:
    """What a data file holds: the table without its partition column, requests' gaps packed (v5)."""
    table = table.drop_columns([PARTITION_COLUMN])
    if name == "requests" and "itl_ms" in table.column_names:
        gaps = table["itl_ms"]
        if gaps.null_count < len(table):
            table = table.set_column(table.column_names.index(PACKED_GAPS), PACKED_GAPS, pack_gaps(gaps))
        table = table.drop_columns(["itl_ms"])
    return table


def _write_parquet(table: pa.Table, out: BinaryIO, options: WriteOptions | None = None) -> None:
    (options or WRITE_OPTIONS).write(table, out)


def _put(lake: Lake, path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Create a file whole or not at all under its name."""
    if lake.location.gcs:
        # A GCS object appears once its upload completes. One cut short by an error is still finalised by the
        # stream's close, but under a generation no manifest lists: readers never open it, pruning deletes it.
        with lake.fs.open_output_stream(path) as out:
            write(out)
        return
    folder, _, name = path.rpartition("/")
    os.makedirs(folder, exist_ok=True)
    temporary = f"{folder}/.{name}.tmp"
    try:
        with open(temporary, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    """Make the rename itself durable: the manifest must not survive a crash that loses its data's names."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _prune(lake: Lake, run_id: str) -> None:
    """Delete the run's superseded generations once SUPERSEDED_GRACE_S has passed since they were superseded
    (readers holding an older snapshot may still be reading them), and whatever failed writes left.
    Commits go before their data so no manifest ever lists deleted files. Unknown files are left alone."""
    try:
        for path in _superseded(_run_files(lake, run_id), SUPERSEDED_GRACE_S):
            _delete(lake.fs, path)
    except (OSError, LakeError) as error:  # the write is committed: leftovers only cost space until the next one
        warnings.warn(f"lake {lake.uri}: run {run_id} committed, but superseded files remain: {first_line(error)}",
                      stacklevel=3)


def _superseded(files: list[pafs.FileInfo], grace_s: float) -> list[str]:
    commits = sorted((g, info.mtime_ns) for info in files if (g := _match(_MANIFEST, info.path)))
    if not commits:
        return []
    # A generation is superseded when the next one is committed; the clock that stamped the newest commit
    # (the local disk's, or GCS's) judges how long ago, so the writer's own clock never matters.
    now, grace = commits[-1][1], grace_s * 1e9
    keep = {commits[-1][0]} | {g for (g, _), (_, next_at) in pairwise(commits) if now - next_at < grace}
    legacy_expired = now - commits[0][1] >= grace  # pre-manifest files were superseded by the oldest commit
    paths = [info.path for info in files]
    doomed_commits = [p for p in paths if (g := _match(_MANIFEST, p)) and g not in keep]
    doomed_data = [p for p in paths if ((g := _match(_PART, p) or _match(_TEMP, p)) and g not in keep)
                   or (legacy_expired and _match_legacy(p))]
    return doomed_commits + doomed_data


def _match(pattern: re.Pattern[str], path: str) -> str | None:
    match = pattern.match(path.rpartition("/")[2])
    return match.group("generation") if match else None


def _match_legacy(path: str) -> bool:
    return bool(_LEGACY_PART.match(path.rpartition("/")[2]))


def _delete(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(path)


# --- read ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """What readers see: one complete generation of every run (or its pre-manifest files); runs a compaction
    holds at their newest generation are read from its files (their row groups), not their own."""

    lake: Lake
    newest: dict[str, str]  # run id -> newest committed generation when the snapshot was taken
    files: dict[str, list[str]]  # table -> data file paths
    bundled: dict[str, list[tuple[str, list[int], list[str]]]] = field(default_factory=dict)
    # table -> (compacted file, its row groups to read, the runs they hold)
    compaction: str | None = None  # the compaction's generation

    def dataset(self, table: str) -> ds.Dataset | None:
        bundled = self.bundled.get(table, [])
        if not self.files[table] and not bundled:
            return None
        if not bundled:
            partitioning = ds.partitioning(pa.schema([SCHEMAS[table].field(PARTITION_COLUMN)]), flavor="hive")
            return ds.dataset(self.files[table], filesystem=self.lake.fs, format="parquet",
                              schema=SCHEMAS[table], partitioning=partitioning,
                              partition_base_dir=self.lake.path(table))
        parquet = ds.ParquetFileFormat()
        fragments = [parquet.make_fragment(path, self.lake.fs, partition_expression=(
            ds.field(PARTITION_COLUMN) == _run_of(self.lake, table, path))) for path in self.files[table]]
        fragments += [parquet.make_fragment(path, self.lake.fs, row_groups=groups)
                      for path, groups, _ in bundled if groups]
        if not fragments:
            return None
        return ds.FileSystemDataset(fragments, SCHEMAS[table], parquet, self.lake.fs)

    def run_ids(self, table: str = "points") -> list[str]:
        prefix = f"{PARTITION_COLUMN}="
        found = {p.rsplit("/", 2)[1].removeprefix(prefix) for p in self.files[table]}
        return sorted(found.union(*(runs for _, _, runs in self.bundled.get(table, []))))

    def changed(self) -> bool:
        """A run was committed since: a failure reading this snapshot may just be its pruned files."""
        return ({run: gens[-1] for run, gens in _commits(self.lake).items()} != self.newest
                or _newest_compaction_name(self.lake) != self.compaction)


def snapshot(lake: Lake) -> Snapshot:
    for _ in range(_SNAPSHOT_ATTEMPTS):
        try:
            return _snapshot(lake)
        except FileNotFoundError:
            continue  # a manifest was pruned between listing and reading it: look again
    raise LakeError(f"lake {lake.uri}: runs kept being rewritten while reading their manifests")


def _snapshot(lake: Lake) -> Snapshot:
    commits = _commits(lake)
    with ThreadPoolExecutor(max_workers=8) as pool:  # one GET per run on GCS
        manifests = [m for m in pool.map(lambda item: _newest_manifest(lake, *item), commits.items()) if m]
    compaction = _newest_compaction(lake)
    current = {m.run_id: m.generation for m in manifests}
    held = {run for run, generation in (compaction.runs.items() if compaction else ())
            if current.get(run) == generation}
    files: dict[str, list[str]] = {table: [] for table in TABLES}
    bundled: dict[str, list[tuple[str, list[int], list[str]]]] = {}
    for table in TABLES:
        if compaction is not None and table in compaction.files:
            groups = compaction.row_groups[table]
            runs = sorted(run for run in held if run in groups)
            bundled[table] = [(lake.path(table, COMPACTED, compaction.files[table]),
                               sorted(g for run in runs for g in groups[run]), runs)]
    for manifest in manifests:
        for table in TABLES:
            if manifest.run_id in held and table in bundled:
                continue
            files[table] += [f"{lake.partition(table, manifest.run_id)}/{n}" for n in manifest.files.get(table, [])]
    for table in TABLES:
        files[table] += _legacy_files(lake, table, commits)
        files[table].sort()
    return Snapshot(lake, {run: gens[-1] for run, gens in commits.items()}, files, bundled,
                    compaction.generation if compaction else None)


def _commits(lake: Lake) -> dict[str, list[str]]:
    """Committed generations of every run, oldest first."""
    found: dict[str, list[str]] = {}
    prefix = f"{lake.path(COMMITS)}/{PARTITION_COLUMN}="
    for path in _call(lake, lambda: lake.files(lake.path(COMMITS), recursive=True)):
        run_id, _, name = path.removeprefix(prefix).rpartition("/")
        match = _MANIFEST.match(name)
        if path.startswith(prefix) and run_id and "/" not in run_id and match:
            found.setdefault(run_id, []).append(match.group("generation"))
    return {run: sorted(gens) for run, gens in found.items()}


def _newest_manifest(lake: Lake, run_id: str, generations: list[str]) -> Manifest | None:
    """The newest readable manifest: one damaged by hand must not take the run, or the lake, down."""
    for generation in reversed(generations):
        path = lake.path(COMMITS, f"{PARTITION_COLUMN}={run_id}", f"{generation}.json")
        with lake.fs.open_input_stream(path) as stream:
            text = stream.read()
        try:
            manifest = Manifest.model_validate_json(text)
        except ValidationError as error:
            warnings.warn(f"lake {lake.uri}: skipping unreadable manifest {path}: {first_line(error)}", stacklevel=2)
            continue
        if (manifest.run_id, manifest.generation) == (run_id, generation):
            return manifest
        warnings.warn(f"lake {lake.uri}: skipping {path}: it is the manifest of another run or generation",
                      stacklevel=2)
    return None


def _legacy_files(lake: Lake, table: str, committed: Collection[str]) -> list[str]:
    """Pre-manifest part files of the runs that have no manifest."""
    paths = _call(lake, lambda: lake.files(lake.path(table), recursive=True))
    return [p for p in paths if _match_legacy(p) and (run := _run_of(lake, table, p)) and run not in committed]


def _run_of(lake: Lake, table: str, path: str) -> str | None:
    """The run a data file belongs to, if it sits directly in a run partition of the table."""
    folder = path.removeprefix(lake.path(table) + "/").rpartition("/")[0]
    prefix = f"{PARTITION_COLUMN}="
    return folder.removeprefix(prefix) if folder.startswith(prefix) and "/" not in folder else None


def read_table(lake_uri: str, table: str, run_ids: list[str] | None = None) -> pa.Table:
    data = snapshot(open_lake(lake_uri, must_exist=True)).dataset(table)
    if data is None:
        return SCHEMAS[table].empty_table()
    expression = ds.field(PARTITION_COLUMN).isin(run_ids) if run_ids else None
    table = data.to_table(filter=expression)
    return with_gaps(table)


# --- migrate ---------------------------------------------------------------------------------------------

def run_versions(lake_uri: str) -> dict[str, int]:
    """The schema version of every run: its newest manifest's (pre-manifest runs: their files' oldest)."""
    lake = open_lake(lake_uri, must_exist=True)
    commits = _commits(lake)
    versions: dict[str, int] = {}
    for run_id, generations in commits.items():
        manifest = _newest_manifest(lake, run_id, generations)
        if manifest is not None:
            versions[run_id] = manifest.schema_version
    for table in TABLES:
        for path in _legacy_files(lake, table, commits):
            run = _run_of(lake, table, path)
            version = int(path.rpartition("/")[2].split("-")[1][1:])
            if run is not None:
                versions[run] = min(versions.get(run, version), version)
    return versions


def migrate(lake_uri: str, run_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Rewrite every run (or those named) below SCHEMA_VERSION as the current version: each its own commit, so
    readers see a run whole, before or after. Returns the version each migrated run came from."""
    versions = run_versions(lake_uri)
    wanted = set(run_ids) if run_ids is not None else set(versions)
    done: dict[str, int] = {}
    for run_id in sorted(wanted):
        version = versions.get(run_id)
        if version is None or version >= SCHEMA_VERSION:
            continue
        tables = {name: read_table(lake_uri, name, [run_id]) for name in TABLES}
        for step in range(version + 1, SCHEMA_VERSION + 1):
            if step in RUN_MIGRATIONS:
                tables = RUN_MIGRATIONS[step](tables)
        write_run(lake_uri, run_id, {name: to_table(name, table) for name, table in tables.items()})
        done[run_id] = version
    return done


def run_ids(lake_uri: str) -> list[str]:
    """Run ids with rows in the points table."""
    return snapshot(open_lake(lake_uri, must_exist=True)).run_ids()


# --- compact ---------------------------------------------------------------------------------------------
# A long-lived lake holds a small points/runs/server_metrics file per run: a query over them opens one file
# (on GCS: one or more GETs) per run. `compact` copies every run's current files of those tables into one file
# per table, one row group per run, and commits it like a run's generation:
#
#     {lake}/{table}/_compacted/part-v{schema}-{generation}-0.parquet
#     {lake}/_commits/_compacted/{generation}.json       a Compaction: the generation of every run it holds
#
# Readers use the newest compaction for the runs it holds at their newest generation, and each run's own
# files otherwise (a run written since, or never compacted), so a rewrite after the compaction is seen at
# once. Runs' own files stay (they remain the runs' commits); superseded compactions are pruned after
# SUPERSEDED_GRACE_S like superseded generations, so a reader's older snapshot keeps its files.

COMPACTED = "_compacted"
COMPACTED_TABLES = ("points", "runs", "server_metrics")


class Compaction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: str
    schema_version: int
    runs: dict[str, str]  # run id -> the generation of it this compaction holds
    files: dict[str, str]  # table -> its file in {table}/_compacted/
    row_groups: dict[str, dict[str, list[int]]]  # table -> run id -> its row groups in that file


def _compaction_infos(lake: Lake) -> list[pafs.FileInfo]:
    infos: list[pafs.FileInfo] = _call(lake, functools.partial(lake.infos, lake.path(COMMITS, COMPACTED)))
    return infos


def _newest_compaction_name(lake: Lake) -> str | None:
    names = sorted(g for info in _compaction_infos(lake) if (g := _match(_MANIFEST, info.path)))
    return names[-1] if names else None


def _newest_compaction(lake: Lake) -> Compaction | None:
    generation = _newest_compaction_name(lake)
    if generation is None:
        return None
    try:
        with lake.fs.open_input_stream(lake.path(COMMITS, COMPACTED, f"{generation}.json")) as stream:
            return Compaction.model_validate_json(stream.read())
    except FileNotFoundError:
        return None  # pruned meanwhile: snapshot() looks again (a newer one exists)
    except ValidationError as error:
        warnings.warn(f"lake {lake.uri}: ignoring unreadable compaction {generation}: {first_line(error)}",
                      stacklevel=2)
        return None


def compact(lake_uri: str, tables: Collection[str] = COMPACTED_TABLES,
            options: WriteOptions | None = None) -> Compaction | None:
    """Copy every run's current files of `tables` into one file per table (see above); None when the lake has
    no run with a manifest. Safe beside readers and writers: nothing a snapshot lists is changed or deleted
    within SUPERSEDED_GRACE_S."""
    lake = open_lake(lake_uri, must_exist=True)
    commits = _commits(lake)
    manifests = [m for m in (_newest_manifest(lake, run, gens) for run, gens in sorted(commits.items())) if m]
    if not manifests:
        return None
    existing = [info.base_name for info in _compaction_infos(lake)]
    for table in tables:
        existing += [info.base_name for info in _call(lake, functools.partial(lake.infos, lake.path(table, COMPACTED)))]
    numbers = [int(g[1:9]) for g in (_generation_of(n) for n in existing) if g]
    generation = f"g{max(numbers, default=0) + 1:08d}-{secrets.token_hex(4)}"
    files: dict[str, str] = {}
    row_groups: dict[str, dict[str, list[int]]] = {}
    for table in tables:
        name = f"part-v{SCHEMA_VERSION}-{generation}-0.parquet"
        groups: dict[str, list[int]] = {}
        parts: list[pa.Table] = []
        for manifest in manifests:
            paths = [f"{lake.partition(table, manifest.run_id)}/{n}" for n in manifest.files.get(table, [])]
            if not paths:
                continue
            data = ds.dataset(paths, filesystem=lake.fs, format="parquet", schema=SCHEMAS[table].remove(0))
            part = data.to_table()
            part = part.add_column(0, SCHEMAS[table].field(PARTITION_COLUMN),
                                   pa.array([manifest.run_id] * len(part), pa.string()))
            if len(part):
                groups[manifest.run_id] = [len(parts)]
                parts.append(part.select(SCHEMAS[table].names).cast(SCHEMAS[table]))
        if not parts:
            continue

        def write(out: BinaryIO, parts: list[pa.Table] = parts, schema: pa.Schema = SCHEMAS[table]) -> None:
            with pq.ParquetWriter(out, schema, compression=(options or WRITE_OPTIONS).compression) as writer:
                for part in parts:  # one row group per run, so a stale run's rows are skipped whole
                    writer.write_table(part, row_group_size=max(len(part), 1))

        _put(lake, lake.path(table, COMPACTED, name), write)
        files[table], row_groups[table] = name, groups
    compaction = Compaction(generation=generation, schema_version=SCHEMA_VERSION,
                            runs={m.run_id: m.generation for m in manifests}, files=files, row_groups=row_groups)
    payload = compaction.model_dump_json(indent=1).encode()
    _put(lake, lake.path(COMMITS, COMPACTED, f"{generation}.json"), lambda out: out.write(payload))
    _prune_compactions(lake)
    return compaction


def _prune_compactions(lake: Lake) -> None:
    try:
        infos = _compaction_infos(lake)
        for table in TABLES:
            infos += _call(lake, functools.partial(lake.infos, lake.path(table, COMPACTED)))
        for path in _superseded(infos, SUPERSEDED_GRACE_S):
            _delete(lake.fs, path)
    except (OSError, LakeError) as error:
        warnings.warn(f"lake {lake.uri}: compacted, but superseded compactions remain: {first_line(error)}",
                      stacklevel=3)
