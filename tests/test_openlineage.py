"""OpenLineage events of every step: START then COMPLETE or FAIL per table, with datasets and facets, sent through
the transport of ``mesh.yaml`` ``openlineage``; a transport that fails never fails the run."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from mesh_assets.contract.mesh import load_mesh
from mesh_assets.errors import ContractError
from mesh_assets.orchestration.openlineage_events import port_namespace, step_run_id
from mesh_assets.orchestration.runner import run_mesh
from mesh_assets.settings import load_settings

TABLES = sorted(["shop.bronze.raw_customers", "shop.bronze.raw_orders", "shop.silver.orders", "shop.gold.order_totals"])
NEGATIVE_AMOUNTS = "order_id,customer,amount\n1,ann,10.00\n2,bob,-5.00\n3,cy,20.00\n"


class _Receiver:
    """An OpenLineage HTTP receiver on loopback: records the path, headers and JSON body of every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def events(self) -> list[dict]:
        return [body for _, _, body in self.posts]


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _configure(root: Path, section: str) -> None:
    (root / "mesh.yaml").write_text((root / "mesh.yaml").read_text() + section)


def _by_job(events: list[dict]) -> dict[str, list[dict]]:
    jobs: dict[str, list[dict]] = {}
    for event in events:
        jobs.setdefault(event["job"]["name"], []).append(event)
    return jobs


def _warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if "OpenLineage" in (e.user_message or "")]


def test_http_transport_sends_start_and_complete_per_table(tiny_root: Path, instance: dg.DagsterInstance,
                                                           receiver: _Receiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_LINEAGE_KEY", "key-from-the-environment")
    _configure(tiny_root, f"openlineage:\n  transport: http\n  http:\n    url: {receiver.url}\n"
                          "    api_key_env: TINY_LINEAGE_KEY\n")
    mesh = load_mesh(tiny_root)
    summary = run_mesh(mesh, instance)
    assert summary.success

    assert {path for path, _, _ in receiver.posts} == {"/api/v1/lineage"}
    assert {headers["Authorization"] for _, headers, _ in receiver.posts} == {"Bearer key-from-the-environment"}
    jobs = _by_job(receiver.events)
    assert sorted(jobs) == TABLES
    storage = port_namespace(mesh.settings.storage_url)
    assert storage.startswith("file:///") and storage.endswith("/.mesh/lake")
    for name, events in jobs.items():
        assert [e["eventType"] for e in events] == ["START", "COMPLETE"], name
        assert {e["job"]["namespace"] for e in events} == {"tiny"}
        key = name.split(".")
        assert {e["run"]["runId"] for e in events} == {step_run_id(summary.run_id, key)}
        uuid.UUID(events[0]["run"]["runId"])
        parent = events[1]["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == summary.run_id and parent["job"]["namespace"] == "tiny"
        assert events[1]["outputs"][0]["namespace"] == storage
        assert events[1]["outputs"][0]["name"] == "/".join(key)
        assert "dataSource" in events[1]["outputs"][0]["facets"]

    # bronze: the landing-zone file in, the table and its rejects port out
    start, complete = jobs["shop.bronze.raw_orders"]
    landed = str((tiny_root / ".mesh" / "landing" / "shop" / "orders.csv").resolve())
    assert [(i["namespace"], i["name"]) for i in complete["inputs"]] == [("file", landed)]
    assert [o["name"] for o in complete["outputs"]] == ["shop/bronze/raw_orders", "shop/bronze/raw_orders__rejects"]
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert complete["outputs"][1]["outputFacets"]["outputStatistics"]["rowCount"] == 0
    bronze_columns = [f["name"] for f in complete["outputs"][0]["facets"]["schema"]["fields"]]
    assert bronze_columns == ["order_id", "customer", "amount", "_source_file", "_ingested_at", "_run_id"]

    # silver reads bronze raw_orders (SQL) and raw_customers (its foreign key), each with its schema
    silver = jobs["shop.silver.orders"][1]
    assert {(i["namespace"], i["name"]) for i in silver["inputs"]} == {
        (storage, "shop/bronze/raw_orders"), (storage, "shop/bronze/raw_customers")}
    assert all("schema" in i["facets"] for i in silver["inputs"])
    assertions = {a["name"]: a for a in silver["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"]}
    assert assertions["amount_minimum"]["column"] == "amount" and assertions["amount_minimum"]["success"] is True
    assert assertions["amount_is_small"]["severity"] == "warning"
    assert "column" not in assertions["has_rows"] and assertions["has_rows"]["assertion"] == "row_count"

    # gold: inputs, schema, column lineage, checks, rows
    start, complete = jobs["shop.gold.order_totals"]
    for event in (start, complete):
        assert [(i["namespace"], i["name"]) for i in event["inputs"]] == [(storage, "shop/silver/orders")]
        assert [f["name"] for f in event["inputs"][0]["facets"]["schema"]["fields"]] == [
            "order_id", "customer", "amount"]
    output = complete["outputs"][0]
    assert [(f["name"], f["type"]) for f in output["facets"]["schema"]["fields"]] == [
        ("customer", "VARCHAR"), ("total", "DECIMAL(38,2)")]
    lineage = output["facets"]["columnLineage"]["fields"]
    assert lineage["total"]["inputFields"] == [{"namespace": storage, "name": "shop/silver/orders", "field": "amount",
                                                "transformations": []}]
    assert [f["field"] for f in lineage["customer"]["inputFields"]] == ["customer"]
    checks = output["facets"]["dataQualityAssertions"]["assertions"]
    assert {a["name"] for a in checks} >= {"schema", "primary_key", "total_required"}
    assert all(a["success"] for a in checks)
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert output["facets"]["version"]["datasetVersion"]
    assert "select customer, sum(amount)" in complete["job"]["facets"]["sql"]["query"]


def test_blocking_check_failure_emits_fail(tiny_root: Path, instance: dg.DagsterInstance, receiver: _Receiver,
                                           land) -> None:
    _configure(tiny_root, f"openlineage:\n  transport: http\n  http:\n    url: {receiver.url}\n")
    land(NEGATIVE_AMOUNTS)
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert not summary.success

    jobs = _by_job(receiver.events)
    assert [e["eventType"] for e in jobs["shop.bronze.raw_orders"]] == ["START", "COMPLETE"]
    assert [e["eventType"] for e in jobs["shop.silver.orders"]] == ["START", "FAIL"]
    assert "shop.gold.order_totals" not in jobs  # skipped: it never started
    fail = jobs["shop.silver.orders"][1]
    assert "blocking check(s) failed: amount_minimum" in fail["run"]["facets"]["errorMessage"]["message"]
    output = fail["outputs"][0]
    assertions = {a["name"]: a for a in output["facets"]["dataQualityAssertions"]["assertions"]}
    assert assertions["amount_minimum"]["success"] is False and assertions["amount_minimum"]["actual"] == "1"
    assert "outputStatistics" not in output["outputFacets"] and "version" not in output["facets"]


def test_transform_error_emits_fail(tiny_root: Path, instance: dg.DagsterInstance, receiver: _Receiver) -> None:
    _configure(tiny_root, f"openlineage:\n  transport: http\n  http:\n    url: {receiver.url}\n")
    (tiny_root / "domains" / "shop" / "sql" / "gold" / "order_totals.sql").write_text(
        "select customer, sum(amount) / 0 as total from silver.orders where no_such_column group by customer")
    assert not run_mesh(load_mesh(tiny_root), instance).success
    start, fail = _by_job(receiver.events)["shop.gold.order_totals"]
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert "no_such_column" in fail["run"]["facets"]["errorMessage"]["message"]


def test_default_file_transport_writes_under_mesh_openlineage(tiny_root: Path,
                                                              instance: dg.DagsterInstance) -> None:
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success
    events_file = tiny_root / ".mesh" / "openlineage" / "events.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    jobs = _by_job(events)
    assert sorted(jobs) == TABLES
    assert all([e["eventType"] for e in jobs[name]] == ["START", "COMPLETE"] for name in TABLES)
    assert _warnings(instance, summary.run_id) == []


def test_unreachable_receiver_does_not_fail_the_run(tiny_root: Path, instance: dg.DagsterInstance) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _configure(tiny_root, f"openlineage:\n  transport: http\n  http:\n    url: http://127.0.0.1:{port}\n"
                          "    retries: 0\n")
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success
    assert {a.status for a in summary.assets} == {"materialized"}
    warnings = _warnings(instance, summary.run_id)
    # the first failed send pauses the transport: every later step says once that its events were skipped
    assert len(warnings) == len(TABLES)
    assert "event of" in warnings[0] and "not sent (http transport)" in warnings[0]
    assert all("skipped: the http transport failed less than 60 s ago" in w for w in warnings[1:])


def test_settings_refuse_keys_in_yaml_and_bad_urls(tiny_root: Path) -> None:
    _configure(tiny_root, "openlineage:\n  transport: http\n  http:\n    url: http://x\n    api_key: s3cr3t\n")
    with pytest.raises(ContractError, match="api_key"):
        load_settings(tiny_root)
    (tiny_root / "mesh.yaml").write_text("name: tiny\nopenlineage:\n  transport: http\n")
    with pytest.raises(ContractError, match="http.url"):
        load_settings(tiny_root)
    (tiny_root / "mesh.yaml").write_text("name: tiny\nopenlineage: {transport: http, http: {url: marquez}}\n")
    with pytest.raises(ContractError, match="url"):
        load_settings(tiny_root)
    (tiny_root / "mesh.yaml").write_text("name: tiny\nopenlineage: {transport: none}\n")
    settings = load_settings(tiny_root)
    assert settings.openlineage.http.endpoint == "api/v1/lineage"
    assert settings.openlineage_path == str(tiny_root.resolve() / ".mesh" / "openlineage")
