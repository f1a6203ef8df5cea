"""Governance policies of ``mesh.yaml`` (``governance.policies``) checked on every data contract.

Each policy's level (``error``, ``warning``, ``off``) is set by the governance group; see docs/governance.md.
"""

from __future__ import annotations

import functools

import duckdb

from mesh_assets.contract.model import SNAKE_CASE, DataProduct, Table
from mesh_assets.contract.servers import SERVER_NAME, mesh_server, physical_name
from mesh_assets.findings import Finding
from mesh_assets.settings import GovernanceSettings
from mesh_assets.yaml_source import YamlDocument, format_location, load_yaml

# What marks a placeholder description (``mesh new product`` writes "Draft: describe its meaning and unit."):
# the ``descriptions`` policy accepts one only while the contract's status is draft or proposed.
DRAFT_MARKER = "Draft:"
DRAFT_STATUSES = ("draft", "proposed")


@functools.cache
def duckdb_reserved_words() -> frozenset[str]:
    """DuckDB's reserved keywords (``duckdb_keywords()``, category ``reserved``): names that need quoting in
    every query, so a table or column named so breaks consumers' hand-written SQL."""
    with duckdb.connect() as con:
        rows = con.execute("SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'"
                           ).fetchall()
    return frozenset(r[0].lower() for r in rows)


def is_output_port(table: Table) -> bool:
    """A gold table other domains may read: visibility ``public`` or ``restricted``."""
    return table.layer == "gold" and table.visibility != "private"


def policy_findings(product: DataProduct, governance: GovernanceSettings) -> list[Finding]:
    """Every policy ``product`` breaks, at the level ``governance.policies`` sets (``off`` policies skipped).

    Rules (rule name ``policy/<name>``): ``owner_team`` — ``team.name`` set; ``descriptions`` — the product and
    every table and column of an output port described, and, unless the contract's status is ``draft`` or
    ``proposed``, by no placeholder (a text holding :data:`DRAFT_MARKER`, as ``mesh new product`` writes);
    ``port_sla`` — every output port has a ``latency`` or
    ``frequency`` SLA in its contract; ``gold_primary_key`` — every gold table has a primary key, a
    ``duplicateValues`` rule, or a blocking ``rowCount`` rule allowing at most one row (whose key is empty);
    ``classification`` — values among ``governance.classifications``; ``naming`` — snake_case table and column names
    that are no DuckDB reserved keyword nor in ``governance.reserved_words``; ``port_server`` — a contract with an
    output port has the mesh's ODCS ``servers`` entry and each output port its ``physicalName``
    (mesh_assets.contract.servers), so that tools outside the mesh can find the port's Iceberg table.
    """
    checker = _Checker(product, governance)
    checker.run()
    return checker.findings


class _Checker:
    def __init__(self, product: DataProduct, governance: GovernanceSettings):
        self.product, self.governance = product, governance
        self.levels = governance.policies.model_dump()
        self.findings: list[Finding] = []

    @functools.cached_property
    def doc(self) -> YamlDocument:
        return load_yaml(self.product.path)

    def placeholder(self, text: str) -> bool:
        """Whether ``text`` is a draft's placeholder the product's status no longer allows."""
        return self.product.status not in DRAFT_STATUSES and DRAFT_MARKER in text

    @property
    def placeholder_fix(self) -> str:
        return (f"write what it means in place of the draft's text ('{DRAFT_MARKER} …'), or keep status: draft "
                "until every description is written")

    def add(self, policy: str, location: list[str | int], message: str, fix: str) -> None:
        level = self.levels[policy]
        if level == "off":
            return
        self.findings.append(Finding(level, f"policy/{policy}", message, fix, self.product.path,
                                     self.doc.line_of(location), format_location(location), self.product.domain))

    def run(self) -> None:
        product = self.product
        if not product.team_declared:
            self.add("owner_team", ["team"], f"data product '{product.name}' names no owner team",
                     f"set team: {{name: {product.team}}}")
        if not product.description:
            self.add("descriptions", ["description"], f"data product '{product.name}' has no description",
                     "set description.purpose (what it is for) and description.usage (how to read it)")
        elif self.placeholder(product.description):
            self.add("descriptions", ["description"], f"data product '{product.name}' still has the draft's "
                     f"placeholder description, and its status is {product.status}", self.placeholder_fix)
        self.servers()
        reserved = duckdb_reserved_words() | {w.lower() for w in self.governance.reserved_words}
        allowed = set(self.governance.classifications)
        # a loaded contract keeps every table and column in file order, so positions are the contract's indexes
        for i, table in enumerate(product.tables):
            port = is_output_port(table)
            if port and not table.description:
                self.add("descriptions", ["schema", i, "description"],
                         f"output port '{table.name}' has no description", "describe what one row is")
            elif port and self.placeholder(table.description):
                self.add("descriptions", ["schema", i, "description"], f"output port '{table.name}' still has the "
                         f"draft's placeholder description, and the contract's status is {product.status}",
                         self.placeholder_fix)
            if port and not table.slas:
                self.add("port_sla", ["schema", i], f"output port '{table.name}' has no SLA",
                         f"add slaProperties: [{{property: latency, value: 1, unit: d, element: {table.name}}}]")
            if table.layer == "gold" and not _keyed(table):
                self.add("gold_primary_key", ["schema", i, "properties"],
                         f"gold table '{table.name}' has no primary key",
                         "mark its key column(s) primaryKey: true (with primaryKeyPosition)")
            if table.name in reserved:
                self.add("naming", ["schema", i, "name"], f"table name '{table.name}' is a reserved SQL word",
                         "rename the table")
            for j, column in enumerate(table.columns):
                where: list[str | int] = list(column.location or ("schema", i, "properties", j))
                if port and not column.description:
                    self.add("descriptions", [*where, "description"],
                             f"column '{column.name}' of output port '{table.name}' has no description",
                             "describe its meaning and unit")
                elif port and self.placeholder(column.description):
                    self.add("descriptions", [*where, "description"],
                             f"column '{column.name}' of output port '{table.name}' still has the draft's "
                             f"placeholder description, and the contract's status is {product.status}",
                             self.placeholder_fix)
                if column.classification is not None and column.classification not in allowed:
                    self.add("classification", [*where, "classification"],
                             f"classification '{column.classification}' of column '{column.name}' is not allowed",
                             f"use one of {', '.join(sorted(allowed))} (mesh.yaml governance.classifications)")
                if not SNAKE_CASE.fullmatch(column.name) or column.name in reserved:
                    self.add("naming", [*where, "name"],
                             f"column name '{column.name}' is not snake_case or is a reserved SQL word",
                             "rename it, e.g. prefix it with the entity ('o_orderdate', not 'date')"
                             if column.name in reserved else f"rename it '{_snake(column.name)}'")

    def servers(self) -> None:
        """The ``port_server`` policy: where an outside tool reads each output port, in ODCS terms."""
        ports = [(i, t) for i, t in enumerate(self.product.tables) if is_output_port(t)]
        if not ports:
            return
        data = self.doc.data
        if not any(isinstance(s, dict) and s.get("server") == SERVER_NAME for s in data.get("servers") or []):
            entry = ", ".join(f"{k}: {v}" for k, v in mesh_server(self.product.domain).items() if k != "description")
            self.add("port_server", ["servers"], f"data product '{self.product.name}' has output ports but no "
                     "servers entry saying where outside tools read them", f"add servers: [{{{entry}}}]")
        for i, table in ports:
            objects = data.get("schema") or []
            if i < len(objects) and not objects[i].get("physicalName"):
                self.add("port_server", ["schema", i], f"output port '{table.name}' has no physicalName (its "
                         "Iceberg table's name)", f"set physicalName: {physical_name(table.layer, table.name)}")


def _keyed(table: Table) -> bool:
    for rule in table.rules:
        if rule.kind in ("primary_key", "duplicates"):
            return True
        at_most_one = {"mustBe": 1, "mustBeLessOrEqualTo": 1, "mustBeLessThan": 2}.get(rule.operator)
        if rule.kind == "row_count" and rule.blocking and at_most_one is not None and rule.threshold <= at_most_one:
            return True
    return False


def _snake(name: str) -> str:
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return out.replace("__", "_")
