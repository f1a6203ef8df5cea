"""A faster SQLite event log for the embedded Dagster instance.

Dagster's default ``SqliteEventLogStorage`` (a database per run plus an index database) opens a new
SQLAlchemy engine and SQLite connection for every event, and commits with a full fsync. An asset check costs
about three events (planned, output, evaluation), each written to the run's database and mirrored in the index,
so the reference mesh's ~600 checks made the event log the largest cost of ``mesh run`` after DuckDB itself
(profiled with py-spy; docs/performance.md). This subclass keeps one connection per database file (at most
``_OPEN_FILES``, least recently used closed first) and commits with ``synchronous=NORMAL`` — in WAL mode a
crash keeps the database consistent; a power loss may drop the last events. Dagster's own lock still serialises
every use of a connection. Production deployments use Postgres instead.

Selected in ``dagster.yaml``::

    event_log_storage:
      module: mesh_assets.orchestration.instance_storage
      class: PooledSqliteEventLogStorage
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import create_db_conn_string
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

_OPEN_FILES = 32
_BUSY_TIMEOUT_S = 30


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with pooled connections (config: ``base_dir``, default
    ``$DAGSTER_HOME/history/runs``, where Dagster's default storage keeps it, so both read the same files)."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        home = os.environ.get("DAGSTER_HOME", ".")
        super().__init__(base_dir or os.path.join(home, "history", "runs"), inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        from dagster import Field, StringSource

        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
                          ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engines.pop(shard, None) or self._open(shard)
            self._engines[shard] = engine  # most recently used last
            while len(self._engines) > _OPEN_FILES:
                self._engines.popitem(last=False)[1].dispose()
            with engine.connect() as conn, conn.begin():
                yield conn

    def _open(self, shard: str) -> Engine:
        engine = db.create_engine(
            create_db_conn_string(self._base_dir, shard),
            poolclass=StaticPool,
            connect_args={"timeout": _BUSY_TIMEOUT_S, "check_same_thread": False},
        )

        @db.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        super().dispose()
