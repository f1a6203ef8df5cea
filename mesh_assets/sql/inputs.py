"""Find the ports a SQL transform reads, with ``sqlglot`` (no need to declare inputs twice).

Names a transform may use (DuckDB dialect): ``bronze.<t>``, ``silver.<t>``, ``gold.<t>`` for its own domain's
tables, ``<domain>.<t>`` for another domain's gold output port, and ``previous.<t>`` for the table's own
published snapshot (to carry values from run to run). CTE names are local and ignored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from mesh_assets.settings import LAYERS
from mesh_assets.sql.functions import FunctionNotAllowed, check_functions


@dataclass(frozen=True)
class InputRef:
    """A table a transform reads: ``schema`` as written (a layer or a domain) and the asset key it resolves to."""

    schema: str
    table: str
    key: tuple[str, str, str]

    @property
    def cross_domain(self) -> bool:
        return self.schema not in LAYERS


# ``previous.<table>``: the table's own published snapshot (mesh_assets.engine.write_audit_publish), not a port it
# reads.
PREVIOUS = "previous"


class SqlInputError(ValueError):
    """The SQL cannot be parsed, is not one SELECT, or reads a table it may not name."""


def parse_select(sql: str) -> exp.Expression:
    """Parse ``sql`` as exactly one query (SELECT, WITH … SELECT, UNION …) in DuckDB's dialect.

    Raises:
        SqlInputError: a syntax error (with line and column), several statements, or not a query.
    """
    try:
        statements = [s for s in sqlglot.parse(sql, dialect="duckdb") if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f"line {first.get('line')}, column {first.get('col')}: " if first else ""
        raise SqlInputError(f"{where}{first.get('description', str(exc))}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise SqlInputError("expected exactly one SELECT query (no DDL, no COPY, no second statement)")
    return statements[0]


def find_inputs(sql: str, domain: str) -> list[InputRef]:
    """The tables ``sql`` reads, resolved to asset keys, each once. The query may call only the functions of
    mesh_assets.sql.functions (no file, catalog, setting or host access).

    Raises:
        SqlInputError: unparsable SQL, a function not on the allow-list (with its line), an unqualified table
            that is not a CTE, or a catalog-qualified name.
    """
    return list(_find_inputs(sql, domain))


@functools.lru_cache(maxsize=8192)  # a load asks for each file's inputs more than once (assets, access, cycles)
def _find_inputs(sql: str, domain: str) -> tuple[InputRef, ...]:
    tree = parse_select(sql)
    try:
        check_functions(tree)
    except FunctionNotAllowed as exc:
        raise SqlInputError(str(exc)) from None
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    refs: dict[tuple[str, str, str], InputRef] = {}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function such as range(); it reads no port
        name, schema = table.name, table.db
        if table.catalog:
            raise SqlInputError(f"'{table.sql('duckdb')}': name ports as <layer>.<table> or <domain>.<table>")
        if not schema:
            if name in ctes:
                continue
            raise SqlInputError(f"table '{name}' is not qualified: write bronze.{name}, silver.{name}, "
                                f"gold.{name} or <domain>.{name}")
        if schema == PREVIOUS:
            continue  # the table's own published snapshot, registered by the step itself
        if schema == domain:
            raise SqlInputError(f"'{schema}.{name}' is this domain's own table: write gold.{name} (or its layer)")
        key = (domain, schema, name) if schema in LAYERS else (schema, "gold", name)
        refs.setdefault(key, InputRef(schema, name, key))
    return tuple(refs.values())


def declared_inputs(names: tuple[str, ...] | list[str], domain: str) -> list[InputRef]:
    """The tables a Python transform declares (``customProperties`` ``inputs``: ``silver.orders``,
    ``customers.nations``), resolved by exactly the rules of a SQL transform's FROM: they are read as the FROM
    list of a query and given to :func:`find_inputs`.

    Raises:
        SqlInputError: a name the rules refuse (the domain's own name as a schema, a catalog-qualified name).
    """
    if not names:
        return []
    return find_inputs("SELECT 1 FROM " + ", ".join(names), domain)
