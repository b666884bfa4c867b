"""Schema migrations: each a small function from one version to the next."""

import pyarrow as pa

from servesweep.lake.schema import SCHEMA_VERSION, TABLE_MIGRATIONS, migrate, migrate_v4_to_v5


def test_v4_points_gain_the_v5_columns_as_null():
    old = pa.table({"point_id": ["a"], "batch_size": [1]})
    new = migrate_v4_to_v5("points", old)
    assert new.column("workload_source").to_pylist() == [None] and new.column("point_id").to_pylist() == ["a"]
    assert migrate_v4_to_v5("requests", old) is old


def test_migrate_walks_every_step_to_the_current_version():
    assert max(TABLE_MIGRATIONS) == SCHEMA_VERSION - 1
    new = migrate("points", pa.table({"point_id": ["a"]}), 4)
    assert {"api", "workload_name", "workload_source"} <= set(new.column_names)


def test_v7_columns_are_defined_and_read_as_null_from_v6():
    from servesweep.lake.schema import SCHEMAS, V7_ADDED, migrate_v6_to_v7
    for table, names in V7_ADDED.items():
        assert set(names) <= set(SCHEMAS[table].names), table
        new = migrate_v6_to_v7(table, pa.table({"run_id": ["r"]}))
        assert all(new.column(n).to_pylist() == [None] for n in names)
