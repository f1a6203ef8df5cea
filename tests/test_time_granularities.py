"""Hour and week partitions (docs/partitions.md): a TIMESTAMP partition column by hour, landed one folder per
hour, and a gold table by week (weeks starting on a Wednesday) built from those hours, on TPC-H orders of
January 1992 given an hour of the day."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import TEST_SALT
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.orchestration.runner import run_mesh

DAYS = ("1992-01-01", "1992-01-09")  # first and last day landed: a Wednesday to the next week's Thursday
WEEKS = ("1992-01-01", "1992-01-08")
HOURLY = (("web", "bronze", "raw_events"), ("web", "silver", "events"))
WEEKLY = ("web", "gold", "weekly_revenue")
EVENTS = ("SELECT o_orderkey AS event_id, o_custkey AS customer_id, o_totalprice AS amount, "
          "CAST(o_orderdate AS TIMESTAMP) + to_hours(CAST(o_orderkey % 24 AS INTEGER)) AS event_at "
          "FROM read_csv('{csv}', header = true) WHERE o_orderdate BETWEEN DATE '{first}' AND DATE '{last}'")
CONTRACT = """\
apiVersion: v3.1.0
kind: DataContract
id: web-events
name: events
version: 1.0.0
status: active
domain: web
team:
  name: web-team
description:
  purpose: Web events (TPC-H orders at an hour of their day) by hour, and their revenue by week.
schema:
  - name: raw_events
    physicalType: table
    description: Events as landed, one folder per hour.
    customProperties:
      - {{property: layer, value: bronze}}
      - property: source
        value: {{path: "web/events/{{date}}/{{hour}}/*.csv", format: csv}}
      - property: partitioning
        value: {{granularity: hour, start: "1992-01-01T00:00", end: "1992-01-15"}}
    properties:
{events}  - name: events
    physicalType: table
    description: Events, by hour.
    customProperties:
      - {{property: layer, value: silver}}
      - property: partitioning
        value: {{granularity: hour, start: "1992-01-01T00:00", end: "1992-01-15"}}
    properties:
{events}  - name: weekly_revenue
    physicalType: table
    description: Revenue per week, the weeks starting on a Wednesday.
    customProperties:
      - {{property: layer, value: gold}}
      - property: partitioning
        value: {{granularity: week, start: "1992-01-01", end: "1992-01-15"}}
    properties:
      - {{name: week_start, logicalType: date, physicalType: DATE, primaryKey: true, partitioned: true,
         partitionKeyPosition: 1, description: The week's first day (a Wednesday).}}
      - {{name: revenue, logicalType: number, physicalType: "DECIMAL(38,2)", required: true, description: Revenue.}}
      - {{name: events, logicalType: integer, physicalType: BIGINT, required: true, description: Events.}}
"""
EVENT_PROPERTIES = """\
      - {name: event_id, logicalType: integer, physicalType: BIGINT, primaryKey: true, description: Event key.}
      - {name: customer_id, logicalType: integer, physicalType: INTEGER, required: true, description: Customer.}
      - {name: amount, logicalType: number, physicalType: "DECIMAL(15,2)", description: Amount.}
      - {name: event_at, logicalType: timestamp, physicalType: TIMESTAMP, required: true, partitioned: true,
         partitionKeyPosition: 1, description: When the event happened (UTC).}
"""
WEEKLY_SQL = """\
SELECT CAST(event_at AS DATE) - CAST((isodow(event_at) + 4) % 7 AS INTEGER) AS week_start,
       CAST(sum(amount) AS DECIMAL(38,2)) AS revenue, count(*) AS events
FROM silver.events
GROUP BY ALL
"""


def make_root(parent: Path, tpch: Path) -> Path:
    """A one-domain mesh whose landing zone holds the events of :data:`DAYS`, one folder per hour (a header
    line alone for an hour without events, as a feed lands a quiet hour)."""
    root = parent / "hourly"
    domain = root / "domains" / "web"
    (domain / "products").mkdir(parents=True)
    (domain / "sql" / "silver").mkdir(parents=True)
    (domain / "sql" / "gold").mkdir(parents=True)
    (root / "mesh.yaml").write_text("name: hourly\nstorage_root: .mesh/lake\nlanding_zone: .mesh/landing\n")
    (domain / "domain.yaml").write_text(textwrap.dedent("""\
        name: web
        team: web-team
        members: [wes@example.com]
        description: Web events by hour and their revenue by week, for the framework's tests.
        """))
    (domain / "products" / "events.yaml").write_text(CONTRACT.format(events=EVENT_PROPERTIES))
    (domain / "sql" / "silver" / "events.sql").write_text("SELECT event_id, customer_id, amount, event_at "
                                                            "FROM bronze.raw_events\n")
    (domain / "sql" / "gold" / "weekly_revenue.sql").write_text(WEEKLY_SQL)
    con = duckdb.connect()
    events = EVENTS.format(csv=tpch / "tpch" / "orders" / "1992-01" / "*.csv", first=DAYS[0], last=DAYS[1])
    con.execute(f"CREATE TABLE events AS {events}")
    for (hour,) in con.execute(f"SELECT strftime(range, '%Y-%m-%dT%H') FROM range(TIMESTAMP '{DAYS[0]}', "
                               f"TIMESTAMP '{DAYS[1]}' + INTERVAL 1 DAY, INTERVAL 1 HOUR)").fetchall():
        folder = root / ".mesh" / "landing" / "web" / "events" / hour[:10] / hour
        folder.mkdir(parents=True)
        con.execute(f"COPY (SELECT * FROM events WHERE strftime(event_at, '%Y-%m-%dT%H') = '{hour}') "
                    f"TO '{folder / 'events.csv'}' (HEADER)")
    return root


def landed_events(root: Path, sql: str) -> list[tuple]:
    """``sql`` over the landed events (as the table ``e``)."""
    con = duckdb.connect()
    files = root / ".mesh" / "landing" / "web" / "events" / "*" / "*" / "*.csv"
    con.execute(f"CREATE VIEW e AS SELECT * FROM read_csv('{files}', header = true, "
                "types = {'event_at': 'TIMESTAMP', 'amount': 'DECIMAL(15,2)'})")
    return con.execute(sql).fetchall()


def port_files(root: Path, key: tuple[str, str, str]) -> set[str]:
    return set(PortStorage(root=str(root / ".mesh" / "lake")).port(key).current_snapshot().files)


def port_rows(root: Path, key: tuple[str, str, str], sql: str = "SELECT * FROM t ORDER BY ALL") -> list[tuple]:
    snapshot = PortStorage(root=str(root / ".mesh" / "lake")).port(key).current_snapshot()
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM {snapshot.read_sql}")
    return con.execute(sql).fetchall()


def weekly_expected(root: Path) -> list[tuple]:
    return landed_events(root, "SELECT CAST(event_at AS DATE) - CAST((isodow(event_at) + 4) % 7 AS INTEGER), "
                               "CAST(sum(amount) AS DECIMAL(38,2)), count(*) FROM e GROUP BY 1 ORDER BY 1")


@pytest.fixture(scope="module")
def built(tpch_landing: Path, tmp_path_factory: pytest.TempPathFactory):
    """The mesh after a plain run: the landed hours, then the weeks they map to. ``(root, instance, summary)``."""
    root = make_root(tmp_path_factory.mktemp("granularities"), tpch_landing)
    with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESH_PII_SALT", TEST_SALT)
        for name in ("DAGSTER_HOME", "MESH_STORAGE_ROOT", "MESH_LANDING_ZONE"):
            mp.delenv(name, raising=False)
        yield root, instance, run_mesh(load_mesh(root), instance)


def test_hours_and_wednesday_weeks_map_to_dagster_and_iceberg(built) -> None:
    root, _, _ = built
    graph = build_mesh_definitions(load_mesh(root)).resolve_asset_graph()
    hourly = graph.get(dg.AssetKey(list(HOURLY[1]))).partitions_def
    weekly = graph.get(dg.AssetKey(list(WEEKLY))).partitions_def
    assert isinstance(hourly, dg.HourlyPartitionsDefinition) and isinstance(weekly, dg.WeeklyPartitionsDefinition)
    hours = hourly.get_partition_keys()
    assert (len(hours), hours[0], hours[-1]) == (14 * 24, "1992-01-01T00", "1992-01-14T23")
    assert weekly.get_partition_keys() == list(WEEKS)
    # a week reads its 168 hours, Wednesday 00:00 to Tuesday 23:00
    read = dg.TimeWindowPartitionMapping().get_upstream_mapped_partitions_result_for_partitions(
        weekly.subset_with_partition_keys([WEEKS[0]]), weekly, hourly).partitions_subset.get_partition_keys()
    assert (len(read), read[0], read[-1]) == (168, "1992-01-01T00", "1992-01-07T23")
    storage = PortStorage(root=str(root / ".mesh" / "lake"))
    specs = {key: [(str(f.transform), f.name) for f in storage.port(key).table().spec().fields]
             for key in (*HOURLY, WEEKLY)}
    assert specs == {HOURLY[0]: [("hour", "event_at_hour")], HOURLY[1]: [("hour", "event_at_hour")],
                     WEEKLY: [("day", "week_start_day")]}  # Iceberg has no week transform: a week replaces its days


def test_a_plain_run_builds_the_landed_hours_then_the_weeks_they_fall_in(built) -> None:
    root, instance, summary = built
    assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
    assert len(instance.get_runs()) == 2  # the hours in one run, then the weeks
    hours = {h.strftime("%Y-%m-%dT%H") for h in (dt.datetime(1992, 1, 1) + dt.timedelta(hours=n)
                                                 for n in range(9 * 24))}
    with_events = {h for (h,) in landed_events(root, "SELECT DISTINCT strftime(event_at, '%Y-%m-%dT%H') FROM e")}
    assert len(with_events) > 30
    for key in HOURLY:
        assert instance.get_materialized_partitions(dg.AssetKey(list(key))) == hours, key
        names = {f.rsplit("/", 1)[-1].rsplit("-", 1)[0].removeprefix("part-") for f in port_files(root, key)}
        assert names == with_events, key  # a data file per hour with events, named by its key
    assert instance.get_materialized_partitions(dg.AssetKey(list(WEEKLY))) == set(WEEKS)
    assert port_rows(root, HOURLY[1]) == landed_events(root, "SELECT * FROM e ORDER BY ALL")
    assert port_rows(root, WEEKLY) == weekly_expected(root)
    assert [r[0] for r in port_rows(root, WEEKLY)] == [dt.date(1992, 1, 1), dt.date(1992, 1, 8)]


def test_an_hour_landed_again_replaces_that_hour_only_and_its_week_then_reads_it(built) -> None:
    root, instance, _ = built
    (hour,) = landed_events(root, "SELECT min(strftime(event_at, '%Y-%m-%dT%H')) FROM e "
                                  "WHERE event_at >= TIMESTAMP '1992-01-08 00:00'")[0]
    others = {f for f in port_files(root, HOURLY[1]) if f"/part-{hour}-" not in f}
    weeks_before = port_files(root, WEEKLY)
    csv = root / ".mesh" / "landing" / "web" / "events" / hour[:10] / hour / "events.csv"
    with csv.open("a") as handle:
        handle.write(f"99999991,1,1000.00,{hour[:10]} {hour[11:]}:30:00\n")
    assert run_mesh(load_mesh(root), instance, partitions=(hour, hour)).success
    after = port_files(root, HOURLY[1])
    assert others <= after and len(after - others) == 1  # the other hours' files are kept, untouched
    assert (99999991,) in port_rows(root, HOURLY[1], "SELECT event_id FROM t")
    assert run_mesh(load_mesh(root), instance, partitions=(WEEKS[1], WEEKS[1])).success
    assert port_rows(root, WEEKLY) == weekly_expected(root)
    kept = {f for f in weeks_before if f"/part-{WEEKS[0]}-" in f}
    assert kept <= port_files(root, WEEKLY)  # the first week was not rebuilt


def test_a_row_outside_its_hour_fails_the_partition_window_check_and_publishes_nothing(built) -> None:
    root, instance, _ = built
    (hour,) = landed_events(root, "SELECT max(strftime(event_at, '%Y-%m-%dT%H')) FROM e")[0]
    before = port_files(root, HOURLY[0])
    csv = root / ".mesh" / "landing" / "web" / "events" / hour[:10] / hour / "events.csv"
    text = csv.read_text()
    try:
        csv.write_text(text + f"99999992,1,5.00,{hour[:10]} 23:59:59\n" if hour[11:] != "23" else
                       text + f"99999992,1,5.00,{hour[:10]} 00:00:00\n")
        summary = run_mesh(load_mesh(root), instance, partitions=(hour, hour))
    finally:
        csv.write_text(text)
    assert not summary.success
    records = instance.get_records_for_run(summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = {(r.event_log_entry.dagster_event.event_specific_data.check_name,
               r.event_log_entry.dagster_event.event_specific_data.passed) for r in records.records}
    assert ("partition_window", False) in failed
    assert port_files(root, HOURLY[0]) == before


def test_a_landed_file_names_its_hour_by_both_fields_or_is_not_a_partition(built) -> None:
    root, _, _ = built
    table = load_mesh(root).domain("web").table("bronze", "raw_events")
    assert table.source.partition_of("web/events/1992-01-03/1992-01-03T07/a.csv", table.partitioning) == \
        "1992-01-03T07"
    for path in ("web/events/1992-01-04/1992-01-03T07/a.csv", "web/events/1992-01-03/1992-01-03T7/a.csv",
                 "web/events/1992-01-03/1992-01-03T24/a.csv"):
        assert table.source.partition_of(path, table.partitioning) is None, path
    assert table.source.glob(table.partitioning, "1992-01-03T07") == "web/events/1992-01-03/1992-01-03T07/*.csv"
    window = table.partitioning.window(["1992-01-03T22", "1992-01-03T23"])
    assert (window.start, window.end) == (dt.datetime(1992, 1, 3, 22), dt.datetime(1992, 1, 4))


def test_automation_requests_the_week_of_hours_rebuilt_once_all_its_hours_are_built(built) -> None:
    """Week 1992-01-01 has its 168 hours landed and built; week 1992-01-08 two days of them: hours rebuilt in
    each request the first week only (``any_deps_missing`` holds the second back until its week is built)."""
    root, instance, _ = built
    defs = build_mesh_definitions(load_mesh(root))
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    for first, last in (("1992-01-02T00", "1992-01-02T23"), ("1992-01-09T00", "1992-01-09T23")):
        assert run_mesh(load_mesh(root), instance, partitions=(first, last)).success
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.get_requested_partitions(dg.AssetKey(list(WEEKLY))) == {WEEKS[0]}


def test_an_hourly_table_reading_a_table_partitioned_by_a_date_column_is_refused_at_load(tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    domain = root / "domains" / "web"
    (domain / "products").mkdir(parents=True)
    (domain / "sql" / "silver").mkdir(parents=True)
    (root / "mesh.yaml").write_text("name: m\nstorage_root: .mesh/lake\nlanding_zone: .mesh/landing\n")
    (domain / "domain.yaml").write_text("name: web\nteam: web-team\nmembers: [wes@example.com]\ndescription: Web.\n")
    bronze, hourly = CONTRACT.format(events=EVENT_PROPERTIES).split("  - name: events\n")
    daily = (bronze.replace("physicalType: TIMESTAMP", "physicalType: DATE").replace("logicalType: timestamp",
                                                                                       "logicalType: date")
             .replace("{date}/{hour}", "{date}").replace("{granularity: hour, start: \"1992-01-01T00:00\"",
                                                         "{granularity: day, start: \"1992-01-01\""))
    contract = daily + "  - name: events\n" + hourly[:hourly.index("  - name: weekly_revenue")]
    (domain / "products" / "events.yaml").write_text(contract)
    (domain / "sql" / "silver" / "events.sql").write_text("SELECT event_id, customer_id, amount, "
                                                          "CAST(event_at AS TIMESTAMP) AS event_at "
                                                          "FROM bronze.raw_events\n")
    with pytest.raises(MeshError, match="partitioned by hour and reads bronze.raw_events .*, partitioned by its "
                                        "DATE column event_at, whose rows have no hour; partition events by day"):
        build_mesh_definitions(load_mesh(root))
