"""Partitions built against an older version of an unpartitioned input (docs/partitions.md, "When a dimension
changes").

A partitioned table reading an unpartitioned input (a dimension: ``customers.customer_profile`` under
``sales.order_lines_wide``) reads all of it in every partition's step. Each partition's publication records the
version (publication) of each such input it was built from (mesh_assets.engine.ports.INPUTS); when an input has
been published again since, the partitions built before are stale. The contract says per input what that means
(``customProperties`` ``onInputChange``): ``rebuild`` (the default) — ``mesh status`` reports the port and a run of
some of its partitions rebuilds every stale one too; ``keep`` — each partition keeps the version it was built
with, and ``mesh status`` lists them without failing.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh_assets.contract.mesh import Mesh
from mesh_assets.contract.model import Table
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.errors import MeshError, PortError
from mesh_assets.settings import LAYERS


@dataclass(frozen=True)
class StaleInput:
    """An unpartitioned ``input`` (``<schema>.<table>``) of a partitioned table, published again (``current``
    publication) after the ``partitions`` (keys, in order) were built from older versions (``built_against``,
    their publications); ``policy`` is the contract's ``rebuild`` or ``keep``."""

    input: str
    policy: str
    current: str
    built_against: tuple[str, ...]
    partitions: tuple[str, ...]

    def describe(self) -> str:
        """``customers.customer_profile changed: 79 partitions (1992-01…1998-07) built before, rebuild``."""
        span = self.partitions[0] if len(self.partitions) == 1 else f"{self.partitions[0]}…{self.partitions[-1]}"
        return (f"{self.input} changed: {len(self.partitions)} partition(s) ({span}) built before, "
                f"{self.policy}")

    def to_json(self) -> dict[str, object]:
        """The fields as JSON (``partitions`` a list)."""
        return {"input": self.input, "policy": self.policy, "current": self.current,
                "built_against": list(self.built_against), "partitions": list(self.partitions)}


def stale_inputs(mesh: Mesh, table: Table, storage: PortStorage) -> list[StaleInput]:
    """The unpartitioned inputs of the partitioned ``table`` published again since some of its current
    partitions were built (from the versions its port recorded: mesh_assets.engine.ports.Port.partition_inputs);
    empty for an unpartitioned table, or one whose port cannot be read. An input that is no longer in the mesh,
    or that cannot be read, is left out."""
    if table.partitioning is None:
        return []
    try:
        built = storage.port(table.key).partition_inputs()
    except (PortError, MeshError):
        return []
    by_input: dict[str, dict[str, str]] = {}
    for key, inputs in built.items():
        for name, publication in inputs.items():
            by_input.setdefault(name, {})[key] = publication
    found = []
    for name, partitions in sorted(by_input.items()):
        current = _current_publication(mesh, table, name, storage)
        stale = {k: p for k, p in partitions.items() if current is not None and p != current}
        if stale:
            found.append(StaleInput(name, table.input_policy(name), current or "", tuple(sorted(set(stale.values()))),
                                    tuple(sorted(stale))))
    return found


def _current_publication(mesh: Mesh, table: Table, name: str, storage: PortStorage) -> str | None:
    schema, _, input_table = name.partition(".")
    try:
        if schema in LAYERS:
            producer = mesh.domain(table.domain).table(schema, input_table)
        else:
            producer = mesh.output_port(schema, input_table)
        current = storage.port(producer.key).current() if producer is not None else None
    except (MeshError, PortError, KeyError):
        return None
    return current["snapshot"] if current else None
