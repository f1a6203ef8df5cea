"""Access by code: requests, decisions and grants; refusal at run time; PII masked for readers without a grant."""

from __future__ import annotations

import hashlib
import hmac

import dagster as dg
import duckdb
import pytest
import yaml

from conftest import TEST_SALT, mesh_cli
from mesh_assets import build_mesh_definitions, connect, load_mesh
from mesh_assets.errors import MeshError
from mesh_assets.governance.access_requests import decide_request, list_requests, request_access, revoke_access
from mesh_assets.orchestration.runner import run_mesh
from test_governance import ORDERS, add_consumer, edit_contract

PORT = "shop.order_totals"


def restrict(root) -> None:
    edit_contract(root, lambda d: d["schema"][2].setdefault("customProperties", []).append(
        {"property": "visibility", "value": "restricted"}))


def classify_customer_pii(root) -> None:
    edit_contract(root, lambda d: d["schema"][2]["properties"][0].update(classification="pii"))


def masked(value: str) -> str:
    return hmac.new(TEST_SALT.encode(), value.encode(), hashlib.sha256).hexdigest()


def test_request_approve_grants_in_the_contract_and_keeps_who_when_why(tiny_root) -> None:
    add_consumer(tiny_root)
    restrict(tiny_root)
    request = request_access(load_mesh(tiny_root), PORT, "billing", "invoice every customer",
                             requested_by="bea@example.com")
    assert request.path == tiny_root / "domains/shop/access" / f"{request.id}.yaml"
    assert [r.status for r in list_requests(load_mesh(tiny_root))] == ["pending"]
    with pytest.raises(MeshError, match="cannot approve it too"):
        decide_request(load_mesh(tiny_root), request.id, True, "fine", decided_by="bea@example.com")
    decided = decide_request(load_mesh(tiny_root), request.id, True, "billing is our finance arm",
                             decided_by="sam@example.com")
    stored = yaml.safe_load(request.path.read_text())
    assert stored["status"] == "approved" and stored["decided_by"] == "sam@example.com" and stored["decided_at"]
    assert stored["reason"] == "billing is our finance arm" and stored["requested_by"] == "bea@example.com"
    product = load_mesh(tiny_root).domain("shop").products[1]
    assert [(g.domain, g.tables, g.pii, g.request, g.approved_by) for g in product.grants] == [
        ("billing", ("order_totals",), False, decided.id, "sam@example.com")]
    assert mesh_cli(tiny_root, "validate").returncode == 0
    listed = mesh_cli(tiny_root, "access", "list", "--format", "json")
    assert [(r["port"], r["consumer"], r["status"], r["who"], r["valid"]) for r in yaml.safe_load(listed.stdout)
            ] == [(PORT, "billing", "approved", "sam@example.com", True)]
    with pytest.raises(MeshError, match="already approved by sam@example.com"):
        decide_request(load_mesh(tiny_root), request.id, False, "changed my mind", decided_by="sam@example.com")


def test_deny_keeps_the_decision_and_grants_nothing(tiny_root) -> None:
    add_consumer(tiny_root)
    restrict(tiny_root)
    before = (tiny_root / ORDERS).read_text()
    request = request_access(load_mesh(tiny_root), PORT, "billing", "curiosity", requested_by="bea@example.com")
    result = mesh_cli(tiny_root, "access", "deny", request.id, "--reason", "no business need",
                      "--by", "sam@example.com")
    assert result.returncode == 0, result.stderr
    assert (tiny_root / ORDERS).read_text() == before
    assert yaml.safe_load(request.path.read_text())["status"] == "denied"
    assert mesh_cli(tiny_root, "validate").returncode == 1


def test_requests_that_change_nothing_or_name_no_port_are_refused(tiny_root) -> None:
    add_consumer(tiny_root)
    mesh = load_mesh(tiny_root)
    with pytest.raises(MeshError, match="already reads shop.order_totals; nothing to request"):
        request_access(mesh, PORT, "billing", "why not")
    with pytest.raises(MeshError, match="'shop.orders' is not an output port; shop publishes shop.order_totals"):
        request_access(mesh, "shop.orders", "billing", "raw data please")
    with pytest.raises(MeshError, match="not a port name"):
        request_access(mesh, "../shop.order_totals", "billing", "escape")
    with pytest.raises(MeshError, match="owns shop.order_totals"):
        request_access(mesh, PORT, "shop", "self")
    result = mesh_cli(tiny_root, "access", "request", "shop.nope", "--for", "billing", "--purpose", "x")
    assert result.returncode == 2 and "not an output port" in result.stderr and "Traceback" not in result.stderr


def test_a_revoked_grant_stops_the_next_run(tiny_root, instance) -> None:
    add_consumer(tiny_root)
    restrict(tiny_root)
    assert run_mesh(load_mesh(tiny_root), instance, ["shop"]).success
    request = request_access(load_mesh(tiny_root), PORT, "billing", "invoices", requested_by="bea@example.com")
    decide_request(load_mesh(tiny_root), request.id, True, "ok", decided_by="sam@example.com")
    defs = build_mesh_definitions(load_mesh(tiny_root), ["billing"])  # loaded while the grant holds
    assert revoke_access(load_mesh(tiny_root), PORT, "billing", "contract ended", revoked_by="sam@example.com") == [
        "billing_reads_order_totals"]
    assert yaml.safe_load(request.path.read_text())["status"] == "revoked"
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "shop.order_totals is a restricted output port and domain 'billing' holds no grant" in \
        failure.step_failure_data.error.message


def test_pii_is_masked_for_readers_without_a_pii_grant(tiny_root, instance) -> None:
    add_consumer(tiny_root)
    classify_customer_pii(tiny_root)
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success, summary
    lake = tiny_root / ".mesh" / "lake"
    invoices = duckdb.sql(f"SELECT customer, total FROM '{lake}/billing/gold/invoices/data/*/part-0.parquet'")
    owner = dict(connect(tiny_root, "shop").sql("SELECT customer, total FROM shop.order_totals").fetchall())
    assert sorted(invoices.fetchall()) == sorted((masked(c), t) for c, t in owner.items())
    anonymous = connect(tiny_root).sql("SELECT customer FROM shop.order_totals").fetchall()
    assert sorted(r[0] for r in anonymous) == sorted(masked(c) for c in owner)
    assert masked("ann") not in str(connect(tiny_root).sql("SELECT sql FROM duckdb_views()").fetchall())


def test_a_pii_grant_shows_clear_values(tiny_root, instance) -> None:
    add_consumer(tiny_root)
    classify_customer_pii(tiny_root)
    request = request_access(load_mesh(tiny_root), PORT, "billing", "print invoices", pii=True,
                             requested_by="bea@example.com")
    decide_request(load_mesh(tiny_root), request.id, True, "invoices carry names", decided_by="sam@example.com")
    assert run_mesh(load_mesh(tiny_root), instance).success
    names = connect(tiny_root, "billing").sql("SELECT customer FROM billing.invoices").fetchall()
    assert sorted(r[0] for r in names) == ["ann", "bob"]


def test_masking_without_a_salt_says_which_variable_to_set(tiny_root, instance, monkeypatch) -> None:
    add_consumer(tiny_root)
    classify_customer_pii(tiny_root)
    monkeypatch.delenv("MESH_PII_SALT")
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert not summary.success
    failed = [a.key for a in summary.assets if a.status != "materialized"]
    assert failed == ["shop/gold/order_totals", "billing/gold/invoices"]  # the producer masks, when it publishes
    log = "\n".join(str(e.dagster_event.step_failure_data.error.message) for e in
                    instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.STEP_FAILURE))
    assert "environment variable MESH_PII_SALT, which is not set" in log


def test_a_port_without_a_masked_copy_is_never_read_in_clear_by_a_masked_reader(tiny_root, instance, capsys) -> None:
    """A port published before masked copies existed (here: its masked table dropped) is left out for readers
    who see it masked, and fails a consumer's step; both say to run the producer again. The owner still reads
    it."""
    from mesh_assets.engine.iceberg_catalog import iceberg_catalog

    add_consumer(tiny_root)
    classify_customer_pii(tiny_root)
    assert run_mesh(load_mesh(tiny_root), instance).success
    iceberg_catalog(str(tiny_root / ".mesh/lake")).drop_table("shop.gold__order_totals__masked")
    con = connect(tiny_root)
    assert con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = 'order_totals'").fetchall() == [(0,)]
    assert "shop.order_totals left out" in capsys.readouterr().err
    assert sorted(r[0] for r in connect(tiny_root, "shop").sql("SELECT customer FROM shop.order_totals").fetchall()) \
        == ["ann", "bob"]
    summary = run_mesh(load_mesh(tiny_root), instance, ["billing"])
    assert not summary.success
    log = " ".join(str(e.dagster_event.step_failure_data.error.message) for e in
                   instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.STEP_FAILURE))
    assert "has no masked copy" in log and "run its producer again (mesh run --domain shop)" in log
