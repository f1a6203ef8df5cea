"""Attacks on PII masking, as the security review ran them (items 1–3 of "Security that holds"), on the tiny
mesh: a reader of `mesh sql` without a PII grant must get no clear value of a sensitive column, whatever it
queries, and neither must profiles, check samples, event metadata or the catalog.

Setup (:func:`attacked`): domain ``shop`` with ``customer`` classified ``pii`` in every table, named like TPC-H
customers (``Customer#000000007``), so the issue's dictionary attack applies; domain ``billing`` reads
``shop.order_totals`` without a PII grant; two runs, so an older snapshot is retained beside the current one.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import sqlglot
from sqlglot import exp

from conftest import edit_columns, isolate, land_orders, make_tiny_root, mesh_cli, restored
from mesh_assets import connect, load_mesh
from mesh_assets.catalog import build_catalog
from mesh_assets.consumption.query import read_only_query
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.masked_copy import Masking, write_masked_copy
from mesh_assets.engine.ports import Port
from mesh_assets.errors import MeshError, TransformError
from mesh_assets.orchestration.runner import run_mesh
from mesh_assets.sql.functions import ALLOWED_FUNCTIONS, allowed
from test_access import masked
from test_governance import add_consumer

PORT = Path(".mesh/lake/shop/gold/order_totals")
NAMES = [f"Customer#{i:09d}" for i in range(1, 21)]


def _classify(root: Path) -> None:
    """``customer`` is PII in every table of ``shop``; order totals above 15 fail a warning rule whose failing
    rows are sampled with their key, the customer."""
    def edit(table: str, column: dict) -> None:
        if column["name"] == "customer":
            column["classification"] = "pii"
        if table == "order_totals" and column["name"] == "total":
            column["quality"] = [{"id": "total_is_small", "metric": "invalidValues",
                                  "arguments": {"validValues": [1.5, 10.0]}, "mustBe": 0, "severity": "warning"}]
    edit_columns(root, edit)


def _land(root: Path, orders: int) -> None:
    lines = [f"{i},{NAMES[i % len(NAMES)]},{10 + i}.00" for i in range(1, orders + 1)]
    land_orders(root, "order_id,customer,amount\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def attacked_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str], dg.DagsterInstance]]:
    """The mesh described in the module docstring, run twice once for the module: its folder, the run ids and
    the instance that recorded them (read only: tests change copies, :func:`attacked`)."""
    root = make_tiny_root(tmp_path_factory.mktemp("attacked"))
    add_consumer(root)
    _classify(root)
    (root / ".mesh/landing/shop/customers.csv").write_text(
        "customer,segment,since\n" + "".join(f"{n},retail,2020-01-15\n" for n in NAMES))
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        isolate(mp)
        runs = []
        for orders in (30, 40):
            _land(root, orders)
            summary = run_mesh(load_mesh(root), instance)
            assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
            runs.append(summary.run_id)
        yield root, runs, instance


@pytest.fixture
def attacked(attacked_once) -> Iterator[tuple[Path, list[str]]]:
    """The module's attacked mesh, its lake included, restored after the test; with the run ids."""
    with restored(attacked_once[0]) as root:
        yield root, attacked_once[1]


def clear_values(root: Path) -> set[str]:
    """Every value of ``customer`` in every file under the storage root that has the column, read directly."""
    values: set[str] = set()
    for path in (root / ".mesh/lake").rglob("*.parquet"):
        columns = [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
        if "customer" in columns:
            values |= {r[0] for r in duckdb.sql(f"SELECT customer FROM read_parquet('{path}')").fetchall()}
    return values & set(NAMES)  # the digests of masked copies and of billing's port are not clear values


def test_no_reader_reads_the_clear_files_of_a_masked_port(attacked) -> None:
    """Item 1: `select … from read_parquet('<port's folder>/data/*/part-0.parquet')` from `mesh sql`, and the
    Iceberg metadata beside it."""
    root, _ = attacked
    folder = (root / PORT).resolve()
    snapshots = sorted(p.name for p in (folder / "data").iterdir())
    assert len(snapshots) == 2  # the current snapshot and an older one, retained
    attacks = [f"select customer, total from read_parquet('{folder}/data/*/part-0.parquet')",
               *(f"select customer from read_parquet('{folder}/data/{s}/part-0.parquet')" for s in snapshots),
               f"select * from read_parquet('{folder}/**/*.parquet')",
               f"select * from read_parquet('{folder}__masked/data/*/part-0.parquet')",  # older masked copies too
               f"select * from read_blob('{folder}/metadata/*')",  # manifests: column bounds
               f"select * from glob('{folder}/*')"]
    con = connect(root, sandbox=True)
    assert sorted(r[0] for r in con.sql("SELECT customer FROM shop.order_totals").fetchall()) == \
        sorted(masked(n) for n in NAMES)  # the port itself reads masked
    for attack in attacks:
        with pytest.raises(MeshError, match="is not allowed"):  # the reader's function allow-list
            read_only_query(attack)
        with pytest.raises(duckdb.PermissionException, match="Permission Error"):  # and, beneath it, the sandbox
            con.sql(attack).fetchall()
    shown = mesh_cli(root, "sql", attacks[0], "--format", "csv")
    assert shown.returncode != 0 and "is not allowed" in shown.stderr
    assert not set(NAMES) & set(shown.stdout.split())


def test_the_masking_function_is_no_oracle(attacked, instance) -> None:
    """Item 2: `… join range(1,150001) on mesh_mask('Customer#'||lpad(i,9,'0')) = c_name`, from `mesh sql`
    and from a consumer's transform."""
    root, _ = attacked
    con = connect(root, sandbox=True)
    attack = ("select customer from shop.order_totals join range(1, 150001) t(i) "
              "on mesh_mask('Customer#' || lpad(i::varchar, 9, '0')) = customer")
    with pytest.raises(MeshError, match="mesh_mask"):  # the reader's function allow-list
        read_only_query(attack)
    with pytest.raises(duckdb.CatalogException, match="mesh_mask"):  # and no such function on the connection
        con.sql(attack).fetchall()
    # no function of the connection computes the mask: every one taking a text, tried on a clear value
    functions = con.sql("SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'scalar' "
                        "AND parameter_types = ['VARCHAR']").fetchall()
    assert len(functions) > 50
    digest = masked(NAMES[0])
    for (function,) in functions:
        try:
            result = con.execute(f'SELECT CAST("{function}"(?) AS VARCHAR)', [NAMES[0]]).fetchall()
        except duckdb.Error:
            continue
        assert result != [(digest,)], function
    # a consumer's step masks nothing either: its transform cannot call the function
    (root / "domains/billing/sql/gold/invoices.sql").write_text(
        "select mesh_mask(customer) as customer, total from shop.order_totals")
    with pytest.raises(MeshError, match=r"invoices\.sql.*mesh_mask\(\) is not allowed"):
        run_mesh(load_mesh(root), instance, ["billing"])


def _strings(value: Any) -> list[str]:
    """Every string inside ``value`` (lists, dicts, tuples), for searching."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [] if value is None else [str(value)]


def _leaks(text: str, names: set[str]) -> list[str]:
    return sorted(n for n in names if n in text)


def test_profiles_samples_events_and_catalog_hold_no_clear_value(attacked, attacked_once, tmp_path) -> None:
    """Item 3: min/max/top values of PII columns in `profile.json`, the Dagster event log and the catalog; and
    the failing-row samples of checks."""
    root, runs = attacked
    instance = attacked_once[2]
    names = clear_values(root)
    assert names == set(NAMES)
    profiles = list((root / ".mesh/lake").rglob("profile.json"))
    assert len(profiles) >= 8  # every table, both runs
    for path in profiles:
        assert _leaks(path.read_text(), names) == [], path
    gold = json.loads(next((root / PORT / "data").glob("*/profile.json")).read_text())["columns"]
    customer = next(c for c in gold if c["column"] == "customer")
    assert customer["rows"] == 20 and customer["nulls"] == 0  # counts stay
    assert customer["min"] is None and customer["max"] is None and customer["top_values"] == []

    sampled = False
    for run_id in runs:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None:
                continue
            text = dg.serialize_value(record)
            assert _leaks(text, names) == [], (event.event_type_value, _leaks(text, names))
            evaluation = event.event_specific_data  # an AssetCheckEvaluation for a check's event
            if (event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
                    and evaluation.check_name == "total_is_small"):
                sample = evaluation.metadata["sample"].value
                assert sample and all(row["customer"] == "<masked>" for row in sample)
                sampled = True
    assert sampled  # the attack had a sample to look at

    out = tmp_path / "catalog"
    build_catalog(load_mesh(root), out, instance)
    port = Port(str((root / ".mesh/lake").resolve()), ("shop", "gold", "order_totals"))
    current = port.current()["snapshot"]
    assert f"{(root / PORT).resolve()}__masked/data/{current}/part-0.parquet" in \
        (out / "products/shop.orders.html").read_text()
    assert "shop.gold__order_totals__masked" in (out / "products/shop.orders.html").read_text()
    # the clear table's manifests keep no bounds of the sensitive column: no clear value in its metadata
    for path in (root / PORT / "metadata").iterdir():
        assert not any(name.encode() in path.read_bytes() for name in names), path
    for page in out.rglob("*"):
        if page.is_file() and page.suffix in (".html", ".js", ".json"):
            assert _leaks(page.read_text(encoding="utf-8"), names) == [], page


# --- fuzz: 10,000 reader queries over the masked port -------------------------------------------------------

COLUMNS = {"shop.order_totals": ["customer", "total"], "billing.invoices": ["customer", "total"]}
TEXT = ["upper({})", "lower({})", "reverse({})", "substr({}, 1, 9)", "left({}, 12)", "right({}, 4)",
        "replace({}, 'a', 'b')", "concat({}, '-x')", "trim({})", "md5({})", "sha256({})", "hash({})",
        "length({})", "regexp_replace({}, '[0-9]', '', 'g')", "split_part({}, '#', 1)", "CAST({} AS VARCHAR)",
        "CAST({} AS BLOB)", "to_json({})", "list_value({})", "struct_pack(v := {})", "string_split({}, 'a')",
        "{} || ''", "coalesce({}, 'none')", "nullif({}, 'x')", "unhex({})", "from_hex({})", "lpad({}, 20, '_')",
        "format('{{}}', {})", "printf('%s', {})", "CAST({} AS VARCHAR[])", "try_cast({} AS INTEGER)",
        "encode({})", "ascii({})", "base64(CAST({} AS BLOB))"]
AGGREGATES = ["min({})", "max({})", "string_agg({}, ',')", "list({})", "first({})", "any_value({})",
              "arg_min({}, total)", "count(DISTINCT {})", "mode({})", "histogram({})", "approx_top_k({}, 3)"]
FILTERS = ["customer LIKE 'Customer#%'", "customer = 'Customer#000000001'", "customer > 'a'", "total > 20",
           "customer IN (SELECT 'Customer#' || lpad(i::varchar, 9, '0') FROM range(1, 30) t(i))",
           "starts_with(customer, 'C')", "customer IS NOT NULL", "length(customer) = 64", "true"]


def _paths(root: Path) -> tuple[list[str], list[str]]:
    """Every file and folder under the storage root."""
    files, folders = [], []
    for here, dirs, names in os.walk(root / ".mesh/lake"):
        folders.append(here)
        files += [f"{here}/{n}" for n in names]
    return files, folders


def _query(rng: random.Random, files: list[str], folders: list[str]) -> str:
    table = rng.choice(list(COLUMNS))
    column = rng.choice(COLUMNS[table])
    kind = rng.randrange(8)
    expr = rng.choice(TEXT).format(column)
    where = rng.choice(FILTERS)
    if kind == 0:
        return f"SELECT {expr} FROM {table} WHERE {where}"
    if kind == 1:
        return f"SELECT {rng.choice(AGGREGATES).format(column)} FROM {table} WHERE {where}"
    if kind == 2:  # the oracle join, with whatever function is at hand
        function = rng.choice(["mesh_mask", "md5", "sha256", "hash", "upper"])
        return (f"SELECT t.i, {expr} FROM {table} JOIN range(1, {rng.randrange(2, 60)}) t(i) "
                f"ON {function}('Customer#' || lpad(t.i::varchar, 9, '0')) = customer")
    if kind == 3:
        reader = rng.choice(["read_parquet", "read_text", "read_blob", "read_csv", "read_json_auto",
                             "parquet_metadata", "parquet_schema"])
        path = rng.choice(files + [f"{f}/*.parquet" for f in folders] + [f"{f}/**" for f in folders])
        return f"SELECT * FROM {reader}('{path}')"
    if kind == 4:
        return f"SELECT * FROM glob('{rng.choice(folders)}/{rng.choice(['*', '**', '*/*', '*/*/*.parquet'])}')"
    if kind == 5:
        other = rng.choice(list(COLUMNS))
        return (f"SELECT a.customer, b.{rng.choice(COLUMNS[other])} FROM {table} a JOIN {other} b "
                f"ON a.customer = b.customer WHERE {where.replace('customer', 'a.customer')}")
    if kind == 6:
        return rng.choice(["SELECT * FROM duckdb_views()", "SELECT * FROM duckdb_settings()",
                           "SELECT * FROM duckdb_functions() WHERE NOT internal", "SELECT * FROM duckdb_tables()",
                           "SELECT * FROM duckdb_secrets()", "SELECT * FROM duckdb_temporary_files()",
                           "SELECT current_setting('allowed_directories')", "SELECT * FROM pragma_database_list"])
    return (f"SELECT {column}, count(*) FROM {table} GROUP BY ALL HAVING count(*) > {rng.randrange(3)} "
            f"ORDER BY {rng.randrange(1, 3)} LIMIT {rng.randrange(1, 30)}")


@pytest.mark.slow  # a fuzzing campaign: 10,000 queries
def test_fuzzed_reader_queries_never_return_a_clear_value(attacked) -> None:
    """10,000 generated queries of a reader without a PII grant, through `mesh sql`'s path (one read-only query
    on the sandboxed connection): none returns a clear value of a PII column, or a value holding one, and none
    that ran called a function outside the reader's allow-list (as DuckDB's own parser reads the query)."""
    root, _ = attacked
    names = clear_values(root)
    assert names == set(NAMES)
    files, folders = _paths(root)
    con = connect(root, sandbox=True)
    parser = duckdb.connect()  # DuckDB's own parser: an independent record of the functions a query calls
    rng = random.Random(20261201)
    answered = 0
    for _ in range(10_000):
        sql = _query(rng, files, folders)
        try:
            rows = con.sql(read_only_query(sql)).fetchall()
        except (duckdb.Error, MeshError):
            continue  # refusals are fine
        answered += 1
        for value in _strings(rows):
            assert value not in names and not _leaks(value, names), (sql, value)
        outside = {name for name in _functions_called(parser, sql) if not _on_allow_list(name)}
        assert not outside, (sql, outside)
    assert answered > 3000  # most queries ran: the fuzz reached the data


DUCKDB_SPELLING = {"count_star": "count"}  # DuckDB's parser names count(*) so


def _on_allow_list(name: str) -> bool:
    """``name`` is listed, or is DuckDB's alias of a listed function (``from_hex`` of ``unhex``), as the
    documented rule says: a name sqlglot parses into a listed function counts as that function."""
    if name in ALLOWED_FUNCTIONS:
        return True
    for arity in (1, 2, 3):
        try:
            call = sqlglot.parse_one(f"SELECT {name}({', '.join(['1'] * arity)})", read="duckdb").find(exp.Func)
        except sqlglot.ParseError:
            continue
        return call is not None and allowed(call)
    return False


def _functions_called(parser: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """The functions (scalar, aggregate, table) of ``sql`` as DuckDB's parser names them
    (``json_serialize_sql``), operators such as ``||`` or ``~~`` (LIKE) left out."""
    tree = json.loads(parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    assert not tree["error"], tree
    names, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("function_name"), str) and re.fullmatch(r"\w+", node["function_name"]):
                name = node["function_name"].lower()
                names.add(DUCKDB_SPELLING.get(name, name))
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    return names


def test_a_masked_copy_that_cannot_be_written_fails_with_the_port_named(tmp_path: Path) -> None:
    """A snapshot whose data files are missing (the staged files lost) gives a failure naming the port and the
    snapshot, and the copy is never marked complete, so no reader is pointed at it."""
    port = Port(str(tmp_path / "lake"), ("shop", "gold", "order_totals"))
    snapshot = port.new_snapshot("run1")
    masking = Masking(DuckDBEngine(), ("customer",), b"salt-of-the-tests-0123456789")
    with pytest.raises(TransformError, match=rf"shop/gold/order_totals: writing the masked copy of snapshot "
                                             rf"{snapshot.id} failed: .*Nothing was published"):
        write_masked_copy(port, snapshot, masking)
    assert port.masked_columns(snapshot.id) is None and port.masked_port().current() is None
