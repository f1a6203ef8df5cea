"""Cost of a table's checks and profile when every rule passes and when rules fail on most rows.

``python -m benchmarks.check_cost [--table sales/gold/order_lines_wide] [--repeat 3]`` on a mesh already
materialized (``make run``). The failing case replaces four of the table's rules with versions that fail on
most rows (a bound, valid values, a pattern, a primary key), so both cases run the same number of checks;
Pandera's own ``validate`` would collect every failure case here. Prints one line per case and a JSON
object on the last line: ``rows``, ``checks``, ``passing_s``, ``failing_s``, ``ratio`` (medians, seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from mesh_assets.contract.mesh import load_mesh
from mesh_assets.contract.model import Rule
from mesh_assets.engine.checks import run_rules
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.profile import profile_relation
from mesh_assets.orchestration.assets import reference_targets
from mesh_assets.orchestration.definitions import duckdb_engine
from mesh_assets.settings import find_mesh_root


def _failing(rules: tuple[Rule, ...], table) -> tuple[Rule, ...]:
    """Rules of the same count where four fail on most rows of a TPC-H order-lines table."""
    columns = [c.name for c in table.columns]
    text = next(c for c in columns if "comment" in c)
    number = next(c.name for c in table.columns if c.physical_type.startswith("DECIMAL"))
    replacements = [
        Rule(f"{number}_below_one", "bound", (number,), {"op": "<", "value": 1}),
        Rule(f"{columns[0]}_is_one", "valid_values", (columns[0],), {"values": [1]}),
        Rule(f"{text}_pattern", "pattern", (text,), {"pattern": "^zzz"}),
        Rule("first_column_unique", "duplicates", (columns[0],)),
    ]
    replaced = [r for r in rules if r.kind != "foreign_key"][: len(replacements)]
    return tuple(replacements) + tuple(r for r in rules if r not in replaced)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--table", default="sales/gold/order_lines_wide")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    mesh = load_mesh(find_mesh_root(args.root))
    domain_name, layer, name = args.table.split("/")
    domain = mesh.domain(domain_name)
    table = domain.table(layer, name)
    storage = PortStorage(root=mesh.settings.storage_url)
    engine = duckdb_engine(mesh.settings)
    con = engine.connect(storage.root)
    references = reference_targets(mesh, domain, table)
    for ref in references.values():
        engine.register_view(con, ref.schema, ref.table, storage.port(ref.key).current_snapshot())
    engine.register_view(con, layer, name, storage.port(table.key).current_snapshot())
    targets = {rule: f"{ref.schema}.{ref.table}" for rule, ref in references.items()}
    relation = f"{layer}.{name}"
    failing_table = dataclasses.replace(table, rules=_failing(table.rules, table))
    results = {}
    for case, subject in (("passing", table), ("failing", failing_table)):
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            outcomes = run_rules(con, relation, subject, mesh.settings.checks.sample_rows, targets)
            profile_relation(con, relation)
            times.append(time.perf_counter() - started)
        failed = [o.name for o in outcomes if not o.passed]
        results[case] = statistics.median(times)
        print(f"{case}: {len(outcomes)} checks + profile, {len(failed)} failed {failed[:4]}: "
              f"median {results[case]:.2f} s of {args.repeat}")
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    print(json.dumps({"table": args.table, "rows": rows, "checks": len(table.rules),
                      "passing_s": round(results["passing"], 3), "failing_s": round(results["failing"], 3),
                      "ratio": round(results["failing"] / results["passing"], 3)}))


if __name__ == "__main__":
    main()
