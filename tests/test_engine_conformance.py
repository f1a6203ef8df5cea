"""Conformance of every engine to the engine interface (mesh_assets.engine.interface), on a handful of in-memory rows.

Each test runs once per engine: DuckDB in the fast tier, Spark marked ``spark`` (it starts a JVM). An engine
passes when it registers a port's snapshot as a relation, runs queries over it, describes relations in
DuckDB's spelling, conforms a relation to the contract's types (decimals, dates, timestamps), writes Parquet
files whose types and values equal the other engines', and tells its own errors, transient or not, from others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mesh_assets.contract.model import Column, Table
from mesh_assets.engine.duckdb_engine import DuckDBEngine, contract_types
from mesh_assets.engine.interface import BuildJob, Engine, EngineSession, Sandbox
from mesh_assets.engine.ports import Port, Snapshot
from mesh_assets.engine.profile import profile_relation
from mesh_assets.settings import MeshSettings

CONTRACT = {"order_id": "INTEGER", "amount": "DECIMAL(15,2)", "day": "DATE", "placed_at": "TIMESTAMP",
            "note": "VARCHAR"}
ROWS = [(1, Decimal("10.50"), date(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5), "first"),
        (2, Decimal("0.01"), date(2024, 2, 29), datetime(2024, 2, 29, 23, 59, 59), None),
        (3, Decimal("-7.00"), None, None, "third")]
TABLE = Table(domain="shop", product="orders", name="orders", layer="silver", description="",
              columns=tuple(Column(n, "string", t, "") for n, t in CONTRACT.items()), rules=(), visibility="private",
              source=None, transform=None, slas=(), contract_path=Path("orders.yaml"))


def _duckdb() -> Engine:
    return DuckDBEngine(threads=1)


def _spark() -> Engine:
    from mesh_assets.engine.spark_engine import SparkEngine, spark_config

    return SparkEngine(spark_config=spark_config("local[1]", {}))


def _transient(name: str) -> BaseException:
    """An error each engine raises when a second try may pass (a file system or the network failed)."""
    if name == "duckdb":
        return duckdb.IOException("IO Error: Could not read from file: connection reset by peer")
    from py4j.protocol import Py4JNetworkError

    return Py4JNetworkError("An error occurred while trying to connect to the Java server")


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request: pytest.FixtureRequest) -> Engine:
    return {"duckdb": _duckdb, "spark": _spark}[request.param]()


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def port(lake: Path) -> Port:
    """The port ``shop/silver/orders`` with one published snapshot of :data:`ROWS` (written by plain DuckDB)."""
    port = Port(str(lake), TABLE.key)
    snapshot = port.new_snapshot("run-0")
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({', '.join(f'{c} {t}' for c, t in CONTRACT.items())})")
    con.executemany(f"INSERT INTO t VALUES ({', '.join('?' for _ in CONTRACT)})", ROWS)
    con.execute(f"COPY t TO '{snapshot.data_file}' (FORMAT parquet)")
    con.close()
    port.publish(snapshot.id, {"rows": len(ROWS)})
    return port


@pytest.fixture
def session(engine: Engine, lake: Path, tmp_path: Path) -> Iterator[EngineSession]:
    lake.mkdir(exist_ok=True)
    sandbox = Sandbox(str(lake), (str(lake),), (), str(tmp_path))
    with engine.open(TABLE, sandbox) as session:
        yield session


def _parquet(snapshot: Snapshot) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    """The Parquet files of ``snapshot`` as plain DuckDB reads them: their types and their rows, sorted."""
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{snapshot.glob}') ORDER BY order_id")
    return dict(zip(relation.columns, map(str, relation.dtypes))), relation.fetchall()


def test_a_registered_snapshot_is_a_relation(session: EngineSession, port: Port) -> None:
    session.register("silver", "orders", port.current_snapshot())
    rows = session.query('SELECT order_id, amount, day, note FROM silver.orders ORDER BY order_id')
    assert rows == [r[:3] + r[4:] for r in ROWS]
    assert session.describe(session.relation("SELECT * FROM silver.orders")) == CONTRACT


def test_an_empty_relation_has_the_contracts_shape(session: EngineSession) -> None:
    session.register_empty("previous", "orders", CONTRACT)
    assert session.query("SELECT count(*) FROM previous.orders") == [(0,)]
    assert session.describe(session.relation("SELECT * FROM previous.orders")) == CONTRACT


def test_a_query_runs_in_duckdbs_dialect(session: EngineSession, port: Port) -> None:
    session.register("silver", "orders", port.current_snapshot())
    sql = ("SELECT count(*) AS n, sum(amount) AS total, avg(amount) AS mean, "
           "count(DISTINCT date_trunc('month', day)) AS months FROM silver.orders")
    (n, total, mean, months), = session.query(sql)
    assert (n, total, months) == (3, Decimal("3.51"), 2) and mean == pytest.approx(1.17)


def test_build_runs_a_sql_transform(session: EngineSession, port: Port) -> None:
    session.register("silver", "orders", port.current_snapshot())
    sql = "SELECT order_id, amount * 2 AS doubled FROM silver.orders WHERE note IS NOT NULL"
    output = session.build(BuildJob(TABLE, [], sql, "sql/silver/orders.sql", "run-1", MeshSettings(root=Path("."))))
    assert output.sql == sql and output.staged is None
    assert list(session.describe(output.relation)) == ["order_id", "doubled"]


def test_conform_casts_to_the_contracts_types(session: EngineSession, lake: Path) -> None:
    relation = session.relation(
        "SELECT 'extra' AS dropped, '2024-01-02 03:04:05' AS placed_at, CAST(10.5 AS DOUBLE) AS amount, "
        "'2024-01-02' AS day, 1 AS order_id")
    actual = session.describe(relation)
    expected = contract_types(duckdb.connect(), CONTRACT)
    conformed = session.conform(relation, actual, expected)
    assert session.describe(conformed) == CONTRACT  # in the contract's order, missing null, extra dropped
    snapshot = Port(str(lake), TABLE.key).new_snapshot("run-1")
    assert session.write(conformed, snapshot) == 1
    types, rows = _parquet(snapshot)
    assert types == CONTRACT
    assert rows == [(1, Decimal("10.50"), date(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5), None)]


def test_engine_casts_are_width_and_precision_only(session: EngineSession, engine: Engine) -> None:
    actual = {"total": "DECIMAL(25,2)", "n": "BIGINT", "name": "VARCHAR"}
    expected = {"total": "DECIMAL(38,2)", "n": "INTEGER", "name": "INTEGER"}
    casts = session.engine_casts(actual, expected)
    assert "name" not in casts  # text where the contract says a number fails `schema` on every engine
    if engine.name == "duckdb":
        assert casts == {}  # DuckDB's typing is the SQL's own: the SQL casts
    else:
        assert casts == {"total": "DECIMAL(25,2) → DECIMAL(38,2)", "n": "BIGINT → INTEGER"}


def test_write_produces_the_same_parquet_on_every_engine(session: EngineSession, port: Port, lake: Path) -> None:
    session.register("silver", "orders", port.current_snapshot())
    relation = session.relation("SELECT * FROM silver.orders")
    snapshot = port.new_snapshot("run-1")
    assert session.write(session.conform(relation, session.describe(relation), CONTRACT), snapshot) == len(ROWS)
    assert _parquet(snapshot) == (CONTRACT, sorted(ROWS))


def test_checks_and_profile_run_on_the_session(session: EngineSession, port: Port) -> None:
    session.register("silver", "orders", port.current_snapshot())
    profile = {c["column"]: c for c in profile_relation(session.checks_session(), "silver.orders")}
    assert profile["order_id"]["rows"] == 3 and profile["day"]["nulls"] == 1
    assert profile["amount"]["type"] == "DECIMAL(15,2)"


@pytest.mark.parametrize("fail", [
    pytest.param(lambda s: s.describe(s.relation("SELECT no_such_column FROM previous.orders")), id="binder"),
    pytest.param(lambda s: s.query("SELECT order_id FROM previous.orders WHERE"), id="syntax"),
])
def test_an_engine_error_is_classified_permanent(session: EngineSession, fail: Callable[[Any], Any]) -> None:
    session.register_empty("previous", "orders", CONTRACT)
    with pytest.raises(Exception) as raised:
        fail(session)
    error = session.classify(raised.value)
    assert error is not None and not error.transient and error.message and "\n" not in error.message


def test_a_transient_error_is_classified_transient(session: EngineSession, engine: Engine) -> None:
    error = session.classify(_transient(engine.name))
    assert error is not None and error.transient


def test_other_errors_are_not_the_engines(session: EngineSession) -> None:
    assert session.classify(ValueError("a bug")) is None
    assert session.classify(KeyError("order_id")) is None
