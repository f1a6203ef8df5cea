"""The ``roles[]`` section of a contract: read grants to other domains (docs/governance.md).

A role is a mesh grant when its ``customProperties`` name a ``domain``; other roles (an ODCS role may name any
IAM role) are left alone. Approval (``approvedBy``, ``approvedAt``, ``request``) is recorded here and checked
against the request files by mesh_assets.governance.access_requests.
"""

from __future__ import annotations

from typing import Any

from mesh_assets.contract.model import SNAKE_CASE, Grant, Report


def parse_grants(roles: list[dict[str, Any]], owner: str, ports: set[str], report: Report) -> tuple[Grant, ...]:
    """The grants of a product of domain ``owner`` whose output ports are ``ports``, from its ``roles[]``.

    A grant must name another domain (snake_case), give ``access: read``, list only ``ports`` in ``tables`` and
    say ``pii`` as true or false; each problem is reported at its role and the grant left out.
    """
    grants = []
    for i, role in enumerate(roles):
        custom = {p.get("property"): p.get("value") for p in role.get("customProperties") or []}
        if "domain" not in custom:
            continue
        where: list[str | int] = ["roles", i, "customProperties"]
        domain, tables, pii = custom["domain"], custom.get("tables") or [], custom.get("pii", False)
        if not isinstance(domain, str) or not SNAKE_CASE.fullmatch(domain):
            report(where, f"grant domain {domain!r} is not a domain name (snake_case)")
            continue
        if domain == owner:
            report(where, f"domain '{domain}' owns this product; grant another domain")
        if str(role.get("access") or "read").lower() != "read":
            report(["roles", i, "access"], "mesh grants give read access; set access: read")
        if not isinstance(tables, list) or any(t not in ports for t in tables):
            report(where, f"grant tables {tables!r} must be a list of this product's output ports "
                          f"({', '.join(sorted(ports)) or 'none'})")
            continue
        if not isinstance(pii, bool):
            report(where, f"grant pii must be true or false, got {pii!r}")
            continue
        grants.append(Grant(str(role["role"]), domain, tuple(tables), pii, str(custom.get("purpose") or ""),
                            str(custom.get("approvedBy") or ""), str(custom.get("approvedAt") or ""),
                            str(custom.get("request") or "")))
    return tuple(grants)
