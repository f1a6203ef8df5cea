"""The engine interface: the few operations write–audit–publish needs of an engine (docs/architecture.md).

A step's write–audit–publish (mesh_assets.engine.write_audit_publish) is written once. It asks its engine — DuckDB
(mesh_assets.engine.duckdb_engine), Spark (mesh_assets.engine.spark_engine) or dbt
(mesh_assets.orchestration.dbt_assets) — for a handful of primitives, in the spirit of dbt's adapter interface:

- :meth:`EngineSession.register` a port's snapshot (or an empty relation) as the relation ``<schema>.<name>``;
- :meth:`EngineSession.relation` a query (DuckDB's dialect) as a lazy relation, :meth:`EngineSession.query`
  its rows; :meth:`EngineSession.build` the table's output (ingestion, SQL, Python, a dbt model);
- :meth:`EngineSession.describe` a relation's columns and types, in DuckDB's spelling;
- :meth:`EngineSession.conform` a relation to the contract's columns and types;
- :meth:`EngineSession.write` a relation as the Parquet files of a staged snapshot;
- :meth:`EngineSession.classify` an exception as the engine's own error, transient or not.

A *relation* is the engine's own handle on a query, opaque to the framework: SQL text on DuckDB, a DataFrame on
Spark. Nothing runs until it is written, described or queried.

An engine's :meth:`EngineSession.build` either returns a relation for the framework to write (DuckDB, Spark), or
writes the output itself into a snapshot it asks for with :attr:`BuildJob.stage` and returns the relation over
those files with the rows written (an engine such as dbt, whose own materialization writes the files). Either
way the output then goes through the same audit (schema, checks, profile) and publication.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import duckdb

    from mesh_assets.contract.model import Partitioning, Table
    from mesh_assets.engine.ingestion import Drift
    from mesh_assets.engine.outcomes import CheckOutcome
    from mesh_assets.engine.ports import Snapshot
    from mesh_assets.settings import MeshSettings
    from mesh_assets.sql.inputs import InputRef
    from mesh_assets.engine.sql_session import SqlSession


@dataclass(frozen=True)
class Sandbox:
    """What a step's SQL may touch: ``directories`` (local paths or fsspec URLs: its own port's and its rejects
    port's locations; on an object store also the folders of the snapshots it reads) and single local ``files``
    (exactly the files of the Iceberg snapshots it reads, a bronze table's source files).
    ``storage_root`` is the ports' root, whose fsspec file system an engine registers when it is not local;
    ``spill`` a folder of the step's own to spill to (DuckDB lets a connection read its spill folder).
    Built by :func:`mesh_assets.engine.write_audit_publish.step_sandbox`."""

    storage_root: str
    directories: tuple[str, ...]
    files: tuple[str, ...] = ()
    spill: str | None = None


@dataclass
class BuildJob:
    """What :meth:`EngineSession.build` builds: ``table``'s output from the relations registered for it.

    Attributes:
        table: the contract's table.
        inputs: the ports its transform reads, registered as ``<schema>.<table>`` (and ``previous.<table>``
            for silver and gold tables).
        sql: the transform in DuckDB's dialect, already checked against the function allow-list (empty for
            bronze and Python transforms).
        origin: the transform's file relative to the mesh root, or ``ingestion of <source path>``.
        run_id: the Dagster run id (bronze lineage column ``_run_id``).
        settings: the mesh's settings.
        drift: bronze only: the source files found and how their headers differ from the contract.
        stage: creates a new staged snapshot of the table's port, for an engine whose build writes the output
            itself; the framework discards it if the step fails and publishes it only after its audit.
        windows: of a partitioned table built by a Python transform or a dbt model, whose code the framework
            does not rewrite: each partitioned input (``<schema>.<table>``) → the rows of the step's partitions
            in it, a predicate in DuckDB's SQL (built by sqlglot from the window,
            mesh_assets.sql.partition_filter); the SQL of a SQL transform is filtered instead.
    """

    table: Table
    inputs: list[InputRef]
    sql: str
    origin: str
    run_id: str
    settings: MeshSettings
    drift: Drift | None = None
    stage: Callable[[], Snapshot] | None = None
    windows: dict[str, str] = field(default_factory=dict)


@dataclass
class Output:
    """What :meth:`EngineSession.build` produced.

    Attributes:
        relation: the output, an engine relation.
        sql: the transform as people read it (materialization metadata ``sql``, column lineage).
        staged: the snapshot the build already wrote ``relation`` into (via :attr:`BuildJob.stage`), with
            ``rows`` its row count; ``None`` when the framework is to write it.
        rows: rows written by the build, when ``staged``.
        outcomes: the builder's own checks (dbt tests); blocking ones block publication like the contract's.
        metadata: more materialization metadata (``dbt_seconds``).
    """

    relation: Any
    sql: str
    staged: Snapshot | None = None
    rows: int | None = None
    outcomes: tuple[CheckOutcome, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineError:
    """An engine's own error, for people: ``message`` on one line (at most 2,000 characters) and whether a
    second try may pass (``transient``: I/O, a lost connection or executor, memory; mesh_assets.errors)."""

    message: str
    transient: bool


class EngineSession(Protocol):
    """One step's session on an engine: its relations live and die with it, and no other step sees them."""

    driver: duckdb.DuckDBPyConnection
    """A DuckDB connection on the step's process, in the step's sandbox, for what is not the table's data:
    sampling the landed files' headers for schema drift (mesh_assets.engine.ingestion.detect_drift). On DuckDB it is
    the step's connection itself."""

    def register(self, schema: str, name: str, snapshot: Snapshot) -> None:
        """Make ``<schema>.<name>`` a relation over ``snapshot``'s Parquet files (a port's current snapshot or
        its masked copy; the relation itself masks nothing)."""

    def register_empty(self, schema: str, name: str, columns: Mapping[str, str]) -> None:
        """Make ``<schema>.<name>`` an empty relation of ``columns`` (name → DuckDB type)."""

    def cache(self, schema: str, name: str) -> None:
        """Hold the registered relation ``<schema>.<name>`` in the session's memory (spilled to the step's spill
        folder when it does not fit) until it is registered again: a dimension that every partition of a range
        built one partition at a time joins, read once instead of once per partition."""

    def relation(self, sql: str) -> Any:
        """``sql`` (one SELECT in DuckDB's dialect, over registered relations) as a lazy relation.

        Raises:
            the engine's error (see :meth:`classify`), sqlglot's when a translation fails.
        """

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (DuckDB's dialect), fetched whole: for small results only."""

    def build(self, job: BuildJob) -> Output:
        """Build ``job.table``'s output: ingest its source files (bronze, ``job.drift``), run its SQL or Python
        transform, or run its dbt model.

        Raises:
            TransformError: a Python transform or a dbt model failed (the message names the file and the fix).
            the engine's error (see :meth:`classify`).
        """

    def describe(self, relation: Any) -> dict[str, str]:
        """Column name → type of ``relation``, in order, spelled as DuckDB's ``DESCRIBE`` prints it
        (``DECIMAL(15,2)``, ``TIMESTAMP WITH TIME ZONE``)."""

    def engine_casts(self, actual: Mapping[str, str], expected: Mapping[str, str]) -> dict[str, str]:
        """The columns whose type differs from the contract's only by this engine's typing rules (width or
        precision: Spark sums a ``DECIMAL(15,2)`` to ``DECIMAL(25,2)``, DuckDB to ``DECIMAL(38,2)``), which
        :meth:`conform` casts without failing ``schema``: column → ``"<actual> → <expected>"``. Empty on the
        engine whose typing is the SQL's own (DuckDB)."""

    def conform(self, relation: Any, actual: Mapping[str, str], expected: Mapping[str, str]) -> Any:
        """``relation`` (columns ``actual``) as the contract says (``expected``): its columns in order, cast
        to the contract's types, missing ones null, extra ones dropped. ``relation`` itself when nothing
        differs."""

    def write(self, relation: Any, snapshot: Snapshot, partition: Partitioning | None = None,
              key: str | None = None) -> int:
        """Write ``relation`` as zstd Parquet files into ``snapshot``'s folder; return the rows written. With
        ``partition`` (the table's partitioning), each file holds the rows of one partition only (an Iceberg
        partitioned table's rule); with ``key`` too, ``relation`` holds that one partition's rows, written as
        one file named after it, beside the files of the snapshot's other partitions (no file when it has no
        row). Only DuckDB writes partitioned tables."""

    def rejects(self, job: BuildJob) -> Any | None:
        """After a bronze table's output was written: its rejected records as a relation shaped as
        :data:`mesh_assets.engine.ingestion.REJECTS_COLUMNS`, or ``None`` when the engine keeps no record-level
        rejects for the source's format."""

    def records_read(self, job: BuildJob) -> int:
        """A bronze table's records in its source files, counted independently of the typed read (the
        ``row_conservation`` check)."""

    def checks_session(self) -> duckdb.DuckDBPyConnection | SqlSession:
        """What mesh_assets.engine.checks.run_rules and mesh_assets.engine.profile.profile_relation run on."""

    def classify(self, exc: BaseException) -> EngineError | None:
        """``exc`` as this engine's own error (its message for people, transient or not), or ``None`` when
        ``exc`` is not the engine's (the framework's own errors, a bug)."""


class Engine(Protocol):
    """An engine: opens one :class:`EngineSession` per step. Chosen once per table when the definitions load
    (mesh_assets.engine.choice.table_engine)."""

    name: str
    """What a port's Iceberg snapshot summary records as its writer (``mesh.engine``): ``duckdb`` or ``spark``."""

    def open(self, table: Table, sandbox: Sandbox) -> AbstractContextManager[EngineSession]:
        """A new session for ``table``'s step, its file access confined to ``sandbox``; closed (its relations,
        caches and spill files gone) when the block ends.

        Raises:
            MeshError: the engine cannot start (no Java for Spark, an unreachable master), with the fix.
        """
