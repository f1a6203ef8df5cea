"""Attacks on access decisions (security issue, problem 8 "No identity"), as written in the issue: each was
accepted before decisions were tied to the members listed in domain.yaml."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import mesh_cli
from mesh_assets import load_mesh
from mesh_assets.errors import MeshError
from mesh_assets.governance.access_requests import request_access
from test_access import PORT, restrict
from test_governance import ORDERS, add_consumer, edit_contract, findings

SHOP = "domains/shop/domain.yaml"


def _pending(root):
    """billing (member bea) asks for the restricted port shop.order_totals; shop's team is sam and sara."""
    add_consumer(root)
    restrict(root)
    return request_access(load_mesh(root), PORT, "billing", "invoice every customer", requested_by="bea@example.com")


def _errors(root, rule: str) -> list[dict]:
    return [f for f in findings(root) if f["rule"] == rule and f["severity"] == "error"]


def test_self_approval_under_another_name_outside_the_producers_team_is_refused(tiny_root) -> None:
    request = _pending(tiny_root)
    before = (tiny_root / ORDERS).read_text()
    result = mesh_cli(tiny_root, "access", "approve", request.id, "--reason", "mine", "--by",
                      "someone-else@example.com")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "someone-else@example.com is not a member of team 'shop-team'" in result.stderr
    assert (tiny_root / ORDERS).read_text() == before
    assert yaml.safe_load(request.path.read_text())["status"] == "pending"


def test_the_requester_cannot_approve_even_as_a_member_of_both_teams_nor_by_changing_case(tiny_root) -> None:
    request = _pending(tiny_root)
    descriptor = tiny_root / SHOP
    descriptor.write_text(descriptor.read_text().replace("sara@example.com]", "sara@example.com, bea@example.com]"))
    result = mesh_cli(tiny_root, "access", "approve", request.id, "--reason", "mine", "--by", " BEA@Example.com ")
    assert result.returncode == 2 and "cannot approve it too" in result.stderr
    assert yaml.safe_load(request.path.read_text())["status"] == "pending"


def test_a_requester_outside_the_consumers_team_cannot_ask(tiny_root) -> None:
    add_consumer(tiny_root)
    restrict(tiny_root)
    with pytest.raises(MeshError, match="mallory@example.com is not a member of team 'billing-team'"):
        request_access(load_mesh(tiny_root), PORT, "billing", "x", requested_by="mallory@example.com")


def _hand_grant(root, request: str = "") -> None:
    """The attack: a role granting billing the port, written straight into shop's contract."""
    custom = [{"property": "domain", "value": "billing"}, {"property": "tables", "value": ["order_totals"]},
              {"property": "pii", "value": True}]
    if request:
        custom += [{"property": "request", "value": request},
                   {"property": "approvedBy", "value": "mallory@example.com"}]
    edit_contract(root, lambda d: d.setdefault("roles", []).append(
        {"role": "billing_reads_order_totals", "access": "read", "customProperties": custom}))


def test_a_grant_added_by_hand_with_no_approved_request_fails_validate(tiny_root) -> None:
    add_consumer(tiny_root)
    restrict(tiny_root)
    _hand_grant(tiny_root)
    [finding] = _errors(tiny_root, "access/grant")
    assert finding["file"] == str(ORDERS) and finding["field"] == "roles[0]" and finding["line"]
    assert "names no request" in finding["message"] and "mesh access approve" in finding["fix"]
    assert mesh_cli(tiny_root, "validate").returncode == 1


def _forge(root, **changes) -> str:
    """The attack: an ``approved`` request file written by hand in shop's access/ folder."""
    rid = "2026-12-01-billing-order_totals"
    data = {"id": rid, "port": PORT, "consumer": "billing", "purpose": "invoices", "pii": True,
            "requested_by": "bea@example.com", "requested_at": "2026-12-01T10:00:00+00:00", "status": "approved",
            "decided_by": "mallory@example.com", "decided_at": "2026-12-01T10:01:00+00:00", "reason": "trust me"}
    data.update(changes)
    folder = root / "domains" / "shop" / "access"
    folder.mkdir(exist_ok=True)
    (folder / f"{rid}.yaml").write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return rid


def test_a_forged_approved_request_fails_validate_and_is_listed_invalid(tiny_root) -> None:
    add_consumer(tiny_root)
    restrict(tiny_root)
    rid = _forge(tiny_root)
    _hand_grant(tiny_root, rid)
    [forged] = _errors(tiny_root, "access/request")
    assert forged["file"] == f"domains/shop/access/{rid}.yaml" and forged["field"] == "decided_by"
    lines = (tiny_root / forged["file"]).read_text().splitlines()
    assert "mallory@example.com is not a member of team 'shop-team'" in forged["message"]
    assert lines[forged["line"] - 1].startswith("decided_by: mallory@example.com")
    [grant] = _errors(tiny_root, "access/grant")
    assert f"rests on request {rid}, which is invalid" in grant["message"]
    listed = mesh_cli(tiny_root, "access", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout) if r["id"] == rid]
    assert row["status"] == "approved" and row["valid"] is False and "mallory@example.com" in row["problem"]


@pytest.mark.parametrize("changes, field, message", [
    ({"decided_by": "bea@example.com"}, "decided_by", "bea@example.com is not a member"),
    ({"requested_by": "sam@example.com", "decided_by": "SAM@example.com"}, "decided_by", "both requested and approved"),
    ({"decided_by": None}, "(top level)", "the request is approved but has no decided_by"),
    ({"consumer": "nobody"}, "consumer", "consumer 'nobody' is not a domain"),
    ({"port": "billing.invoices"}, "port", "is not a port of domain 'shop'"),
    ({"pii": "yes"}, "pii", "pii is 'yes'"),
    ({"status": "granted"}, "status", "status 'granted' is unknown"),
    ({"granted_by": "root"}, "granted_by", "unknown field 'granted_by'"),
])
def test_an_inconsistent_request_file_is_a_finding_with_its_field(tiny_root, changes, field, message) -> None:
    add_consumer(tiny_root)
    _forge(tiny_root, **changes)
    problems = _errors(tiny_root, "access/request")
    assert any(p["field"] == field and message in p["message"] and p["fix"] for p in problems), problems


def test_a_request_file_that_is_not_yaml_is_a_finding_and_listed(tiny_root) -> None:
    folder = tiny_root / "domains" / "shop" / "access"
    folder.mkdir()
    (folder / "broken.yaml").write_text("id: [unclosed\n")
    [problem] = _errors(tiny_root, "access/request")
    assert problem["file"] == "domains/shop/access/broken.yaml" and "not valid YAML" in problem["message"]
    rows = json.loads(mesh_cli(tiny_root, "access", "list", "--format", "json").stdout)
    assert [(r["id"], r["valid"]) for r in rows] == [("broken", False)]


def test_an_approved_grant_with_a_mismatching_contract_role_is_a_finding(tiny_root) -> None:
    request = _pending(tiny_root)
    result = mesh_cli(tiny_root, "access", "approve", request.id, "--reason", "ok", "--by", "sara@example.com")
    assert result.returncode == 0, result.stderr
    assert _errors(tiny_root, "access/grant") == [] and _errors(tiny_root, "access/request") == []
    edit_contract(tiny_root, lambda d: d["roles"][0]["customProperties"][2].update(value=True))  # pii: false → true
    [finding] = _errors(tiny_root, "access/grant")
    assert "does not match request" in finding["message"] and finding["field"] == "roles[0]"


def test_codeowners_maps_each_domain_folder_to_its_members_and_a_stale_file_fails(tiny_root) -> None:
    missing = mesh_cli(tiny_root, "codeowners", "--check")
    assert missing.returncode == 1 and "CODEOWNERS has no mesh block" in missing.stderr
    written = mesh_cli(tiny_root, "codeowners")
    assert written.returncode == 0, written.stderr
    text = (tiny_root / ".github" / "CODEOWNERS").read_text()
    assert "/domains/shop/ sam@example.com sara@example.com\n" in text
    assert "/domains/shop/access/ sam@example.com sara@example.com\n" in text
    assert mesh_cli(tiny_root, "codeowners", "--check").returncode == 0
    assert [f for f in findings(tiny_root) if f["rule"].startswith("access/")] == []
    descriptor = tiny_root / SHOP
    descriptor.write_text(descriptor.read_text().replace("sara@example.com]", "sara@example.com, eve@example.com]"))
    check = mesh_cli(tiny_root, "codeowners", "--check")
    assert check.returncode == 1 and "stale" in check.stderr
    [stale] = _errors(tiny_root, "access/codeowners")
    assert stale["file"] == ".github/CODEOWNERS" and stale["fix"].startswith("run mesh codeowners")


def test_codeowners_gives_the_platform_files_to_the_governance_group(tiny_root) -> None:
    """Adding a code location (workspace.yaml, dg.toml) or changing the instance (dagster.yaml) is a change of the
    platform, reviewed like mesh.yaml; a platform file the repository does not have gets no line."""
    with (tiny_root / "mesh.yaml").open("a") as handle:
        handle.write("governance:\n  owners: [gov@example.com]\n")
    for name in ("workspace.yaml", "dg.toml"):
        (tiny_root / name).write_text("# code locations\n")
    assert mesh_cli(tiny_root, "codeowners").returncode == 0
    text = (tiny_root / ".github" / "CODEOWNERS").read_text()
    for path in ("/mesh.yaml", "/workspace.yaml", "/dg.toml", "/domains/", "/.github/CODEOWNERS"):
        assert f"{path} gov@example.com\n" in text, text
    assert "dagster.yaml" not in text


def test_codeowners_keeps_the_repositorys_own_lines(tiny_root) -> None:
    own = tiny_root / ".github" / "CODEOWNERS"
    own.parent.mkdir()
    own.write_text("/README.md @docs-team\n")
    assert mesh_cli(tiny_root, "codeowners").returncode == 0
    assert mesh_cli(tiny_root, "codeowners").returncode == 0  # idempotent
    text = own.read_text()
    assert text.startswith("/README.md @docs-team\n# BEGIN mesh codeowners") and text.count("# BEGIN") == 1


def test_a_domain_without_members_is_a_finding(tiny_root) -> None:
    descriptor = tiny_root / SHOP
    descriptor.write_text(descriptor.read_text().replace("members: [sam@example.com, sara@example.com]\n", ""))
    [finding] = _errors(tiny_root, "access/members")
    assert finding["file"] == SHOP and finding["field"] == "members" and "members:" in finding["fix"]


def test_the_reference_mesh_codeowners_is_in_sync() -> None:
    from test_governance import REPO

    result = mesh_cli(REPO, "codeowners", "--check")
    assert result.returncode == 0, result.stderr
