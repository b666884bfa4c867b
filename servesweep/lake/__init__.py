"""The result lake: Parquet tables on a local directory or GCS, queried with DuckDB."""
