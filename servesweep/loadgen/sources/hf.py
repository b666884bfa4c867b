"""A local Hugging Face dataset: a `datasets.save_to_disk` directory (Arrow stream files) or a Parquet file
(or a directory of them), read with pyarrow; `prompt_column` holds the prompts, `output_column` (optional)
output lengths or reference answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from servesweep.loadgen.sources.base import PromptMaker, SourceContext, SourceError
from servesweep.loadgen.sources.files import Record, dataset_path, from_records
from servesweep.spec import DatasetSpec


def read_table(path: Path) -> pa.Table:
    if path.is_file():
        return pq.read_table(path) if path.suffix == ".parquet" else _arrow(path)
    files = sorted(path.rglob("*.arrow")) or sorted(path.rglob("*.parquet"))
    if not files:
        raise SourceError(f"{path}: no .arrow (datasets save_to_disk) or .parquet files")
    return pa.concat_tables([pq.read_table(f) if f.suffix == ".parquet" else _arrow(f) for f in files])


def _arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()  # what datasets writes
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all()


def records(dataset: DatasetSpec, path: Path) -> Iterator[Record]:
    table = read_table(path)
    wanted = [dataset.prompt_column] + ([dataset.output_column] if dataset.output_column else [])
    if missing := [c for c in wanted if c not in table.column_names]:
        raise SourceError(f"{path}: no column {', '.join(missing)} (it has {', '.join(table.column_names)})")
    prompts = table.column(dataset.prompt_column).to_pylist()
    outputs = table.column(dataset.output_column).to_pylist() if dataset.output_column else [None] * len(prompts)
    for prompt, output in zip(prompts, outputs, strict=True):
        if isinstance(prompt, str):
            yield prompt, output if isinstance(output, (int, str)) and not isinstance(output, bool) else None


def build(context: SourceContext) -> PromptMaker:
    dataset = context.workload.dataset
    assert dataset is not None
    return from_records(context, records(dataset, dataset_path(dataset)))
