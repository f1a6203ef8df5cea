"""Dagster ``Definitions``: one per domain (a code location) and one combined for the command-line run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from mesh_assets.contract.graph import cycle_message, find_cycle
from mesh_assets.contract.mesh import Domain, Mesh, load_mesh
from mesh_assets.engine.choice import table_engine
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.iceberg_catalog import catalog_uri
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.errors import MeshError
from mesh_assets.extras import missing
from mesh_assets.orchestration.assets import domain_assets, kind_order
from mesh_assets.orchestration.sensors import (freshness_alert_sensor, landing_zone_sensor, partitioned_followers,
                                               run_failure_alert_sensor)
from mesh_assets.settings import MeshSettings, RunSettings, find_mesh_root


def duckdb_engine(settings: MeshSettings) -> DuckDBEngine:
    """The DuckDB engine configured by ``mesh.yaml`` (``duckdb.*``) and ``MESH_DUCKDB_QUERY_LOG``."""
    return DuckDBEngine(threads=settings.duckdb.threads, memory_limit=settings.duckdb.memory_limit,
                        temp_directory=settings.duckdb_temp_path,
                        query_log=os.environ.get("MESH_DUCKDB_QUERY_LOG"))


def mesh_resources(settings: MeshSettings, domains: list[Domain]) -> dict[str, object]:
    """The resources the assets of ``domains`` use, configured from ``mesh.yaml`` and the environment: ``duckdb``
    and ``ports`` (the port storage) always, ``spark`` when a table of ``domains`` runs on Spark
    (mesh_assets.engine.choice) and the ``spark`` extra is installed; pyspark is imported only then. Without the
    extra, those tables' steps fail naming it (mesh_assets.orchestration.assets).

    Raises:
        MeshError: the storage root is not local and no Iceberg catalog URL is set
            (mesh_assets.engine.iceberg_catalog.catalog_uri).
    """
    catalog_uri(settings.storage_url, settings.catalog.uri)  # a settings error at load, not at the first step
    resources: dict[str, object] = {
        "duckdb": duckdb_engine(settings),
        "ports": PortStorage(root=settings.storage_url, retention=settings.retention.snapshots,
                             catalog_uri=settings.catalog.uri),
    }
    on_spark = any(table_engine(settings, d, d.product_of(t), t) == "spark" for d in domains for t in d.tables)
    if on_spark and missing("spark") is None:
        from mesh_assets.engine.spark_engine import SparkEngine, spark_config

        resources["spark"] = SparkEngine(spark_config=spark_config(settings.spark.master, settings.spark.conf))
    return resources


def _automation_sensor(domain: Domain, settings: MeshSettings) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        f"{domain.name}_automation",
        target=dg.AssetSelection.groups(domain.name),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.automation.automation_interval_seconds,
        description=f"Declarative automation of domain {domain.name}: bronze on its ingestion schedule, "
                    "silver and gold when their inputs update and pass their blocking checks.",
    )


def check_acyclic(mesh: Mesh, domains: list[str], loaded_only: bool = False) -> None:
    """Raise :class:`MeshError` naming the cycle when a table of ``domains`` depends on itself (see
    :func:`find_cycle` for ``loaded_only``)."""
    cycle = find_cycle(mesh, domains, loaded_only)
    if cycle:
        raise MeshError(f"dependency cycle: {cycle_message(cycle)}; a table cannot read, even through other "
                        "domains, a port built from it. Read an earlier layer or split the product")


def build_domain_definitions(domain_dir: Path | str) -> dg.Definitions:
    """The code location of the domain in folder ``domain_dir``: its assets and checks, an ``<domain>_ingestion``
    job (its bronze tables, and its partitioned tables downstream of partitioned bronze ones), and its sensors,
    all RUNNING by default: declarative automation, the landing zone (when the domain
    ingests) and the run-failure and freshness alerts (mesh_assets.orchestration.sensors). Only this domain's contracts
    and the contracts of the ports it reads are parsed; no other domain's Python is imported.

    Raises:
        ContractError, MeshError: a malformed contract, an input that cannot be resolved, a dependency cycle
            through another domain.
        AccessError: a port read without the right to read it.
    """
    domain_dir = Path(domain_dir).resolve()
    mesh = load_mesh(find_mesh_root(domain_dir))
    domain = mesh.domain(domain_dir.name)
    assets = domain_assets(mesh, domain)  # loads the domains it reads
    # cycles through the domains it reads; longer ones fail mesh validate and mesh run
    check_acyclic(mesh, [domain.name], loaded_only=True)
    settings = mesh.settings
    resources = mesh_resources(settings, [domain])
    graph = dg.Definitions(assets=assets, resources=resources).resolve_asset_graph()
    followers = partitioned_followers(graph, domain.name)
    jobs = ingestion_jobs(domain.name, graph, followers)
    ingests = any(t.layer == "bronze" and t.source is not None for t in domain.tables)
    sensors = [_automation_sensor(domain, settings), run_failure_alert_sensor(domain, settings),
               freshness_alert_sensor(domain, settings)]
    return dg.Definitions(
        assets=assets,
        sensors=[*sensors, landing_zone_sensor(domain, settings, jobs, followers)] if ingests else sensors,
        jobs=[job for job, _ in jobs] if ingests else [],
        resources=resources,
        executor=run_executor(settings.runs),
    )


def ingestion_jobs(domain: str, graph: Any, followers: dict[dg.AssetKey, list[dg.AssetKey]]
                   ) -> list[tuple[dg.UnresolvedAssetJobDefinition, frozenset[dg.AssetKey]]]:
    """The ingestion jobs of ``domain`` (with the asset keys each selects), from its asset graph ``graph``: its
    bronze tables (and their rejects) with their ``followers`` (mesh_assets.orchestration.sensors.
    partitioned_followers). A Dagster job's assets share one partitions definition, so the unpartitioned bronze
    tables and those of the first partitions definition (time before static before multi: ``kind_order``) are
    the job ``<domain>_ingestion``; each other partitions definition (a domain whose bronze tables are
    partitioned by month and by region) has its job ``<domain>_ingestion_by_<columns>``."""
    groups: list[tuple[Any, set[dg.AssetKey]]] = []  # (partitions definition, its bronze assets and followers)
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.path):
        if key.path[0] != domain or len(key.path) != 3 or key.path[1] != "bronze":
            continue
        definition = graph.get(key).partitions_def
        found = next((keys for d, keys in groups if d == definition), None)
        if found is None:
            groups.append((definition, found := set()))
        found.update([key, *followers.get(key, [])])
    unpartitioned = next((keys for d, keys in groups if d is None), set())
    partitioned = sorted([(d, keys) for d, keys in groups if d is not None],
                         key=lambda g: kind_order(g[0])) or [(None, set())]
    jobs: list[tuple[dg.UnresolvedAssetJobDefinition, frozenset[dg.AssetKey]]] = []
    for index, (_, keys) in enumerate(partitioned):
        selected = frozenset(keys | unpartitioned) if index == 0 else frozenset(keys)
        name = f"{domain}_ingestion"
        if index:
            columns = {graph.get(k).metadata.get("partition_column") for k in keys} - {None}
            name = f"{name}_by_{'_'.join(sorted(str(c).replace(', ', '_') for c in columns))}"
            name += f"_{index}" if any(job.name == name for job, _ in jobs) else ""
        jobs.append((dg.define_asset_job(
            name, selection=dg.AssetSelection.assets(*selected),
            description=f"Ingest the landing-zone files of domain {domain} into its bronze tables, and build the "
                        "same partitions of its partitioned tables downstream of them."), selected))
    return jobs


def run_executor(runs: RunSettings) -> dg.ExecutorDefinition:
    """The executor of the runs launched in a domain's code location, from ``mesh.yaml`` ``runs``
    (:class:`mesh_assets.settings.RunSettings`): Dagster's in-process executor, or its multiprocess executor
    with ``max_concurrent`` steps at once."""
    if runs.executor == "in_process":
        return dg.in_process_executor
    if runs.max_concurrent is None:
        return dg.multiprocess_executor
    return dg.multiprocess_executor.configured({"max_concurrent": runs.max_concurrent})


def build_mesh_definitions(mesh: Mesh, domains: list[str] | None = None) -> dg.Definitions:
    """Every domain's assets (or those of ``domains``) in one ``Definitions``, so one process can materialize
    the mesh in dependency order (a Dagster run cannot span code locations). Ports of domains left out are
    read as currently published."""
    selected = [d for d in mesh.domains() if not domains or d.name in domains]
    check_acyclic(mesh, [d.name for d in selected])
    assets = [a for d in selected for a in domain_assets(mesh, d)]
    return dg.Definitions(assets=assets, resources=mesh_resources(mesh.settings, selected))
