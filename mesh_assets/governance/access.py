"""Who may read which output port, and which of its columns they see masked (docs/governance.md).

- Bronze and silver tables are private to their domain; a gold table is an output port, ``public`` (any domain)
  or ``restricted`` (only the domains its contract grants, ODCS ``roles[]``; see :class:`Grant`).
- Columns whose ``classification`` is sensitive (``governance.sensitive_classifications``, default ``pii``) are
  masked for every reader but the owner domain and the domains granted ``pii``: the reader sees
  HMAC-SHA256(salt, value) as 64 hex characters (RFC 2104), so masked values still join and count alike.
  The producer writes them once, into the masked copy of each snapshot (mesh_assets.engine.masked_copy); readers
  read that copy.
- The decision is taken at definitions load (a consumer's SQL reading a port it may not read fails the load
  and ``mesh validate``) and again at run time from the producer's contract as it is then (a revoked grant
  stops the next run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.contract.model import DataProduct, Grant, Table
from mesh_assets.errors import MeshError
from mesh_assets.settings import GovernanceSettings
from mesh_assets.sql.inputs import InputRef


class AccessError(MeshError):
    """A domain reads a port it may not read. ``port`` is ``<domain>.<table>``; the message says how to ask."""

    def __init__(self, port: str, consumer: str | None, reason: str, where: str = ""):
        self.port, self.consumer, self.reason = port, consumer, reason
        who = f"domain '{consumer}'" if consumer else "a reader outside the mesh's domains"
        ask = (f' Request access: mesh access request {port} --for {consumer} --purpose "<why you need it>"'
               if consumer and reason != "private" else "")
        text = {"private": f"{port} is private to domain '{port.split('.')[0]}' (bronze and silver are never "
                           "shared); read one of its output ports instead",
                "restricted": f"{port} is a restricted output port and {who} holds no grant to it"}[reason]
        super().__init__(f"{where + ': ' if where else ''}{text}.{ask}")


@dataclass(frozen=True)
class Access:
    """A granted read of ``port`` (``<domain>.<table>``) by ``consumer`` (``None``: outside any domain):
    ``masked`` are the columns the reader sees as HMAC-SHA256 hex digests; ``grant`` the grant used, if any;
    ``deprecation`` a warning for the reader when the producer deprecated the product (empty otherwise)."""

    port: str
    consumer: str | None
    masked: tuple[str, ...] = ()
    grant: Grant | None = None
    deprecation: str = ""


def sensitive_columns(table: Table, governance: GovernanceSettings) -> tuple[str, ...]:
    """The columns of ``table`` whose ``classification`` is one of ``governance.sensitive_classifications``."""
    sensitive = set(governance.sensitive_classifications)
    return tuple(c.name for c in table.columns if c.classification in sensitive)


def decide(product: DataProduct, table: Table, consumer: str | None, governance: GovernanceSettings) -> Access:
    """Whether ``consumer`` (a domain name; ``None`` for a reader outside the domains) may read ``table`` of
    ``product``, and with which columns masked.

    Raises:
        AccessError: ``table`` is private (bronze, silver, or a private gold table) and ``consumer`` is not its
            domain; or it is restricted and no grant of the contract names ``consumer`` for it.
    """
    port = f"{table.domain}.{table.name}"
    if consumer == table.domain:
        return Access(port, consumer)
    if table.layer != "gold" or table.visibility == "private":
        raise AccessError(port, consumer, "private")
    grants = [g for g in product.grants if g.domain == consumer and g.covers(table.name)]
    if table.visibility == "restricted" and not grants:
        raise AccessError(port, consumer, "restricted")
    deprecation = deprecation_notice(product, port)
    pii_grant = next((g for g in grants if g.pii), None)
    if pii_grant is not None:
        return Access(port, consumer, (), pii_grant, deprecation)
    return Access(port, consumer, sensitive_columns(table, governance), grants[0] if grants else None, deprecation)


def deprecation_notice(product: DataProduct, port: str) -> str:
    """A warning for readers of ``port`` when ``product`` is ``deprecated`` (empty otherwise)."""
    if not product.deprecated:
        return ""
    successor = f"; move to {product.replaced_by}" if product.replaced_by else ""
    return f"{port} is deprecated, supported until {product.end_of_support}{successor}"


def authorize_input(mesh: Mesh, consumer: Domain, ref: InputRef, where: str) -> Access:
    """The access of domain ``consumer`` to the table ``ref`` its file ``where`` reads (own tables: any layer,
    in clear; other domains: their output ports, per :func:`decide`).

    Raises:
        MeshError: the table is not declared (own domain) or is no output port (other domain).
        AccessError: the port is private or restricted without a grant (the message names the file, the port,
            the consumer and the command that requests access).
    """
    port = f"{ref.schema}.{ref.table}"
    if not ref.cross_domain:
        if consumer.table(ref.schema, ref.table) is None:
            raise MeshError(f"{where}: reads {port}, which no contract of domain '{consumer.name}' declares; "
                            "declare it or fix the name")
        return Access(port, consumer.name)
    try:
        producer = mesh.domain(ref.schema)
        # a private table of that name is refused as such; no table at all gets the list of ports
        table = (producer.table("gold", ref.table) or next((t for t in producer.tables if t.name == ref.table), None)
                 or mesh.output_port(ref.schema, ref.table))
    except MeshError as exc:
        raise MeshError(f"{where}: reads {port}: {exc}") from None
    try:
        return decide(producer.product_of(table), table, consumer.name, mesh.settings.governance)
    except AccessError as exc:
        raise AccessError(exc.port, exc.consumer, exc.reason, where) from None


def pii_salt(governance: GovernanceSettings) -> bytes:
    """The masking salt from the environment variable ``governance.pii_salt_env`` (never from a file of the
    repository).

    Raises:
        MeshError: the variable is unset or shorter than 16 characters.
    """
    name = governance.pii_salt_env
    value = os.environ.get(name, "")
    if len(value) < 16:
        raise MeshError(f"sensitive columns are masked with a salt from the environment variable {name}, which is "
                        f"{'too short' if value else 'not set'}; set it to a long random secret, e.g. "
                        f"export {name}=$(python -c 'import secrets; print(secrets.token_hex(32))'), the same "
                        "for every run so masked values stay joinable")
    return value.encode()


def runtime_access(consumer: str, refs: list[InputRef], contracts: dict[tuple[str, str, str], Path],
                   governance: GovernanceSettings) -> dict[tuple[str, str, str], Access]:
    """The access of domain ``consumer`` to each other domain's port in ``refs``, decided again from the
    producers' contracts (``contracts``: port key → contract file, found at load) as they are on disk now, so
    a grant revoked since the definitions loaded stops the run. Only those contracts are parsed.

    Raises:
        AccessError: a port may no longer be read by ``consumer``.
        MeshError: a producer's contract no longer loads or no longer declares the port.
    """
    products: dict[Path, DataProduct] = {}
    out = {}
    for ref in refs:
        if not ref.cross_domain:
            continue
        path = contracts[ref.key]
        if path not in products:
            products[path] = load_contract(path, ref.schema, "", transforms=False)  # grants and columns only
        table = next((t for t in products[path].tables if t.layer == "gold" and t.name == ref.table), None)
        if table is None:
            raise MeshError(f"{ref.schema}.{ref.table} is no longer declared in {path}; it cannot be read")
        out[ref.key] = decide(products[path], table, consumer, governance)
    return out
