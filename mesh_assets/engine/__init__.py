"""The write-audit-publish core and the engines under it (DuckDB, Spark, dbt), output ports, ingestion, checks and
profiles."""
