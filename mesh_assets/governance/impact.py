"""``mesh impact <domain>.<table>[.<column>]``: every downstream data product, table and column of a port (or of
one of its columns), across repositories, with its owner team (docs/domain-repos.md).

The graph is the column lineage of every consumer from other domains' ports
(mesh_assets.governance.expectations.derive_lineage): traced now for the mesh's own domains, as registered by
``mesh publish`` for consumers in other repositories. It is followed downstream: when an impacted column is in a
consumer's output port, that port column's own consumers are impacted in turn. A consumer that reads a column
without computing an output column from it (a filter, a join key) is impacted at table level (``column`` None),
from its registered or derived expectations.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.errors import MeshError
from mesh_assets.governance.expectations import consumer_entries

_TARGET = re.compile(r"^([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)(?:\.([a-z][a-z0-9_]*))?$")


@dataclass(frozen=True)
class Impacted:
    """One downstream table column (``column`` None: the table reads the port without computing a column from
    it) of ``domain``'s ``product``, owned by ``team``; ``via`` the upstream port column it is computed from,
    ``depth`` 1 for a direct consumer of the target, 2 for a consumer of that consumer's port, and so on."""

    domain: str
    product: str
    team: str
    table: str
    column: str | None
    via: str
    depth: int
    output_port: bool

    def to_dict(self) -> dict:
        """The row as JSON-ready values (``mesh impact --format json``)."""
        return asdict(self)


def impact(mesh: Mesh, target: str, domains: list[Domain]) -> list[Impacted]:
    """Everything downstream of ``target`` (``<domain>.<table>`` or ``<domain>.<table>.<column>``), given the
    mesh's loaded ``domains`` (see the module docstring), sorted by depth, domain, table and column.

    Raises:
        MeshError: ``target`` is not of that shape, or names no output port (or no column of it).
    """
    match = _TARGET.fullmatch(target)
    if match is None:
        raise MeshError(f"'{target}' is not <domain>.<table> or <domain>.<table>.<column> (snake_case names)")
    producer, table_name, column = match.groups()
    port = mesh.output_port(producer, table_name)
    if column is not None and column not in port.output_columns:
        raise MeshError(f"{producer}.{table_name} has no column '{column}'; its columns are "
                        f"{', '.join(port.output_columns)}")
    entries = consumer_entries(mesh, domains)
    frontier = {f"{producer}.{table_name}.{c}" for c in ([column] if column else port.output_columns)}
    seen_columns = set(frontier)
    found: dict[tuple[str, str, str | None], Impacted] = {}
    depth = 0
    while frontier:
        depth += 1
        following: set[str] = set()
        for entry in entries:
            for edge in entry.lineage:
                hit = sorted(set(edge.sources) & frontier)
                key = (entry.consumer, edge.table, edge.column)
                if not hit or key in found:
                    continue
                is_port = edge.table.startswith("gold.") and edge.visibility in ("public", "restricted")
                found[key] = Impacted(entry.consumer, edge.product, edge.team, edge.table, edge.column, hit[0],
                                      depth, is_port)
                name = f"{entry.consumer}.{edge.table.split('.', 1)[1]}.{edge.column}"
                if is_port and name not in seen_columns:
                    following.add(name)
                    seen_columns.add(name)
            for expectation in entry.expectations:  # read, but no output column computed from it
                read = {f"{expectation.port}.{c}" for c in expectation.columns} & frontier
                for table in expectation.read_by if read else ():
                    if not any(k[0] == entry.consumer and k[1] == table for k in found):
                        found[(entry.consumer, table, None)] = Impacted(
                            entry.consumer, expectation.product, expectation.team, table, None, sorted(read)[0],
                            depth, False)
        frontier = following
    return sorted(found.values(), key=lambda i: (i.depth, i.domain, i.table, i.column or ""))
