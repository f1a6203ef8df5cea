"""A gold table built by a dbt model: its asset through dagster-dbt, and its step (docs/dbt.md).

Load: dagster-dbt's public ``@dbt_assets`` builds the model's asset spec and one asset check per dbt test from
the manifest, through :class:`MeshDbtTranslator`, which gives the model the mesh's spec (key ``[domain, gold,
table]``, group, owners, contract schema, freshness, automation) and leaves sources keyed by their
``meta.dagster.asset_key``. The step's asset also carries the contract's checks, which ``@dbt_assets`` does not
take, so the mesh reads the specs and checks of that definition (``AssetsDefinition.specs``, ``.check_specs``)
into one multi-asset of its own.

Step: dbt is one more engine of the one write–audit–publish (mesh_assets.engine.dbt_engine): the step runs the
model into a staged snapshot of the port, which the framework audits in place and publishes or discards.

No ``from __future__ import annotations``: Dagster reads the compute function's annotations at run time.
"""

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject, dbt_assets

from mesh_assets.contract.dbt_project import load_manifest
from mesh_assets.contract.mesh import Mesh
from mesh_assets.contract.model import Table
from mesh_assets.engine.dbt_engine import DbtEngine, load_dbt_manifest
from mesh_assets.errors import MeshError


class MeshDbtTranslator(DagsterDbtTranslator):
    """Maps the dbt models bound to data contracts to their mesh asset specs (``specs`` by dbt unique id).
    Sources keep dagster-dbt's key, their ``meta.dagster.asset_key``: they are other assets' ports."""

    def __init__(self, specs: Mapping[str, dg.AssetSpec]):
        super().__init__()
        self._mesh_specs = dict(specs)

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
                       ) -> dg.AssetSpec:
        base = super().get_asset_spec(manifest, unique_id, project)
        spec = self._mesh_specs.get(unique_id)
        if spec is None:
            return base
        dbt_metadata = {k: v for k, v in base.metadata.items() if k.startswith("dagster_dbt/")}
        return spec.merge_attributes(metadata={**dbt_metadata, "dbt_model": unique_id}, kinds={"dbt"})


def model_unique_id(manifest: Mapping[str, Any], table: Table) -> str:
    """The unique id of the model bound to ``table``, in its domain's folder of the manifest.

    Raises:
        MeshError: the manifest has no such model (it is older than the model: run dbt parse again).
    """
    for unique_id, node in manifest.get("nodes", {}).items():
        if (node.get("resource_type") == "model" and node.get("name") == table.dbt_model
                and Path(node.get("original_file_path", "")).parts[1:2] == (table.domain,)):
            return unique_id
    raise MeshError(f"{table.contract_path}: the dbt manifest has no model {table.dbt_model} in "
                    f"models/{table.domain}/; run `make dbt-manifest` (dbt parse) after adding or moving a model")


def _never_run(context: dg.AssetExecutionContext):
    """The compute function of the ``@dbt_assets`` definition whose specs and checks the model's asset takes;
    that definition is never part of a code location, so this never runs."""
    raise NotImplementedError


def dbt_model_asset(mesh: Mesh, table: Table, spec: dg.AssetSpec, check_specs: list[dg.AssetCheckSpec],
                    step: Callable[..., Iterator[Any]], retry_policy: dg.RetryPolicy | None) -> dg.AssetsDefinition:
    """The asset of ``table``, built by its dbt model: ``spec`` and ``check_specs`` are the mesh's (from the
    contract), the dbt tests of the model are added as asset checks, and ``step(context, engine)`` (the
    write–audit–publish step of mesh_assets.orchestration.assets) runs on a :class:`DbtEngine`, under
    ``retry_policy`` like every step.

    Raises:
        MeshError: no manifest, or the manifest lacks the model.
    """
    manifest = load_manifest(mesh.root)
    unique_id = model_unique_id(manifest, table)
    load_dbt_manifest(mesh.root)  # read for dbt once, at load: the step converts what is cached
    translator = MeshDbtTranslator({unique_id: spec})
    dbt_definition = dbt_assets(manifest=manifest, select=unique_id.split(".")[-1],
                                dagster_dbt_translator=translator)(_never_run)
    specs, dbt_checks = list(dbt_definition.specs), list(dbt_definition.check_specs)

    @dg.multi_asset(name="__".join(table.key), specs=specs, check_specs=[*check_specs, *dbt_checks],
                    retry_policy=retry_policy, required_resource_keys={"duckdb", "ports"})
    def _dbt_model(context: dg.AssetExecutionContext):
        yield from step(context, DbtEngine(context.log.info, mesh, context.resources.duckdb))

    return _dbt_model
