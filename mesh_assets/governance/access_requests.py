"""Access requests as code: a consumer domain asks for a port, the producer decides, the contract records the
grant (docs/governance.md).

A request is one YAML file ``<domains_dir>/<producer>/access/<id>.yaml`` in the producer's folder, so the
producer's owners review it like any change of their domain. Fields: ``id``, ``port`` (``<domain>.<table>``),
``consumer``, ``purpose``, ``pii``, ``requested_by``, ``requested_at``, ``status`` (``pending``, ``approved``,
``denied``, ``revoked``), and after a decision ``decided_by``, ``decided_at``, ``reason``. Approval adds an ODCS
``roles[]`` entry to the producer's contract (:class:`mesh_assets.contract.model.Grant`), comments and layout of the
contract kept (ruamel.yaml round trip).

Decisions are tied to identities (mesh_assets.contract.identity): the requester is a member of the consumer domain's
team, the approver a member of the producer domain's team and not the requester (``domain.yaml`` ``members``).
``mesh validate`` checks every request file and that each grant rests on a valid approved request
(:func:`check_request_file`, :func:`grant_findings`); ``CODEOWNERS`` (mesh_assets.governance.codeowners) makes the git
host require a producer member's review of every change of these files, which is what makes the identities real.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from mesh_assets.contract.identity import current_user, is_identity, is_member, same_identity
from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.contract.model import SNAKE_CASE
from mesh_assets.errors import ContractError, MeshError
from mesh_assets.findings import Finding
from mesh_assets.governance.access import AccessError, decide
from mesh_assets.yaml_source import YamlDocument, format_location, load_yaml, read_yaml_text

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
            no purpose, a request that would change nothing (the port is already readable as asked), or a
            requester (``requested_by``, default ``git config user.email``) who is no member of the consumer
            domain's team (``domain.yaml`` ``members``).
    """
    producer, table_name = _split_port(port)
    consumer_team = (mesh.domain(consumer) if consumer in mesh.domain_names
                     else _consumer(mesh, consumer) if SNAKE_CASE.fullmatch(consumer) else None)
    if consumer_team is None:
        raise MeshError(f"--for '{consumer}' is not a domain of the mesh ({', '.join(mesh.domain_names)}) nor a "
                        "consumer registered in its contract registry (its repository runs mesh publish)")
    if consumer == producer:
        raise MeshError(f"domain '{consumer}' owns {port}; it reads its own ports without a grant")
    if not purpose.strip():
        raise MeshError("say why the access is needed: --purpose \"…\" (the producer decides on it)")
    table = mesh.output_port(producer, table_name)
    _require_local(mesh, producer)
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
    requester = current_user(requested_by)
    _require_member(consumer_team, requester, "request access for it")
    request = AccessRequest(rid, port, consumer, purpose.strip(), pii, requester, _now(), path=folder / f"{rid}.yaml")
    _save(request)
    return request


def list_requests(mesh: Mesh) -> list[AccessRequest]:
    """Every request file of every domain that reads as a request, oldest first (:func:`read_requests` gives
    every file, with its problems)."""
    requests = [f.request for f in read_requests(mesh) if f.request is not None]
    return sorted(requests, key=lambda r: (r.requested_at, r.id))


def find_request(mesh: Mesh, request_id: str) -> AccessRequest:
    """The request ``request_id``. Raises :class:`MeshError` when there is none (the message lists pending ids)."""
    requests = list_requests(mesh)
    for request in requests:
        if request.id == request_id:
            return request
    pending = [r.id for r in requests if r.status == "pending"]
    raise MeshError(f"no access request '{request_id}'; pending: {', '.join(pending) or 'none'} (mesh access list)")


def decide_request(mesh: Mesh, request_id: str, approve: bool, reason: str, decided_by: str | None = None
                   ) -> AccessRequest:
    """Approve or deny the pending request ``request_id``, recording who, when and why; on approval add the
    grant to the producer's contract.

    Who decides (``decided_by``, default ``git config user.email``) must be a member of the producer domain's
    team (``domain.yaml`` ``members``); an approver must also not be the requester (the four-eyes principle;
    identities compared normalised, see mesh_assets.contract.identity), and the requester must be a member of the
    consumer domain's team.

    Raises:
        MeshError: no such request, already decided, an invalid request file, no reason given, or a decider
            who may not decide it (not in the producer's team, or the requester approving).
    """
    request = find_request(mesh, request_id)
    if request.status != "pending":
        raise MeshError(f"request {request.id} was already {request.status} by {request.decided_by} at "
                        f"{request.decided_at}")
    assert request.path is not None
    problems = check_request_file(mesh, request.path).problems
    if problems:
        raise MeshError(f"request {request.id} cannot be decided: " + "; ".join(
            f"{p.field}: {p.message}. Fix: {p.fix}" for p in problems))
    if not reason.strip():
        raise MeshError("say why: --reason \"…\" (kept with the decision)")
    decider = current_user(decided_by)
    if approve and same_identity(decider, request.requested_by):
        raise MeshError(f"{decider} requested {request.id} and cannot approve it too; another member of domain "
                        f"'{request.producer}' approves it (--by <who>)")
    _require_member(mesh.domain(request.producer), decider, f"decide on access to its port {request.port}")
    request.status = "approved" if approve else "denied"
    request.decided_by, request.decided_at, request.reason = decider, _now(), reason.strip()
    if approve:
        _add_grant(mesh, request)
    _save(request)
    return request


@dataclass(frozen=True)
class _Registered:
    """A consumer domain of another repository, as its registered expectations describe its team; ``path`` is
    the registry entry (where its members come from)."""

    name: str
    team: str
    members: tuple[str, ...]
    path: Path


def _consumer(mesh: Mesh, name: str) -> Domain | _Registered | None:
    """Consumer domain ``name``: of the mesh's folder (``None`` when it does not load), or registered in the
    contract registry by its repository's ``mesh publish``; ``None`` when neither."""
    if name in mesh.domain_names:
        return _loaded(mesh, name)
    try:
        entry = next((e for e in mesh.registry.expectations() if e.consumer == name), None)
    except MeshError:
        return None
    return None if entry is None else _Registered(name, entry.team, entry.members,
                                                  Path(mesh.settings.registry_url) / "expectations")


def _require_local(mesh: Mesh, producer: str) -> None:
    """Refuse to write access files for a domain resolved from the contract registry: its requests and grants
    live in its own repository, where its team reviews them.

    Raises:
        MeshError: ``producer`` is not a domain of this mesh's folder.
    """
    if mesh.domain(producer).remote:
        raise MeshError(f"domain '{producer}' is published from another repository (the contract registry "
                        f"{mesh.settings.registry_url}); its access requests and grants live in its repository: "
                        "run mesh access request there, then it publishes the grant (mesh publish)")


def _require_member(domain: Domain | _Registered, identity: str, action: str) -> None:
    """Raise :class:`MeshError` unless ``identity`` is a member of ``domain``'s team."""
    if not domain.members:
        raise MeshError(f"domain '{domain.name}' lists no team members, so nobody may {action}; add members: "
                        f"[you@example.com] to {domain.path / 'domain.yaml'}")
    if not is_member(identity, domain.members):
        raise MeshError(f"{identity} is not a member of team '{domain.team}' of domain '{domain.name}' "
                        f"({', '.join(domain.members)}), so may not {action}; ask one of them, or add the member "
                        f"to {domain.path / 'domain.yaml'} (reviewed by the team)")


def revoke_access(mesh: Mesh, port: str, consumer: str, reason: str, revoked_by: str | None = None) -> list[str]:
    """Remove every grant of ``port`` to ``consumer`` from the producer's contract; the approved requests behind
    them are marked ``revoked`` with who, when and why. Returns the removed roles' names. Who revokes
    (``revoked_by``, default ``git config user.email``) is a member of the producer's or the consumer's team.

    Raises:
        MeshError: no such port, no grant to revoke, no reason given, or a revoker in neither team.
    """
    producer, table_name = _split_port(port)
    if not reason.strip():
        raise MeshError("say why: --reason \"…\" (kept with the revocation)")
    who = current_user(revoked_by)
    team = _consumer(mesh, consumer) if SNAKE_CASE.fullmatch(consumer) else None
    if not (team is not None and is_member(who, team.members)):
        _require_member(mesh.domain(producer), who, f"revoke access to its port {port}")
    table = mesh.output_port(producer, table_name)
    _require_local(mesh, producer)
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
    when = _now()
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


_REQUIRED = ("id", "port", "consumer", "purpose", "pii", "requested_by", "requested_at", "status")
_DECISION = ("decided_by", "decided_at", "reason")


@dataclass
class RequestFile:
    """One file of a domain's ``access/`` folder as checked by :func:`check_request_file`: ``request`` is
    ``None`` when the file does not read as a request; ``problems`` are ``access/request`` error findings (an
    empty list: the file is a valid request)."""

    path: Path
    domain: str
    request: AccessRequest | None = None
    problems: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def read_requests(mesh: Mesh) -> list[RequestFile]:
    """Every ``<domains_dir>/<domain>/access/*.yaml`` file of the mesh, valid or not, checked
    (:func:`check_request_file`), in domain then file name order."""
    return [check_request_file(mesh, path) for name in mesh.domain_names
            for path in sorted((mesh.settings.domains_path / name / REQUESTS_DIR).glob("*.yaml"))]


def _loaded(mesh: Mesh, name: str) -> Domain | None:
    """Domain ``name`` if it loads (a broken domain is reported by the structure checks of validate)."""
    try:
        return mesh.domain(name)
    except MeshError:
        return None


def check_request_file(mesh: Mesh, path: Path) -> RequestFile:
    """Read and check the request file ``path`` of the domain folder it is in (the producer).

    A valid file is YAML holding the fields of :class:`AccessRequest` and no other; its ``id`` is its file
    name; its ``port`` is an output port of the folder's domain; its ``consumer`` another domain of the mesh;
    ``requested_by`` a member of the consumer's team; a decided request (not ``pending``) has ``decided_by``,
    ``decided_at`` and ``reason``; an ``approved`` or ``denied`` one was decided by a member of the producer's
    team, and an approved one not by its requester (identities compared normalised, mesh_assets.contract.identity).
    Membership is checked against ``domain.yaml`` as it is now: when a member leaves, the approvals they
    signed become findings until a current member takes them over. Never raises for a bad file: every
    problem is a finding with the file, the field, the line and the fix.
    """
    producer = path.parent.parent.name
    checked = RequestFile(path, producer)
    doc: YamlDocument | None = None

    def problem(location: list[str | int], message: str, fix: str) -> None:
        line = doc.line_of(location) if doc is not None and location else None
        checked.problems.append(Finding("error", "access/request", message, fix, path, line,
                                        format_location(location), producer))

    try:
        doc = load_yaml(path)
    except ContractError as exc:
        for text in exc.problems:
            problem([], text, "fix the file, or delete it if nobody wrote it")
        return checked
    data = doc.data
    if not isinstance(data, dict):
        problem([], "not an access request", f"write the fields {', '.join(_REQUIRED)} (mesh access request "
                                             "writes them)")
        return checked
    allowed = set(AccessRequest.__dataclass_fields__) - {"path"}
    for name in sorted(str(k) for k in data if k not in allowed):
        problem([name], f"unknown field '{name}'", "remove it")
    values: dict[str, Any] = {}
    for name in (*_REQUIRED, *_DECISION):
        value = data.get(name)
        if isinstance(value, (dt.date, dt.datetime)):  # an unquoted timestamp
            value = value.isoformat()
        if name == "pii":
            if not isinstance(value, bool):
                problem([name], f"pii is {value!r}", "set pii: true or pii: false")
                value = False
        elif value is None or value == "":
            if name in _REQUIRED:
                problem([name] if name in data else [], f"field '{name}' is missing", f"set {name}")
            value = ""
        elif not isinstance(value, str):
            problem([name], f"{name} is {value!r}, not text", f"set {name} to a text")
            value = str(value)
        values[name] = value.strip() if isinstance(value, str) else value
    request = AccessRequest(**values, path=path)
    checked.request = request
    if request.id and request.id != path.stem:
        problem(["id"], f"id '{request.id}' is not the file's name", f"set id: {path.stem}")
    if request.status not in STATUSES:
        problem(["status"], f"status '{request.status}' is unknown", f"use one of {', '.join(STATUSES)}")
    parts = request.port.split(".")
    producer_domain = _loaded(mesh, producer)
    if len(parts) != 2 or not all(SNAKE_CASE.fullmatch(p) for p in parts) or parts[0] != producer:
        problem(["port"], f"port '{request.port}' is not a port of domain '{producer}', whose folder holds the "
                          "file", f"write {producer}.<table>, or move the request to the producer's access/ folder")
    elif producer_domain is not None and not any(
            t.name == parts[1] and t.layer == "gold" and t.visibility != "private" for t in producer_domain.tables):
        problem(["port"], f"'{request.port}' is not an output port of domain '{producer}'",
                "name one of its output ports (mesh ports)")
    known = isinstance(request.consumer, str) and SNAKE_CASE.fullmatch(request.consumer)
    consumer = _consumer(mesh, request.consumer) if known else None
    if request.consumer and request.consumer not in mesh.domain_names and consumer is None:
        problem(["consumer"], f"consumer '{request.consumer}' is not a domain of the mesh nor a consumer "
                              "registered in its contract registry",
                f"name one of {', '.join(mesh.domain_names)}, or a domain whose repository ran mesh publish")
    elif request.consumer == producer:
        problem(["consumer"], f"domain '{producer}' reads its own ports without a grant", "delete the request")
    for name in ("requested_by", "decided_by"):
        value = getattr(request, name)
        if value and not is_identity(value):
            problem([name], f"{name} '{value}' is not an identity", "write the e-mail address (or @handle) of a "
                                                                    "team member, as domain.yaml lists them")
    if request.requested_by and consumer is not None and not is_member(request.requested_by, consumer.members):
        problem(["requested_by"], f"{request.requested_by} is not a member of team '{consumer.team}' of the "
                                  f"consumer domain '{consumer.name}'",
                f"a member of {consumer.name} requests access (domain.yaml members: "
                f"{', '.join(consumer.members) or 'none listed'})")
    if request.status in STATUSES and request.status != "pending":
        for name in _DECISION:
            if not getattr(request, name):
                problem([name] if name in data else [], f"the request is {request.status} but has no {name}",
                        f"set {name}, or decide with mesh access approve|deny")
    if request.status in ("approved", "denied") and request.decided_by and producer_domain is not None:
        if not is_member(request.decided_by, producer_domain.members):
            problem(["decided_by"], f"{request.decided_by} is not a member of team '{producer_domain.team}' of "
                                    f"the producer domain '{producer}', so cannot have {request.status} it",
                    f"a member of {producer} ({', '.join(producer_domain.members) or 'none listed'}) decides "
                    "with mesh access approve|deny; delete a request nobody of the team decided")
    if request.status == "approved" and request.decided_by and same_identity(request.decided_by,
                                                                             request.requested_by):
        problem(["decided_by"], f"{request.decided_by} both requested and approved it (four-eyes principle)",
                f"another member of {producer} approves it")
    return checked


def grant_findings(mesh: Mesh, domain: Domain, requests: list[RequestFile]) -> list[Finding]:
    """Errors (rule ``access/grant``) for each grant of ``domain``'s contracts that no valid, approved request
    file of its ``access/`` folder (``requests``) stands behind: the grant names its request (``customProperties``
    ``request``), which is approved, for the grant's domain, table(s) and ``pii`` (or ``pii`` asked), and whose
    ``decided_by`` is the grant's ``approvedBy``. Warnings (rule ``access/request``) for approved requests no grant
    names (a grant removed by hand)."""
    findings: list[Finding] = []
    by_id = {f.path.stem: f for f in requests if f.domain == domain.name}
    named = set()
    for product in domain.products:
        doc: YamlDocument | None = None
        indexes = _grant_indexes(product.path)
        for grant, index in zip(product.grants, indexes):
            named.add(grant.request)
            found = by_id.get(grant.request) if grant.request else None
            request = found.request if found is not None else None
            if found is None or request is None:
                problem = (f"grant '{grant.role}' to domain '{grant.domain}' names no request" if not grant.request
                           else f"grant '{grant.role}' names request '{grant.request}', which is not in "
                                f"{domain.path / REQUESTS_DIR}")
            elif not found.valid:
                problem = (f"grant '{grant.role}' rests on request {request.id}, which is invalid "
                           f"({found.problems[0].message})")
            elif request.status != "approved":
                problem = f"grant '{grant.role}' rests on request {request.id}, which is {request.status}"
            elif (request.consumer != grant.domain or grant.tables != (request.table,)
                  or (grant.pii and not request.pii)):
                problem = (f"grant '{grant.role}' (domain {grant.domain}, tables {list(grant.tables) or 'all'}, pii "
                           f"{grant.pii}) does not match request {request.id} (domain {request.consumer}, table "
                           f"{request.table}, pii {request.pii})")
            elif not same_identity(grant.approved_by, request.decided_by):
                problem = (f"grant '{grant.role}' says approvedBy '{grant.approved_by}' but request {request.id} "
                           f"was approved by {request.decided_by}")
            else:
                continue
            doc = doc or load_yaml(product.path)
            location: list[str | int] = ["roles", index] if index is not None else ["roles"]
            findings.append(Finding("error", "access/grant", problem,
                                    f"remove the role; access is granted by mesh access request then a member of "
                                    f"{domain.name} running mesh access approve", product.path,
                                    doc.line_of(location), format_location(location), domain.name))
    for checked in requests:
        request = checked.request
        if (checked.domain == domain.name and checked.valid and request is not None and request.status == "approved"
                and request.id not in named):
            findings.append(Finding("warning", "access/request", f"request {request.id} is approved but no grant of "
                                    f"{domain.name}'s contracts names it", "set status: revoked (with who, when and "
                                    "why) or approve a new request", checked.path, None, "status", domain.name))
    return findings


def _grant_indexes(path: Path) -> list[int | None]:
    """The ``roles[]`` index of each grant of the contract at ``path``, in the order
    :class:`mesh_assets.contract.model.DataProduct` lists them (roles with a ``domain`` custom property)."""
    roles = (load_yaml(path).data or {}).get("roles") or []
    return [i for i, role in enumerate(roles) if isinstance(role, dict) and any(
        isinstance(p, dict) and p.get("property") == "domain" for p in role.get("customProperties") or [])]
