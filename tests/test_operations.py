"""Operations in one process: the landing-zone sensor, retries of transient failures (never of contract
violations), the run-failure alert to the owning team's webhook, orphaned snapshots and ``mesh status``.
The daemon itself runs in tests/test_daemon.py."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mesh_assets.catalog.facts import freshness
from mesh_assets.consumption.status import port_status
from mesh_assets.contract.model import Sla
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.ports import Port
from mesh_assets.orchestration.alerts import Alert, send_alert
from mesh_assets.orchestration.definitions import build_domain_definitions
from mesh_assets.orchestration.freshness import latest_cron_tick
from mesh_assets.orchestration.sensors import LANDING_FILES_TAG
from mesh_assets.settings import AlertSettings, load_settings

from conftest import CUSTOMERS, land_orders

SHOP = ("domains", "shop")
SILVER = ("shop", "silver", "orders")


def _defs(root: Path) -> dg.Definitions:
    return build_domain_definitions(root.joinpath(*SHOP))


def _append_settings(root: Path, text: str) -> None:
    with (root / "mesh.yaml").open("a") as handle:
        handle.write(text)


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, raise_on_error=False)


def _evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return sensor.evaluate_tick(context)


def test_landing_zone_sensor_waits_for_files_to_settle(tiny_root: Path, instance) -> None:
    _append_settings(tiny_root, "automation: {landing_settle_seconds: 3600}\n")
    result = _evaluate(_defs(tiny_root).resolve_sensor_def("shop_landing_zone"), instance, None)
    assert not result.run_requests
    assert "waiting for shop/customers.csv, shop/orders*.csv to settle" in result.skip_message


def test_landing_zone_sensor_requests_ingestion_of_new_and_changed_files(tiny_root: Path, instance) -> None:
    _append_settings(tiny_root, "automation: {landing_settle_seconds: 0}\n")
    defs = _defs(tiny_root)
    sensor = defs.resolve_sensor_def("shop_landing_zone")

    first = _evaluate(sensor, instance, None)
    assert len(first.run_requests) == 1  # before any materialization, every landed file is new
    request = first.run_requests[0]
    assert request.tags[LANDING_FILES_TAG] == "shop/customers.csv, shop/orders.csv"
    assert {k.to_user_string() for k in request.asset_selection} == {
        "shop/bronze/raw_orders", "shop/bronze/raw_orders__rejects",
        "shop/bronze/raw_customers", "shop/bronze/raw_customers__rejects"}

    second = _evaluate(sensor, instance, first.cursor)
    assert not second.run_requests and "no new or changed file" in second.skip_message

    time.sleep(0.01)
    land_orders(tiny_root, "order_id,customer,amount\n1,ann,10.00\n9,zoe,1.00\n")
    third = _evaluate(sensor, instance, second.cursor)
    assert [r.tags[LANDING_FILES_TAG] for r in third.run_requests] == ["shop/orders.csv"]
    assert {k.to_user_string() for k in third.run_requests[0].asset_selection} == {
        "shop/bronze/raw_orders", "shop/bronze/raw_orders__rejects"}
    assert third.run_requests[0].run_key != request.run_key

    # a sensor that never ran (new daemon, reset cursor) does not re-ingest what is already materialized
    assert _materialize(defs, instance).success
    assert not _evaluate(sensor, instance, None).run_requests
    (tiny_root / ".mesh" / "landing" / "shop" / "customers.csv").write_text(CUSTOMERS + "eve,retail,2024-01-01\n")
    assert [r.tags[LANDING_FILES_TAG] for r in _evaluate(sensor, instance, None).run_requests] == ["shop/customers.csv"]


def test_transient_failure_is_retried_and_contract_violation_is_not(tiny_root: Path, instance, monkeypatch) -> None:
    _append_settings(tiny_root, "retries: {max_retries: 2, delay_seconds: 0}\n")
    defs = _defs(tiny_root)
    original, calls = Port.new_snapshot, []

    def flaky(self: Port, run_id: str):
        calls.append(self.key)
        if self.key == SILVER and calls.count(SILVER) == 1:
            raise OSError("connection reset by the object store")
        return original(self, run_id)

    monkeypatch.setattr(Port, "new_snapshot", flaky)
    result = _materialize(defs, instance)
    assert result.success
    retried = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert [e.step_key for e in retried] == ["shop__silver__orders"]
    assert calls.count(SILVER) == 2

    land_orders(tiny_root, "order_id,customer,amount\n1,ann,10.00\n2,bob,-5.00\n")  # violates amount_minimum
    failed = _materialize(defs, instance)
    assert not failed.success
    assert not instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    failures = instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["shop__silver__orders"]


def test_retry_policy_follows_mesh_yaml(tiny_root: Path) -> None:
    _append_settings(tiny_root, "retries: {max_retries: 5, delay_seconds: 2, backoff: linear, jitter: none}\n")
    policy = next(iter(_defs(tiny_root).assets)).op.retry_policy  # type: ignore[union-attr]
    assert (policy.max_retries, policy.delay, policy.backoff, policy.jitter) == (5, 2, dg.Backoff.LINEAR, None)
    _append_settings(tiny_root, "")
    (tiny_root / "mesh.yaml").write_text((tiny_root / "mesh.yaml").read_text().replace("max_retries: 5",
                                                                                        "max_retries: 0"))
    assert next(iter(_defs(tiny_root).assets)).op.retry_policy is None  # type: ignore[union-attr]


def test_runs_execute_their_steps_in_the_run_process_unless_mesh_yaml_says_multiprocess(tiny_root: Path) -> None:
    jobs = _defs(tiny_root).resolve_all_job_defs()  # the ingestion job and the asset job the UI and sensors launch
    assert jobs and {job.executor_def.name for job in jobs} == {"in_process"}
    _append_settings(tiny_root, "runs: {executor: multiprocess, max_concurrent: 2}\n")
    assert {job.executor_def.name for job in _defs(tiny_root).resolve_all_job_defs()} == {"multiprocess"}
    (tiny_root / "mesh.yaml").write_text((tiny_root / "mesh.yaml").read_text().replace("executor: multiprocess, ",
                                                                                        ""))
    with pytest.raises(Exception, match="max_concurrent applies to executor: multiprocess only"):
        load_settings(tiny_root)


def test_failed_run_alerts_the_owning_team(tiny_root: Path, instance, webhook, caplog) -> None:
    _append_settings(tiny_root, f"retries: {{max_retries: 0}}\nalerts:\n  webhooks:\n"
                                f"    shop-team: {{url: '{webhook.url}'}}\n")
    land_orders(tiny_root, "order_id,customer,amount\n1,ann,10.00\n2,bob,-5.00\n")
    defs = _defs(tiny_root)
    result = _materialize(defs, instance)
    assert not result.success

    sensor = defs.resolve_sensor_def("shop_run_failure_alert")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event()).for_run_failure()
    with caplog.at_level("ERROR", logger="mesh_assets.orchestration.alerts"):
        sensor(context)

    assert len(webhook.bodies) == 1
    body = webhook.bodies[0]
    assert (body["kind"], body["team"], body["domain"]) == ("run_failure", "shop-team", "shop")
    assert body["details"]["run_id"] == result.run_id
    assert "shop__silver__orders" in body["text"] and "amount_minimum" in body["text"]
    assert any("amount_minimum" in r.getMessage() for r in caplog.records)  # the log line is always there


def test_webhook_url_from_environment_and_unreachable_webhook(webhook, monkeypatch, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mesh_assets")  # an in-process `mesh validate` quiets the logger
    settings = AlertSettings(webhooks={"ops": {"url_env": "OPS_WEBHOOK"}})
    alert = Alert("freshness", "ops", "sales", "sales/gold/x missed its SLA")
    assert not send_alert(alert, settings)  # variable unset: logged, not sent
    assert "OPS_WEBHOOK" in caplog.text
    monkeypatch.setenv("OPS_WEBHOOK", webhook.url)
    assert send_alert(alert, settings)
    assert webhook.bodies[-1]["text"] == "[mesh freshness] sales (team ops): sales/gold/x missed its SLA"

    monkeypatch.setenv("OPS_WEBHOOK", "http://127.0.0.1:9/hook")  # discard port: nothing listens
    assert not send_alert(alert, AlertSettings(webhooks={"ops": {"url_env": "OPS_WEBHOOK"}}, timeout=1))
    assert "alert webhook of team ops failed" in caplog.text and "127.0.0.1:9" not in caplog.text


def test_alert_settings_refuse_ambiguous_webhooks(tiny_root: Path) -> None:
    _append_settings(tiny_root, "alerts:\n  webhooks:\n    shop-team: {url: 'http://x/y', url_env: HOOK}\n")
    with pytest.raises(Exception, match="exactly one of url"):
        load_settings(tiny_root)


def test_orphaned_snapshot_of_a_dead_writer_is_cleaned(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("shop", "silver", "orders"))
    published = port.new_snapshot("run1")
    duckdb.sql(f"COPY (SELECT 1 AS v) TO '{published.data_file}' (FORMAT parquet)")
    port.publish(published.id, {"rows": 1})
    committed_unmarked = port.new_snapshot("run0")  # committed, then its writer died before marking it
    duckdb.sql(f"COPY (SELECT 2 AS v) TO '{committed_unmarked.data_file}' (FORMAT parquet)")
    port.publish(committed_unmarked.id, {"rows": 1})
    (Path(committed_unmarked.path) / "_published.json").unlink()
    port.rollback(to=published.id)
    refused = port.new_snapshot("run2")
    port.mark_unpublished(refused.id, "blocking check(s) failed: amount_minimum")
    live = port.new_snapshot("run3")  # this process is writing it
    dead = port.new_snapshot("run4")
    writer = Path(dead.path) / "_writer.json"
    writer.write_text(writer.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999'))

    writer = Path(committed_unmarked.path) / "_writer.json"
    writer.write_text(writer.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999'))

    assert port.orphans() == [dead.id]  # not the committed one: a snapshot references its files
    assert port.clean_orphans() == [dead.id]
    assert port.snapshot_ids() == [published.id, committed_unmarked.id, refused.id, live.id]
    assert port.current()["snapshot"] == published.id
    # a snapshot from another host is an orphan only after ORPHAN_AGE
    writer = Path(live.path) / "_writer.json"
    writer.write_text(writer.read_text().replace('"host": "', '"host": "elsewhere-'))
    assert port.orphans() == [] and port.orphans(max_age=0) == [live.id]


def test_mesh_status_lists_output_ports_with_freshness_and_checks(tiny_root: Path, instance) -> None:
    mesh = load_mesh(tiny_root)
    rows = {r["port"]: r for r in port_status(mesh, instance)}
    assert rows["shop.order_totals"]["sla_state"] == "never published"
    assert rows["shop.order_totals"]["freshness"] == "UNKNOWN"  # never materialized
    assert port_status(mesh, None)[0]["freshness"] == "not evaluated"  # no instance
    assert _materialize(_defs(tiny_root), instance).success
    row = {r["port"]: r for r in port_status(load_mesh(tiny_root), instance)}["shop.order_totals"]
    assert (row["sla_state"], row["freshness"], row["rows"], row["team"]) == ("fresh", "PASS", 2, "shop-team")
    later = datetime.now(UTC) + timedelta(days=400)  # past any SLA of the fixture: judged on the materialization
    assert {r["port"]: r for r in port_status(mesh, instance, later)}["shop.order_totals"]["freshness"] == "FAIL"
    assert row["checks_passed"] >= 3 and (row["warnings"], row["blocking"]) == ([], [])
    assert row["last_update"] == PortStorage(root=mesh.settings.storage_url).port(
        ("shop", "gold", "order_totals")).current()["published_at"][:19] + "+00:00"


def test_a_cron_sla_is_judged_against_its_latest_completed_tick() -> None:
    """The tick at or before now, in the SLA's time zone: on the tick itself, between ticks, across a day."""
    daily = "0 2 * * *"
    assert latest_cron_tick(daily, datetime(2026, 12, 2, 2, 0, tzinfo=UTC)) == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert latest_cron_tick(daily, datetime(2026, 12, 2, 4, 36, 59, tzinfo=UTC)) == datetime(2026, 12, 2, 2, 0,
                                                                                          tzinfo=UTC)
    assert latest_cron_tick(daily, datetime(2026, 12, 2, 1, 59, 59, tzinfo=UTC)) == datetime(2026, 12, 1, 2, 0,
                                                                                          tzinfo=UTC)
    new_york = latest_cron_tick(daily, datetime(2026, 12, 2, 4, 36, tzinfo=UTC), "America/New_York")
    assert new_york.astimezone(UTC) == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 02:00 EST, the day before
    sla = [Sla("frequency", 3600, daily)]  # published within the hour before the 02:00 tick
    now = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    assert freshness({"published_at": "2026-12-02T01:30:00+00:00"}, sla, now).state == "fresh"
    assert freshness({"published_at": "2026-12-02T00:30:00+00:00"}, sla, now).state == "stale"
