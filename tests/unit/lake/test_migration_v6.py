"""Schema v6's migration: the committed H100 lake (pre-manifest, v2/v3) reads as it is, and migrates to v6
with sketches computed from its requests; fast-path answers equal exact ones."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from servesweep.analysis.pooled import pooled
from servesweep.lake import store
from servesweep.lake.query import query
from servesweep.lake.schema import SCHEMA_VERSION
from servesweep.lake.sketch import RELATIVE_ACCURACY
from tests.support.paths import REPO

H100 = REPO / "benchmarks" / "results" / "h100" / "lake"


@pytest.fixture
def old_lake(tmp_path) -> str:
    shutil.copytree(H100, tmp_path / "lake")
    return str(tmp_path / "lake")


def _exact_itl(lake: str, where: str = "true") -> np.ndarray:
    table = query(lake, f"""SELECT unnest(r.itl_ms) AS g FROM requests r JOIN points p USING (run_id, point_id)
        WHERE r.ok AND NOT r.warmup AND NOT coalesce(r.cooldown, false) AND p.source = 'measured'
        AND p.status IN ('ok', 'partial') AND {where}""")
    return np.sort(table["g"].to_numpy().astype(np.float64))


def _check_bound(result, exact: np.ndarray) -> None:
    assert result.count == exact.size
    for q, got in result.quantiles.items():
        lo = exact[int(np.floor(q * (exact.size - 1)))]
        assert abs(got - lo) <= RELATIVE_ACCURACY * lo + 1e-9, (q, got, lo)


def test_old_lake_reads_and_pools_from_its_requests(old_lake):
    assert set(store.run_versions(old_lake).values()) <= {2, 3}
    rows = query(old_lake, "SELECT count(*) AS n, count(itl_sketch) AS s FROM points").to_pylist()[0]
    assert rows["n"] > 0 and rows["s"] == 0
    result = pooled(old_lake, "itl")
    assert result.points_from_requests == result.points > 0
    _check_bound(result, _exact_itl(old_lake))


def test_migrate_writes_v6_runs_with_sketches(old_lake):
    before = query(old_lake, "SELECT run_id, point_id, ttft_p99_ms, itl_p99_ms FROM points ORDER BY ALL")
    count = query(old_lake, "SELECT count(*) AS n, sum(list_count(itl_ms)) AS g FROM requests").to_pylist()
    done = store.migrate(old_lake)
    assert set(done) == set(store.run_ids(old_lake)) and set(done.values()) <= {2, 3}
    assert set(store.run_versions(old_lake).values()) == {SCHEMA_VERSION}
    assert store.migrate(old_lake) == {}  # nothing left to do
    assert query(old_lake, "SELECT run_id, point_id, ttft_p99_ms, itl_p99_ms FROM points ORDER BY ALL") == before
    assert query(old_lake, "SELECT count(*) AS n, sum(list_count(itl_ms)) AS g FROM requests").to_pylist() == count
    sketched = query(old_lake, "SELECT count(*) FILTER (WHERE itl_sketch IS NULL AND status <> 'failed' AND "
                               "source = 'measured') AS missing, count(*) AS n FROM points").to_pylist()[0]
    assert sketched["missing"] == 0
    result = pooled(old_lake, "itl")
    assert result.points_from_requests == 0
    _check_bound(result, _exact_itl(old_lake))
    one = query(old_lake, "SELECT any_value(run_id) AS r FROM points").to_pylist()[0]["r"]
    _check_bound(pooled(old_lake, "itl", f"run_id = '{one}'"), _exact_itl(old_lake, f"p.run_id = '{one}'"))
    # Rows written by the v6 writer store the gaps packed; readers see the same lists.
    files = [p for p in Path(old_lake, "requests").rglob("*.parquet") if "-g0" in p.name]
    import pyarrow.parquet as pq
    assert files and all("itl_ms_packed" in pq.read_schema(p).names and "itl_ms" not in pq.read_schema(p).names
                         for p in files)
