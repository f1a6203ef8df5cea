"""Access requests as code: a consumer domain asks for a port, the producer decides, the contract records the
grant (docs/governance.md).

A request is one YAML file ``<domains_dir>/<producer>/access/<id>.yaml`` in the producer's folder, so the
producer's owners review it like any change of their domain. Fields: ``id``, ``port`` (``<domain>.<table>``),
``consumer``, ``purpose``, ``pii``, ``requested_by``, ``requested_at``, ``status`` (``pending``, ``approved``,
``denied``, ``revoked``), and after a decision ``decided_by``, ``decided_at``, ``reason``. Approval adds an ODCS
``roles[]`` entry to the producer's contract (:class:`mesh_assets.contracts.Grant`), comments and layout of the
contract kept (ruamel.yaml round trip).
"""

from __future__ import annotations

import datetime as dt
import getpass
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from mesh_assets.access import AccessError, decide
from mesh_assets.contracts import SNAKE_CASE, load_contract
from mesh_assets.errors import MeshError
from mesh_assets.mesh import Mesh
from mesh_assets.yaml_source import read_yaml_text

REQUESTS_DIR = "access"
STATUSES = ("pending", "approved", "denied", "revoked")


@dataclass
class AccessRequest:
    """One request file (see the module docstring); ``path`` is where it is stored."""

    id: str
    port: str
    consumer: str
    purpose: str
    pii: bool
    requested_by: str
    requested_at: str
    status: str = "pending"
    decided_by: str = ""
    decided_at: str = ""
    reason: str = ""
    path: Path | None = None

    @property
    def producer(self) -> str:
        return self.port.split(".")[0]

    @property
    def table(self) -> str:
        return self.port.split(".")[1]


def current_user() -> str:
    """Who acts: ``git config user.email``, else the login name."""
    try:
        email = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        email = ""
    return email.strip() or getpass.getuser()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, order and quoting of the contract survive an approval
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 120
    return yaml


def request_access(mesh: Mesh, port: str, consumer: str, purpose: str, pii: bool = False,
                   requested_by: str | None = None) -> AccessRequest:
    """Write a pending request of domain ``consumer`` to read ``port`` (``<domain>.<table>``) for ``purpose``;
    ``pii`` asks for sensitive columns in clear.

    Raises:
        MeshError: a malformed port or domain name, an unknown port, a private table, the consumer's own port,
            no purpose, or a request that would change nothing (the port is already readable as asked).
    """
    producer, table_name = _split_port(port)
    if not SNAKE_CASE.fullmatch(consumer) or consumer not in mesh.domain_names:
        raise MeshError(f"--for '{consumer}' is not a domain of the mesh ({', '.join(mesh.domain_names)})")
    if consumer == producer:
        raise MeshError(f"domain '{consumer}' owns {port}; it reads its own ports without a grant")
    if not purpose.strip():
        raise MeshError("say why the access is needed: --purpose \"…\" (the producer decides on it)")
    table = mesh.output_port(producer, table_name)
    product = mesh.domain(producer).product_of(table)
    try:
        access = decide(product, table, consumer, mesh.settings.governance)
    except AccessError as exc:
        if exc.reason == "private":
            raise MeshError(str(exc)) from None
        access = None  # restricted without a grant: what requests are for
    if access is not None and not (pii and access.masked):
        hint = f" (with {', '.join(access.masked)} masked: add --pii to ask for them in clear)" if access.masked else ""
        raise MeshError(f"domain '{consumer}' already reads {port}{hint}; nothing to request")
    folder = mesh.settings.domains_path / producer / REQUESTS_DIR
    stem = f"{dt.date.today().isoformat()}-{consumer}-{table_name}"
    rid, n = stem, 1
    while (folder / f"{rid}.yaml").exists():
        n += 1
        rid = f"{stem}-{n}"
    request = AccessRequest(rid, port, consumer, purpose.strip(), pii, requested_by or current_user(), _now(),
                            path=folder / f"{rid}.yaml")
    _save(request)
    return request


def list_requests(mesh: Mesh) -> list[AccessRequest]:
    """Every request file of every domain, oldest first.

    Raises:
        ContractError: a request file is not valid YAML.
    """
    requests = []
    for name in mesh.domain_names:
        for path in sorted((mesh.settings.domains_path / name / REQUESTS_DIR).glob("*.yaml")):
            requests.append(_load(path))
    return sorted(requests, key=lambda r: (r.requested_at, r.id))


def find_request(mesh: Mesh, request_id: str) -> AccessRequest:
    """The request ``request_id``. Raises :class:`MeshError` when there is none (the message lists pending ids)."""
    for request in list_requests(mesh):
        if request.id == request_id:
            return request
    pending = [r.id for r in list_requests(mesh) if r.status == "pending"]
    raise MeshError(f"no access request '{request_id}'; pending: {', '.join(pending) or 'none'} (mesh access list)")


def decide_request(mesh: Mesh, request_id: str, approve: bool, reason: str, decided_by: str | None = None
                   ) -> AccessRequest:
    """Approve or deny the pending request ``request_id``, recording who, when and why; on approval add the
    grant to the producer's contract. Nobody approves their own request (the four-eyes principle).

    Raises:
        MeshError: no such request, already decided, no reason given, or approved by its requester.
    """
    request = find_request(mesh, request_id)
    if request.status != "pending":
        raise MeshError(f"request {request.id} was already {request.status} by {request.decided_by} at "
                        f"{request.decided_at}")
    if not reason.strip():
        raise MeshError("say why: --reason \"…\" (kept with the decision)")
    decided_by = decided_by or current_user()
    if approve and decided_by == request.requested_by:
        raise MeshError(f"{decided_by} requested {request.id} and cannot approve it too; an owner of domain "
                        f"'{request.producer}' approves it (--by <who>)")
    request.status = "approved" if approve else "denied"
    request.decided_by, request.decided_at, request.reason = decided_by, _now(), reason.strip()
    if approve:
        _add_grant(mesh, request)
    _save(request)
    return request


def revoke_access(mesh: Mesh, port: str, consumer: str, reason: str, revoked_by: str | None = None) -> list[str]:
    """Remove every grant of ``port`` to ``consumer`` from the producer's contract; the approved requests behind
    them are marked ``revoked`` with who, when and why. Returns the removed roles' names.

    Raises:
        MeshError: no such port, no grant to revoke, or no reason given.
    """
    producer, table_name = _split_port(port)
    if not reason.strip():
        raise MeshError("say why: --reason \"…\" (kept with the revocation)")
    table = mesh.output_port(producer, table_name)
    path = mesh.domain(producer).product_of(table).path
    yaml = _yaml()
    data = yaml.load(read_yaml_text(path))
    removed = []
    for role in list(data.get("roles") or []):
        custom = {p.get("property"): p.get("value") for p in role.get("customProperties") or []}
        tables = list(custom.get("tables") or [])
        if custom.get("domain") != consumer or (tables and table_name not in tables):
            continue
        if len(tables) > 1:
            next(p for p in role["customProperties"] if p.get("property") == "tables")["value"].remove(table_name)
        else:
            data["roles"].remove(role)
        removed.append(str(role.get("role")))
    if not removed:
        raise MeshError(f"domain '{consumer}' holds no grant to {port}")
    if not data["roles"]:
        del data["roles"]
    _write_contract(path, data, producer)
    who, when = revoked_by or current_user(), _now()
    for request in list_requests(mesh):
        if request.port == port and request.consumer == consumer and request.status == "approved":
            request.status, request.decided_by, request.decided_at, request.reason = "revoked", who, when, reason
            _save(request)
    return removed


def _split_port(port: str) -> tuple[str, str]:
    parts = port.split(".")
    if len(parts) != 2 or not all(SNAKE_CASE.fullmatch(p) for p in parts):
        raise MeshError(f"'{port}' is not a port name; write <domain>.<table>, e.g. customers.customer_profile")
    return parts[0], parts[1]


def _add_grant(mesh: Mesh, request: AccessRequest) -> None:
    table = mesh.output_port(request.producer, request.table)
    path = mesh.domain(request.producer).product_of(table).path
    yaml = _yaml()
    data = yaml.load(read_yaml_text(path))
    role = {
        "role": f"{request.consumer}_reads_{request.table}",
        "access": "read",
        "description": request.purpose,
        "firstLevelApprovers": request.decided_by,
        "customProperties": [
            {"property": "domain", "value": request.consumer},
            {"property": "tables", "value": [request.table]},
            {"property": "pii", "value": request.pii},
            {"property": "purpose", "value": request.purpose},
            {"property": "request", "value": request.id},
            {"property": "approvedBy", "value": request.decided_by},
            {"property": "approvedAt", "value": request.decided_at},
        ],
    }
    data.setdefault("roles", []).append(role)
    _write_contract(path, data, request.producer)


def _write_contract(path: Path, data: Any, domain: str) -> None:
    """Write the edited contract only if it still validates; otherwise leave the file as it was."""
    staged = path.with_name(f".{path.name}.new")
    with staged.open("w", encoding="utf-8") as handle:
        _yaml().dump(data, handle)
    try:
        load_contract(staged, domain, "")
    except MeshError:
        staged.unlink()
        raise
    staged.replace(path)


def _save(request: AccessRequest) -> None:
    assert request.path is not None
    request.path.parent.mkdir(parents=True, exist_ok=True)
    fields = {k: v for k, v in asdict(request).items() if k != "path" and (v != "" or k in ("status",))}
    with request.path.open("w", encoding="utf-8") as handle:
        _yaml().dump(fields, handle)


def _load(path: Path) -> AccessRequest:
    from mesh_assets.yaml_source import load_yaml

    data = load_yaml(path).data or {}
    known = {k: data[k] for k in AccessRequest.__dataclass_fields__ if k in data and k != "path"}
    try:
        request = AccessRequest(**known, path=path)
    except TypeError:
        raise MeshError(f"{path}: not an access request (needs id, port, consumer, purpose, pii, requested_by, "
                        "requested_at)") from None
    if request.status not in STATUSES:
        raise MeshError(f"{path}: status '{request.status}' is not one of {', '.join(STATUSES)}")
    return request
