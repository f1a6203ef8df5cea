"""The mesh's asset graph across domains, for what no single code location can see: a dependency cycle that
runs through several domains (Dagster checks cycles only inside one ``Definitions``)."""

from __future__ import annotations

from mesh_assets.contract.mesh import Mesh
from mesh_assets.contract.model import Table
from mesh_assets.contract.rules import rule_inputs
from mesh_assets.errors import MeshError
from mesh_assets.sql.inputs import SqlInputError, declared_inputs, find_inputs

Key = tuple[str, str, str]


def upstream_keys(mesh: Mesh, table: Table) -> set[Key]:
    """The asset keys ``table`` depends on: the ports its SQL reads (or its Python transform declares), the
    tables its relationships reference and the tables its SQL rules read.
    Unparsable SQL or unknown names give no edge here (``mesh validate`` reports them on their own)."""
    keys: set[Key] = set()
    try:
        refs = declared_inputs(table.inputs, table.domain) if table.python else \
            find_inputs(table.sql, table.domain) if table.sql is not None else []
        keys |= {ref.key for ref in refs}
    except SqlInputError:
        pass
    for rule in table.rules:
        try:
            keys |= {ref.key for ref in rule_inputs(rule, table)}
        except SqlInputError:
            pass
        if rule.kind == "foreign_key":
            other, name = rule.params["domain"], rule.params["table"]
            if other is None or other == table.domain:
                layers = [t.layer for t in mesh.domain(table.domain).tables if t.name == name]
                keys |= {(table.domain, layer, name) for layer in layers[:1]}
            else:
                keys.add((other, "gold", name))
    return keys - {table.key}


def find_cycle(mesh: Mesh, domains: list[str], loaded_only: bool = False) -> list[Key] | None:
    """A dependency cycle through a table of ``domains`` (following inputs into any domain), as the list of
    keys around it with the first repeated at the end; ``None`` when there is none. Domains that do not load
    are not followed; with ``loaded_only``, neither are domains ``mesh`` has not loaded yet (a code location's
    load follows only the domains it reads, so that a chain of N domains does not parse the whole mesh)."""
    state: dict[Key, int] = {}  # 1: on the current path, 2: done
    path: list[Key] = []

    def table_of(key: Key) -> Table | None:
        if loaded_only and not mesh.is_loaded(key[0]):
            return None
        try:
            return mesh.domain(key[0]).table(key[1], key[2])
        except MeshError:
            return None

    def visit(key: Key) -> list[Key] | None:
        if state.get(key) == 2:
            return None
        if state.get(key) == 1:
            return [*path[path.index(key):], key]
        table = table_of(key)
        if table is None:
            state[key] = 2
            return None
        state[key] = 1
        path.append(key)
        for upstream in sorted(upstream_keys(mesh, table)):
            cycle = visit(upstream)
            if cycle:
                return cycle
        path.pop()
        state[key] = 2
        return None

    for name in domains:
        for table in mesh.domain(name).tables:
            cycle = visit(table.key)
            if cycle:
                return cycle
    return None


def cycle_message(cycle: list[Key]) -> str:
    """``a/gold/x → b/gold/y → a/gold/x``: the cycle, for an error message."""
    return " → ".join("/".join(k) for k in cycle)
