"""Tables of data contracts → Dagster assets, asset checks, freshness policies and automation (docs/architecture.md).

No `from __future__ import annotations` here: Dagster reads the compute function's annotations at run time.
"""


import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.contract.model import PARTITION_CHECK, DataProduct, PartitionColumns, Partitioning, Table
from mesh_assets.contract.rules import rule_inputs
from mesh_assets.engine.choice import ENGINE_EXTRAS, table_engine
from mesh_assets.engine.iceberg_catalog import table_identifier
from mesh_assets.engine.ingestion import FRAMEWORK_CHECKS, REJECTS_COLUMNS, rejects_key
from mesh_assets.engine.interface import Engine
from mesh_assets.engine.outcomes import CheckOutcome, weighted_passes
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.profile import profile_metadata
from mesh_assets.errors import MeshError, error_message, is_transient
from mesh_assets.extras import MissingExtra, missing
from mesh_assets.governance.access import authorize_input, deprecation_notice
from mesh_assets.orchestration.audit import audit_observation
from mesh_assets.orchestration.freshness import freshness_policy
from mesh_assets.orchestration.progress import StepEnd, run_interrupted, step_ended, step_started
from mesh_assets.settings import MeshSettings
from mesh_assets.sql.inputs import InputRef, SqlInputError, declared_inputs, find_inputs

if TYPE_CHECKING:
    from mesh_assets.engine.write_audit_publish import TableResult

LAYER_TAG, PRODUCT_TAG, VISIBILITY_TAG, STATUS_TAG = "mesh/layer", "mesh/product", "mesh/visibility", "mesh/status"
log = logging.getLogger("mesh_assets")


def table_inputs(mesh: Mesh, domain: Domain, table: Table) -> list[InputRef]:
    """The ports ``table``'s SQL reads, found with sqlglot (a Python transform's: declared in its contract), and
    checked against the mesh's access rules.

    Raises:
        MeshError: unparsable SQL, an unknown own table, an unknown port of another domain.
        AccessError: a private port of another domain, or a restricted one without a grant.
    """
    sql = table.sql
    if sql is None and not table.python:
        return []
    try:
        refs = declared_inputs(table.inputs, domain.name) if table.python else find_inputs(sql or "", domain.name)
    except SqlInputError as exc:
        raise MeshError(f"{table.transform_origin}: {exc}") from None
    for ref in refs:
        authorize_input(mesh, domain, ref, table.transform_origin)
    return refs


def reference_targets(mesh: Mesh, domain: Domain, table: Table) -> dict[str, InputRef]:
    """The table each ``foreign_key`` rule of ``table`` references, by rule name.

    ``<table>.<column>`` names a table of the same domain (by name, in any layer); ``<domain>.<table>`` another
    domain's output port. Raises :class:`MeshError` for an unknown, ambiguous or unreadable target.
    """
    targets = {}
    for rule in table.rules:
        if rule.kind != "foreign_key":
            continue
        other, name = rule.params["domain"], rule.params["table"]
        if other is None or other == domain.name:
            layers = [t.layer for t in domain.tables if t.name == name]
            if len(layers) != 1:
                raise MeshError(f"{table.contract_path}: relationship {rule.name} references table '{name}', "
                                f"which domain '{domain.name}' declares {len(layers)} times; name one table")
            ref = InputRef(layers[0], name, (domain.name, layers[0], name))
        else:
            ref = InputRef(other, name, (other, "gold", name))
        authorize_input(mesh, domain, ref, f"{table.contract_path} (relationship {rule.name})")
        target = mesh.output_port(other, name) if ref.cross_domain else domain.table(ref.schema, name)
        missing = [c for c in rule.params["columns"] if c not in {col.name for col in target.columns}]
        if missing:
            raise MeshError(f"{table.contract_path}: relationship {rule.name} references "
                            f"{ref.schema}.{name}.{missing[0]}, which is not a column of that table")
        targets[rule.name] = ref
    return targets


def rule_reads(mesh: Mesh, domain: Domain, table: Table) -> list[InputRef]:
    """The tables ``table``'s SQL rules read besides ``table`` itself (mesh_assets.contract.rules.rule_inputs),
    each once, checked against the mesh's access rules like a transform's inputs.

    Raises:
        MeshError: a query names a table as no SQL may (the message names the contract and the rule), or an
            unknown own table or port.
        AccessError: a private port of another domain, or a restricted one without a grant.
    """
    refs: dict[tuple[str, str, str], InputRef] = {}
    for rule in table.rules:
        where = f"{table.contract_path} (quality rule {rule.name} of table {table.name})"
        try:
            found = rule_inputs(rule, table)
        except SqlInputError as exc:
            raise MeshError(f"{where}: {exc}") from None
        for ref in found:
            authorize_input(mesh, domain, ref, where)
            refs.setdefault(ref.key, ref)
    return list(refs.values())


def _producer(mesh: Mesh, ref: InputRef) -> DataProduct:
    return mesh.domain(ref.schema).product_of(mesh.output_port(ref.schema, ref.table))


def producer_contracts(mesh: Mesh, refs: list[InputRef]) -> dict[tuple[str, str, str], Path]:
    """The contract file of each other domain's port in ``refs`` (re-read at run time to decide access)."""
    return {ref.key: _producer(mesh, ref).path for ref in refs if ref.cross_domain}


def deprecated_inputs(mesh: Mesh, refs: list[InputRef]) -> list[str]:
    """A notice per other domain's port in ``refs`` that its producer deprecated."""
    notices = {deprecation_notice(_producer(mesh, ref), f"{ref.schema}.{ref.table}") for ref in refs
               if ref.cross_domain}
    return sorted(n for n in notices if n)


def _governance_metadata(product: DataProduct, table: Table, notices: list[str]) -> dict[str, Any]:
    """What the UI shows of governance: deprecation, grants of an output port, deprecated inputs."""
    metadata: dict[str, Any] = {}
    if product.deprecated:
        metadata["deprecation"] = deprecation_notice(product, f"{table.domain}.{table.name}")
    if table.layer == "gold" and product.grants:
        metadata["grants"] = dg.MetadataValue.json(
            [{"domain": g.domain, "tables": list(g.tables) or "all", "pii": g.pii, "purpose": g.purpose,
              "approved_by": g.approved_by, "approved_at": g.approved_at}
             for g in product.grants if g.covers(table.name)])
    if notices:
        metadata["deprecated_inputs"] = "\n".join(notices)
    return metadata


def column_schema(table: Table) -> dg.TableSchema:
    """The table's ``dagster/column_schema``: the contract's columns (and bronze lineage columns)."""
    columns = [
        dg.TableColumn(c.name, c.physical_type, c.description,
                       dg.TableColumnConstraints(nullable=not c.required, unique=c.unique,
                                                 other=["primary key"] if c.primary_key_position else []),
                       tags={"classification": c.classification} if c.classification else {})
        for c in table.columns
    ]
    if table.layer == "bronze":
        columns += [dg.TableColumn(name, ctype, "lineage column added by ingestion")
                    for name, ctype in table.output_columns.items() if name not in {c.name for c in table.columns}]
    return dg.TableSchema(columns=columns)


# The run tags of a run over a range of partitions (a single-run backfill), as Dagster sets them
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
TIME_PARTITIONS = {"hour": dg.HourlyPartitionsDefinition, "day": dg.DailyPartitionsDefinition,
                   "week": dg.WeeklyPartitionsDefinition, "month": dg.MonthlyPartitionsDefinition}


def partitions_definition(partitioning: Partitioning | None) -> dg.PartitionsDefinition | None:
    """The Dagster partitions of a table's ``partitioning`` (docs/partitions.md): of a time dimension
    ``HourlyPartitionsDefinition``, ``DailyPartitionsDefinition``, ``WeeklyPartitionsDefinition`` (its weeks
    starting on its start's weekday) or ``MonthlyPartitionsDefinition`` from its start to its end (exclusive; none:
    up to the last complete period in its time zone), keys formatted ``YYYY-MM-DDTHH`` (hour), ``YYYY-MM-DD``
    (day; week: its first day) or ``YYYY-MM`` (month); of a static one ``StaticPartitionsDefinition`` of its
    values; of both ``MultiPartitionsDefinition``
    with the two dimensions named after their columns (keys ``1992-01|EUROPE``, dimensions in name order).
    ``None`` for an unpartitioned table."""
    if partitioning is None:
        return None
    time = static = None
    if partitioning.time is not None:
        granularity, fmt = partitioning.time.granularity, partitioning.time.key_format
        end = partitioning.time.end.strftime(fmt) if partitioning.time.end is not None else None
        # Dagster numbers a week's first day from Sunday (0), ISO 8601 from Monday (1) to Sunday (7)
        week = {"day_offset": partitioning.time.week_start % 7} if partitioning.time.week_start else {}
        time = TIME_PARTITIONS[granularity](start_date=partitioning.time.start.strftime(fmt), end_date=end,
                                            timezone=partitioning.time.timezone, fmt=fmt, **week)
    if partitioning.static is not None:
        static = dg.StaticPartitionsDefinition(list(partitioning.static.values))
    if time is not None and static is not None:
        return dg.MultiPartitionsDefinition({partitioning.time.column: time,  # type: ignore[union-attr]
                                             partitioning.static.column: static})  # type: ignore[union-attr]
    return time or static


def kind_order(definition: dg.PartitionsDefinition) -> int:
    """Where a partitions definition's runs and ingestion job come: 0 for time partitions, 1 for static ones,
    2 for multi-partitions (a multi-partitioned table reads the others)."""
    kinds = (dg.TimeWindowPartitionsDefinition, dg.StaticPartitionsDefinition, dg.MultiPartitionsDefinition)
    return next(i for i, kind in enumerate(kinds) if isinstance(definition, kind))


def partitioned_inputs(mesh: Mesh, domain: Domain, table: Table, reads: list[InputRef]
                       ) -> dict[tuple[str, str, str], tuple[PartitionColumns, dg.PartitionMapping | None]]:
    """Of a partitioned ``table``'s ``reads`` (its transform's and its SQL rules' inputs), the partitioned ones:
    port key → the partition columns the step filters to its window, and the partition mapping of the
    dependency (:func:`read_partitions`). Empty for an unpartitioned table, which reads every partition.

    Raises:
        MeshError: an input partitioned in a way the table cannot read by partition (:func:`read_partitions`).
    """
    if table.partitioning is None:
        return {}
    return {ref.key: read_partitions(table, producer) for ref in reads
            if (producer := _read_table(mesh, domain, ref)).partitioning is not None}


def _reference_mappings(mesh: Mesh, domain: Domain, table: Table, references: list[InputRef]
                        ) -> dict[tuple[str, str, str], dg.PartitionMapping | None]:
    """The partition mappings of a partitioned ``table``'s dependencies on the partitioned tables its foreign
    keys reference, which a rule reads whole: :func:`slice_of`'s when it reads them by partition, else every
    partition (``AllPartitionMapping``)."""
    if table.partitioning is None:
        return {}
    found: dict[tuple[str, str, str], dg.PartitionMapping | None] = {}
    for ref in references:
        producer = _read_table(mesh, domain, ref)
        if producer.partitioning is not None and ref.key != table.key:
            sliced = slice_of(table, producer)
            found[ref.key] = sliced[1] if sliced is not None else dg.AllPartitionMapping()
    return found


def _read_table(mesh: Mesh, domain: Domain, ref: InputRef) -> Table:
    """The table ``ref`` reads: another domain's output port, or a table of ``domain``."""
    return mesh.output_port(ref.schema, ref.table) if ref.cross_domain else domain.table(ref.schema, ref.table)


def read_partitions(table: Table, producer: Table) -> tuple[PartitionColumns, dg.PartitionMapping | None]:
    """How the partitioned ``table`` reads the partitioned ``producer`` by partition (:func:`slice_of`).

    Raises:
        MeshError: a combination :func:`slice_of` does not read, naming the contracts and the fix.
    """
    found = slice_of(table, producer)
    if found is not None:
        return found
    mine, theirs = table.partitioning, producer.partitioning
    assert mine is not None and theirs is not None
    if (mine.static is None and theirs.static is None and mine.time is not None and theirs.time is not None
            and mine.time.granularity == "hour"):
        raise MeshError(f"{table.contract_path}: table {table.name} is partitioned by hour and reads "
                        f"{producer.layer}.{producer.name} ({producer.contract_path}), partitioned by its DATE "
                        f"column {theirs.time.column}, whose rows have no hour; partition {table.name} by day or "
                        "coarser, or partition the input by a TIMESTAMP column (docs/partitions.md)")
    raise MeshError(f"{table.contract_path}: table {table.name} is partitioned by {_described(mine)} and reads "
                    f"{producer.layer}.{producer.name} ({producer.contract_path}), partitioned by "
                    f"{_described(theirs)}; a partitioned table reads inputs partitioned the same way, or (a table "
                    "partitioned by time and a static set) an input partitioned by one of its two dimensions with "
                    "the same granularity, start and end or values. Partition both alike, or leave the reader "
                    "unpartitioned (it then reads every partition; docs/partitions.md)")


def slice_of(table: Table, producer: Table) -> tuple[PartitionColumns, dg.PartitionMapping | None] | None:
    """The producer's columns the partitioned ``table``'s window restricts when it reads the partitioned
    ``producer``, and the Dagster partition mapping of the dependency (``None``: Dagster's default); ``None``
    when it cannot read it by partition. The same partitioning (time dimensions of any granularity, as before,
    but for an hour's table reading a DATE column, which has no hours;
    the same static values; the same multi partitions) reads the window's slice; a multi-partitioned table reads
    a producer partitioned by one of its dimensions alone (the same definition) through
    ``MultiToSingleDimensionPartitionMapping``."""
    mine, theirs = table.partitioning, producer.partitioning
    assert mine is not None and theirs is not None
    mine_def, theirs_def = partitions_definition(mine), partitions_definition(theirs)
    if mine.static is None and theirs.static is None and mine.time is not None and theirs.time is not None:
        if mine.time.granularity == "hour" and theirs.time.column_type == "DATE":
            return None
        return PartitionColumns(time=theirs.time.column), None
    if mine.time is None and theirs.time is None and mine_def == theirs_def:
        return PartitionColumns(static=theirs.static.column), None  # type: ignore[union-attr]
    if mine.time is not None and mine.static is not None:
        if mine_def == theirs_def:
            return theirs.columns, None
        dimension = None
        if theirs.static is None and partitions_definition(Partitioning(time=mine.time)) == theirs_def:
            dimension, columns = mine.time.column, PartitionColumns(time=theirs.time.column)  # type: ignore
        elif theirs.time is None and partitions_definition(Partitioning(static=mine.static)) == theirs_def:
            dimension, columns = mine.static.column, PartitionColumns(static=theirs.static.column)  # type: ignore
        if dimension is not None:
            with warnings.catch_warnings():  # Dagster's beta label on the class, not the user's concern
                warnings.simplefilter("ignore", dg.BetaWarning)
                return columns, dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=dimension)
    return None


def _described(partitioning: Partitioning) -> str:
    """``month of order_date from 1992-01-01 to 1999-01-01``, ``region (5 values)``, or both joined by ``and``."""
    parts = []
    if partitioning.time is not None:
        parts.append(f"{partitioning.time.granularity} of {partitioning.time.column} from {partitioning.time.start}"
                     + (f" to {partitioning.time.end}" if partitioning.time.end else ""))
    if partitioning.static is not None:
        parts.append(f"{partitioning.static.column} ({len(partitioning.static.values)} values)")
    return " and ".join(parts)


def check_partitioned(mesh: Mesh, table: Table, engine_key: str) -> None:
    """Refuse, when the definitions load, a partitioned table the mesh cannot yet build by partition: on Spark.
    (A Python transform or a dbt model gets its partitioned inputs' rows of the step's partitions; an output
    port with sensitive columns may be partitioned: its masked copy replaces the same partitions,
    mesh_assets.engine.masked_copy.)

    Raises:
        MeshError: naming the contract, the table and the fix.
    """
    if table.partitioning is None:
        return
    where = (f"{table.contract_path}: table {table.name} is partitioned (column "
             f"{', '.join(table.partitioning.column_names)})")
    if engine_key == "spark":
        raise MeshError(f"{where}, and partitioned tables run on DuckDB (SQL, Python or dbt), not Spark; remove its "
                        "engine: spark (customProperties engine, or the domain's or mesh.yaml's), or remove "
                        "partitioned and partitioning from the contract")


def check_input_policies(table: Table, inputs: list[InputRef],
                         partitioned: dict[tuple[str, str, str], PartitionColumns]) -> None:
    """Refuse, when the definitions load, an ``onInputChange`` entry that names no unpartitioned input of the
    table's transform (``partitioned``: its partitioned inputs' columns, :func:`partitioned_inputs`).

    Raises:
        MeshError: naming the contract, the table, the entry and the inputs it may name.
    """
    whole = sorted({f"{r.schema}.{r.table}" for r in inputs if r.key not in partitioned})
    for name, _ in table.on_input_change:
        if name not in whole:
            raise MeshError(f"{table.contract_path}: table {table.name}: onInputChange names {name}, which is not an "
                            f"unpartitioned input of its transform; name one of {', '.join(whole) or '(none)'}, or "
                            "remove the entry (docs/partitions.md)")


def _automation(table: Table, domain: Domain, kept: list[dg.AssetKey]) -> dg.AutomationCondition:
    """A table's declarative automation: a bronze table on its domain's ingestion schedule; silver and gold
    eagerly, when an input updates, once their inputs' blocking checks passed. ``eager()`` considers only the
    latest partition of a time-partitioned asset, so a partitioned table also runs every partition whose input
    updated (its partition of a partitioned input, or a dimension with ``onInputChange: rebuild``: all of
    them; ``kept``, the inputs whose policy is ``keep``, count for the latest partition only); several
    partitions requested in one tick become one backfill, one run by the table's single-run backfill policy."""
    if table.layer == "bronze":
        return dg.AutomationCondition.on_cron(domain.ingestion_schedule, domain.timezone)
    condition = dg.AutomationCondition.eager()
    if table.partitioning is not None:
        updated = dg.AutomationCondition.any_deps_updated()
        if kept:
            updated = updated.ignore(dg.AssetSelection.assets(*kept))
        condition = condition | (updated.since_last_handled() & ~dg.AutomationCondition.any_deps_missing()
                                 & ~dg.AutomationCondition.any_deps_in_progress()
                                 & ~dg.AutomationCondition.in_progress()).with_label("every updated partition")
    return condition & dg.AutomationCondition.all_deps_blocking_checks_passed()


def _code_version(product: DataProduct, table: Table) -> str:
    digest = hashlib.sha256(product.path.read_bytes())
    source = table.transform.read_text(encoding="utf-8") if table.python and table.transform else table.sql
    if source is not None:
        digest.update(source.encode())
    return digest.hexdigest()[:16]


def table_asset(mesh: Mesh, domain: Domain, product: DataProduct, table: Table) -> dg.AssetsDefinition:
    """One asset keyed ``[domain, layer, table]`` with one asset check per contract rule plus ``schema``; for a
    bronze table also ``schema_drift``, ``rejected_rows``, ``row_conservation`` and the ``<table>__rejects``
    asset, materialized by the same step. When the table's engine needs an extra of the package that is not
    installed (Spark, dbt: mesh_assets.extras), the definitions still load and the step fails naming the extra."""
    inputs = table_inputs(mesh, domain, table)
    references = reference_targets(mesh, domain, table)
    rule_refs = rule_reads(mesh, domain, table)
    reads = [*inputs, *references.values(), *rule_refs]
    key = dg.AssetKey(list(table.key))
    upstream = {ref.key for ref in reads} - {table.key}
    notices = deprecated_inputs(mesh, reads)
    producers = producer_contracts(mesh, reads)
    for notice in notices:
        log.warning("%s reads %s", "/".join(table.key), notice)
    storage_url = mesh.settings.storage_url
    engine_key = table_engine(mesh.settings, domain, product, table)  # the resource key of its engine, or dbt
    check_partitioned(mesh, table, engine_key)
    partitions_def = partitions_definition(table.partitioning)
    windowed = partitioned_inputs(mesh, domain, table, [*inputs, *rule_refs])  # the transform's, its SQL rules'
    filtered = {key: columns for key, (columns, _) in windowed.items()}
    mappings = {**_reference_mappings(mesh, domain, table, list(references.values())),
                **{key: mapping for key, (_, mapping) in windowed.items()}}
    check_input_policies(table, inputs, filtered)
    kept = [dg.AssetKey(list(r.key)) for r in inputs
            if r.key not in filtered and table.input_policy(f"{r.schema}.{r.table}") == "keep"]
    kind = "duckdb" if engine_key == "dbt" else engine_key  # a dbt model runs on dbt-duckdb (kinds: dbt, duckdb)
    description = table.description + (f"\n\nData product **{product.name}** v{product.version} "
                                       f"({product.status}): {product.description}")
    spec = dg.AssetSpec(
        key,
        deps=[dg.AssetDep(dg.AssetKey(list(k)), partition_mapping=mappings.get(k)) for k in sorted(upstream)],
        description=description,
        group_name=domain.name,
        owners=[f"team:{product.team}"],
        kinds={kind, "parquet"},
        tags={LAYER_TAG: table.layer, PRODUCT_TAG: product.name, VISIBILITY_TAG: table.visibility,
              STATUS_TAG: product.status or "active"},
        metadata={
            "dagster/column_schema": column_schema(table),
            "contract": dg.MetadataValue.path(str(product.path)),
            "contract_id": product.id,
            "contract_version": product.version,
            "port": dg.MetadataValue.path(f"{storage_url}/{'/'.join(table.key)}"),
            "iceberg_table": table_identifier(table.key),
            **({"primary_key": ", ".join(table.primary_key)} if table.primary_key else {}),
            **({"partition_column": ", ".join(table.partitioning.column_names)} if table.partitioning else {}),
            **_governance_metadata(product, table, notices),
            **{kind: dg.MetadataValue.json([d.definition(product.name, table.name) for d in declared])
               for kind, declared in (("metrics", table.metrics), ("labels", table.labels)) if declared},
        },
        freshness_policy=freshness_policy(table, mesh.settings, domain.timezone),
        automation_condition=_automation(table, domain, kept),
        code_version=_code_version(product, table),
        partitions_def=partitions_def,
    )
    drift_blocking = getattr(mesh.settings.schema_drift, table.layer) == "fail"
    check_specs = [dg.AssetCheckSpec("schema", asset=key, blocking=drift_blocking,
                                     description="the output has the contract's columns and types")]
    specs = [spec]
    if table.layer == "bronze":
        rejects_blocking = mesh.settings.ingestion.rejects == "error"
        check_specs += [dg.AssetCheckSpec(name, asset=key, description=text,
                                          blocking={"schema_drift": drift_blocking, "rejected_rows": rejects_blocking,
                                                    "row_conservation": True}[name])
                        for name, text in FRAMEWORK_CHECKS.items()]
        specs.append(_rejects_spec(table, product, domain, key, kind, partitions_def))
    if table.partitioning is not None:
        check_specs.append(dg.AssetCheckSpec(PARTITION_CHECK, asset=key, blocking=True, description=(
            f"every row's {' and '.join(table.partitioning.column_names)} is in the partition(s) materialized")))
    check_specs += [dg.AssetCheckSpec(r.name, asset=key, blocking=r.blocking, description=r.description,
                                      metadata={"severity": r.severity, **({"dimension": r.dimension}
                                                                            if r.dimension else {})})
                    for r in table.rules]
    settings = mesh.settings
    step_key, asset = "__".join(table.key), "/".join(table.key)  # the node name of its step, its asset key

    def step(context: dg.AssetExecutionContext, engine: Engine):
        """The step: write–audit–publish (mesh_assets.engine.write_audit_publish) on ``engine``, the table's engine
        chosen when the definitions loaded, with the ``duckdb`` and ``ports`` resources."""
        from mesh_assets.orchestration.openlineage_events import StepLineage
        from mesh_assets.engine.write_audit_publish import write_audit_publish  # DuckDB, ibis, Pandera: where steps run

        ports = context.resources.ports
        run_id = context.run.run_id
        lineage = StepLineage(mesh, table, reads, dagster_run_id=run_id, dagster_job=context.run.job_name,
                              log=context.log)
        if run_interrupted(run_id):
            raise dg.Failure(description=f"{asset}: not run, the `mesh run` was interrupted (SIGINT or SIGTERM)",
                             allow_retries=False)
        lineage.start()
        step_started(run_id, step_key)
        result = None
        try:
            try:
                window = table.partitioning.window(context.partition_keys) if table.partitioning else None
                result = write_audit_publish(table, inputs, engine=engine, duckdb=context.resources.duckdb,
                                             storage=ports, settings=settings, run_id=context.run.run_id,
                                             references=references, rule_inputs=rule_refs, producers=producers,
                                             window=window, partitioned_inputs=filtered)
            except Exception as exc:  # every stage and engine: one classification, a message for people
                raise step_failure(table, exc, context.retry_number, settings.retries.max_retries) from None
            check_results = [_check_result(key, o) for o in result.outcomes]
            yield audit_observation(key, result.outcomes)
            if result.failed_blocking:
                yield from check_results
                names = ", ".join(f"{o.name} ({_failure(o)})" for o in result.failed_blocking)
                raise dg.Failure(
                    description=(f"{'/'.join(table.key)}: blocking check(s) failed: {names}. Snapshot "
                                 f"{result.snapshot_id or '(none written)'} was not published; the previous "
                                 f"snapshot stays current and downstream assets do not run.{_first_reject(result)}"),
                    metadata={"unpublished_snapshot": result.snapshot_id or ""},
                    allow_retries=False,
                )
            score = product_quality_score(table, product, result.outcomes, ports, settings.checks.severity_weights)
            metadata = _materialization_metadata(result, settings, score)
            keys = context.partition_keys if partitions_def is not None else []
            if len(keys) > 1:  # Dagster copies a range's metadata into each partition's event: the bulk once
                context.add_asset_metadata({name: metadata.pop(name) for name in RANGE_METADATA_ONCE
                                            if name in metadata}, asset_key=key, partition_key=keys[-1])
            yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=check_results)
            rows = {asset: result.rows}
            if result.rejects is not None:
                snapshot_id, rejected = result.rejects
                rows["/".join(rejects_key(table))] = rejected
                yield dg.MaterializeResult(asset_key=dg.AssetKey(list(rejects_key(table))),
                                           metadata={"dagster/row_count": rejected, "snapshot": snapshot_id})
        except Exception as exc:  # every way a step fails ends its OpenLineage run with FAIL
            message = exc.description if isinstance(exc, dg.Failure) else None
            lineage.fail(message or f"{type(exc).__name__}: {exc}", result)
            step_ended(run_id, step_key, StepEnd(asset, False, outcomes=result.outcomes if result else []))
            raise
        except BaseException as exc:  # an interrupt (Dagster raises its own on SIGINT and SIGTERM): the run stops
            if not isinstance(exc, GeneratorExit):  # (Dagster closing the step, not an interrupt)
                step_ended(run_id, step_key, StepEnd(asset, False, interrupted=True))
            raise
        lineage.complete(result)
        step_ended(run_id, step_key, StepEnd(asset, True, rows, result.outcomes))

    extra = ENGINE_EXTRAS.get(engine_key)
    absent = missing(extra) if extra else None
    if extra and absent:  # the step fails naming the extra; nothing of the engine is imported
        unavailable = MissingExtra(extra, absent, f"{'/'.join(table.key)} ({table.contract_path})")

        @dg.multi_asset(name=step_key, specs=specs, check_specs=check_specs)
        def _unavailable(context: dg.AssetExecutionContext):
            raise step_failure(table, unavailable, context.retry_number, 0)

        return _unavailable

    if engine_key == "dbt":
        from mesh_assets.orchestration.dbt_assets import dbt_model_asset

        return dbt_model_asset(mesh, table, spec, check_specs, step, retry_policy(settings))

    @dg.multi_asset(name=step_key, specs=specs, check_specs=check_specs,
                    retry_policy=retry_policy(settings), required_resource_keys={"duckdb", "ports", engine_key},
                    backfill_policy=backfill_policy(table.partitioning))
    def _materialize(context: dg.AssetExecutionContext):
        yield from step(context, getattr(context.resources, engine_key))

    return _materialize


def backfill_policy(partitioning: Partitioning | None) -> dg.BackfillPolicy | None:
    """How Dagster runs a backfill of a partitioned table (docs/partitions.md): of time partitions, one run over
    the range (one query, not one per partition); of static or multi partitions, one run per partition (a
    backfill of 5 regions is 5 runs, of 12 months × 5 regions 60 runs). ``None`` for an unpartitioned table."""
    if partitioning is None:
        return None
    if partitioning.static is None:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


def retry_policy(settings: MeshSettings) -> dg.RetryPolicy | None:
    """Every step's retry policy from ``mesh.yaml`` ``retries`` (None when ``max_retries`` is 0). A step fails
    with :func:`step_failure`, which the policy retries only for a transient error."""
    retries = settings.retries
    if retries.max_retries == 0:
        return None
    return dg.RetryPolicy(max_retries=retries.max_retries, delay=retries.delay_seconds,
                          backoff=dg.Backoff.EXPONENTIAL if retries.backoff == "exponential" else dg.Backoff.LINEAR,
                          jitter={"plus_minus": dg.Jitter.PLUS_MINUS, "full": dg.Jitter.FULL,
                                  "none": None}[retries.jitter])


def step_failure(table: Table, exc: Exception, attempt: int, max_retries: int) -> dg.Failure:
    """The ``dg.Failure`` a step raises for ``exc``, whatever its stage and engine. Its description is the real
    error, for people: a :class:`MeshError`'s message (the table, the file, the line when known, the fix), or
    the engine's message with the table and its contract. Only a transient error
    (:func:`mesh_assets.errors.is_transient`) lets the retry policy run the step again, and not on its last
    attempt (``attempt``: 0 for the first, ``max_retries`` from ``mesh.yaml``): Dagster would then report only
    "Exceeded max_retries", so the last attempt fails with the error itself and the number of attempts."""
    if isinstance(exc, MeshError):
        message = str(exc)
    else:
        message = (f"{'/'.join(table.key)} ({table.contract_path}) failed: {type(exc).__name__}: "
                   f"{error_message(exc)}. Nothing was published; the previous snapshot stays current")
    transient = is_transient(exc)
    retry = transient and attempt < max_retries
    if transient and not retry:
        message += (f". A transient error: failed on each of {attempt + 1} attempt(s) (mesh.yaml "
                    f"retries.max_retries: {max_retries}); check the storage, the network or the memory limit")
    return dg.Failure(description=message, allow_retries=retry)


def _rejects_spec(table: Table, product: DataProduct, domain: Domain, key: dg.AssetKey, engine: str,
                  partitions_def: dg.PartitionsDefinition | None = None) -> dg.AssetSpec:
    return dg.AssetSpec(
        dg.AssetKey(list(rejects_key(table))),
        deps=[key],
        description=f"Records of {table.source.path if table.source else 'the source'} that {table.name} "
                    "could not read with its contract's types: file, line, raw line and reason.",
        group_name=domain.name,
        owners=[f"team:{product.team}"],
        kinds={engine, "parquet"},
        tags={LAYER_TAG: table.layer, PRODUCT_TAG: product.name, VISIBILITY_TAG: "private"},
        metadata={"dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, ctype) for name, ctype in REJECTS_COLUMNS.items()])},
        partitions_def=partitions_def,  # materialized by the table's step: one multi-asset has one partitioning
    )


def product_quality_score(table: Table, product: DataProduct, outcomes: list[CheckOutcome],
                          storage: PortStorage, weights: dict[str, float]) -> float:
    """The data product's quality score (0–1): passed checks weighted by severity over all checks, for this
    table's new results and the current snapshot of each other table of the product (recorded at publication).
    Tables never published count as nothing. 1 when there is no check."""
    passed, total = weighted_passes(outcomes, weights)
    for other in product.tables:
        if other.key != table.key:
            quality = (storage.port(other.key).current() or {}).get("quality") or {}
            passed, total = passed + quality.get("passed", 0), total + quality.get("total", 0)
    return round(passed / total, 4) if total else 1.0


def _failure(outcome: CheckOutcome) -> Any:
    """What a failed check found, in a few words: its failing rows, problems, error or observed value."""
    for name in ("failing_rows", "problems", "error", "observed_value"):
        if name in outcome.metadata:
            return outcome.metadata[name]
    return None


def _first_reject(result: "TableResult") -> str:
    """When ``rejected_rows`` blocks publishing: the first rejected record's file, line and reason (which names
    the fix), and where the others are."""
    rejected = next((o for o in result.failed_blocking if o.name == "rejected_rows"), None)
    if rejected is None or not rejected.metadata.get("sample"):
        return ""
    first = rejected.metadata["sample"][0]
    return (f" First rejected record: {first.get('file')} line {first.get('line_number')}: "
            f"{str(first.get('reason') or first.get('error_types'))[:1000]}. Every rejected record, with its "
            "reason, is in the table's __rejects port.")


# the materialization metadata of a range run recorded on its last partition's event only (the latest one, which
# mesh status, mesh checks and the catalog read): what describes the step, not each partition
RANGE_METADATA_ONCE = ("sql", "transform", "profile", "dagster/column_lineage", "masked_inputs")


def _materialization_metadata(result: "TableResult", settings, product_score: float) -> dict[str, Any]:
    passed, total = weighted_passes(result.outcomes, settings.checks.severity_weights)
    metadata: dict[str, Any] = {
        "dagster/row_count": result.rows,
        "snapshot": result.metadata["snapshot"],
        "dagster/uri": result.metadata["port"],
        "transform": result.metadata["transform"],
        "sql": dg.MetadataValue.md(f"```{result.metadata.get('language', 'sql')}\n{result.metadata['sql']}\n```"),
        "quality_score": round(passed / total, 4) if total else 1.0,
        "product_quality_score": product_score,
        "checks_passed": sum(o.passed for o in result.outcomes),
        "checks_failed": sum(not o.passed for o in result.outcomes),
    }
    for name in ("iceberg_table", "iceberg_snapshot_id", "commit_seconds",  # the port's Iceberg commit
                 "partition", "table_rows"):  # a partition's publication: its key(s), the table's rows after it
        if result.metadata.get(name) is not None:
            metadata[name] = result.metadata[name]
    if result.metadata.get("masked_inputs"):
        metadata["masked_inputs"] = dg.MetadataValue.json(result.metadata["masked_inputs"])
    if result.metadata.get("column_lineage"):
        metadata["dagster/column_lineage"] = result.metadata["column_lineage"]
    if result.profile is not None:
        metadata["profile"] = profile_metadata(result.profile)
    return metadata


def _check_result(key: dg.AssetKey, outcome: CheckOutcome) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {}
    for name, value in outcome.metadata.items():
        if name == "sql":
            metadata[name] = dg.MetadataValue.md(f"```sql\n{value}\n```")
        elif isinstance(value, (dict, list)):
            metadata[name] = dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
        else:
            metadata[name] = value
    severity = dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(asset_key=key, check_name=outcome.name, passed=outcome.passed, severity=severity,
                               metadata=metadata, description=outcome.description)


def domain_assets(mesh: Mesh, domain: Domain) -> list[dg.AssetsDefinition]:
    """Every table of every data product of ``domain`` as an asset."""
    return [table_asset(mesh, domain, p, t) for p in domain.products for t in p.tables]
