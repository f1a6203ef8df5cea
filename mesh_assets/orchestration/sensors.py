"""A domain's sensors, run by the Dagster daemon (docs/operations.md), all RUNNING by default:

- ``<domain>_landing_zone``: new or changed source files in the landing zone, once they stopped changing,
  start an ingestion run of the bronze tables that read them, with the file names in the run tags; a partitioned
  table's run covers the landed partitions (one run per stretch of consecutive ones) and builds the same
  partitions of the domain's partitioned tables downstream of it. The domain's cron
  ingestion schedule (``domain.yaml`` ``ingestion_schedule``, an automation condition of each bronze table) stays the
  fallback.
- ``<domain>_run_failure_alert``: a failed run of the domain's code location alerts the teams owning the
  failed steps' tables (mesh_assets.orchestration.alerts).
- ``<domain>_freshness_alert``: a table whose latest materialization fails its freshness policy (judged at each
  tick: mesh_assets.orchestration.freshness.freshness_state) alerts its owning team once, and again when it
  recovers (PASS).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import fsspec

from mesh_assets.contract.mesh import Domain
from mesh_assets.contract.model import Table
from mesh_assets.engine.ingestion import rejects_key
from mesh_assets.orchestration.alerts import Alert, send_alert
from mesh_assets.orchestration.assets import RANGE_END_TAG, RANGE_START_TAG, partitions_definition
from mesh_assets.orchestration.freshness import freshness_policy, freshness_state, layer_default_slas
from mesh_assets.settings import MeshSettings

LANDING_FILES_TAG, TRIGGER_TAG = "mesh/landing_files", "mesh/trigger"
_TAG_LIMIT = 2000  # characters of the file list kept in the run tag


def landed_files(table: Table, landing_zone: str) -> dict[str, list[float]]:
    """The landing-zone files matching the bronze ``table``'s ``source.path`` glob: path relative to the
    landing zone → ``[size in bytes, modification time in seconds since the epoch]``. Empty when none match.
    ``landing_zone`` is a folder or an fsspec URL (``s3://…``)."""
    assert table.source is not None
    fs, base = fsspec.core.url_to_fs(landing_zone)
    base = base.rstrip("/")
    files = {}
    for path, info in fs.glob(f"{base}/{table.source.glob(table.partitioning)}", detail=True).items():
        if info.get("type") == "directory":
            continue
        files[path[len(base) + 1:] if path.startswith(base + "/") else path] = [info.get("size") or 0,
                                                                               _modified(info)]
    return files


def _modified(info: dict[str, Any]) -> float:
    """A file's modification time from fsspec's ``info`` (local ``mtime``, S3 ``LastModified``, GCS ``updated``)."""
    value = info.get("mtime", info.get("LastModified", info.get("updated", info.get("last_modified", 0))))
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value or 0)


def changed_files(table: Table, files: dict[str, list[float]], seen: dict[str, list[float]] | None,
                  last_materialized: float | None) -> list[str]:
    """The files of ``table`` to ingest: those whose size or time differs from ``seen`` (what the sensor last
    requested a run for). Before the sensor has seen the table (``seen`` None), those modified after the
    table's last materialization (``last_materialized``, seconds since the epoch; None: never)."""
    if seen is None:
        return sorted(f for f, (_, modified) in files.items() if last_materialized is None
                      or modified > last_materialized)
    return sorted(f for f, fingerprint in files.items() if seen.get(f) != fingerprint)


def partitioned_followers(graph: Any, domain: str) -> dict[dg.AssetKey, list[dg.AssetKey]]:
    """Of each partitioned bronze asset of ``domain`` in the asset graph ``graph`` (``Definitions.
    resolve_asset_graph()``), the assets of the same domain downstream of it, through assets with the same
    partitions definition only (silver and gold months of the same partitioning) that read no port of another
    domain: what the landing sensor's run builds with the landed partitions, as ``mesh run --from/--to`` does.
    Another domain's port may be being rebuilt by its own code location's runs from the same landing (a whole
    data set landed at once), so a table reading one is left to automation, which waits for it and runs every
    updated partition in one backfill (mesh_assets.orchestration.assets), as it does the unpartitioned
    consumers."""
    followers: dict[dg.AssetKey, list[dg.AssetKey]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        partitions_def = node.partitions_def
        if key.path[0] != domain or len(key.path) != 3 or key.path[1] != "bronze" or partitions_def is None:
            continue
        found: list[dg.AssetKey] = []
        stack = sorted(node.child_keys, key=lambda k: k.path)
        while stack:
            child = stack.pop(0)
            if (child in found or child.path[0] != domain or not graph.has(child)
                    or graph.get(child).partitions_def != partitions_def
                    or any(parent.path[0] != domain for parent in graph.get(child).parent_keys)):
                continue
            found.append(child)
            stack.extend(sorted(graph.get(child).child_keys, key=lambda k: k.path))
        followers[key] = found
    return followers


def landing_zone_sensor(domain: Domain, settings: MeshSettings,
                        jobs: list[tuple[dg.UnresolvedAssetJobDefinition, frozenset[dg.AssetKey]]],
                        followers: dict[dg.AssetKey, list[dg.AssetKey]] | None = None) -> dg.SensorDefinition:
    """The sensor starting the domain's ingestion ``jobs`` (each with the asset keys it selects: one job per
    partitions definition, mesh_assets.orchestration.definitions.ingestion_jobs) for the bronze tables whose
    landed files are new or changed, each run in the job selecting its assets; a partitioned bronze table's run
    also builds its ``followers`` (:func:`partitioned_followers`) for the same partitions. Its cursor keeps each
    table's files as last requested; the run key is a digest of the files, so one landing never starts two runs.
    A file modified less than ``automation.landing_settle_seconds`` ago is taken to be still landing: its table
    waits for a later tick, so a half-written file is never ingested. A run that fails is not requested again
    until the files change (the cron schedule retries)."""
    tables = [t for t in domain.tables if t.layer == "bronze" and t.source is not None]

    @dg.sensor(name=f"{domain.name}_landing_zone", jobs=[job for job, _ in jobs],
               default_status=dg.DefaultSensorStatus.RUNNING,
               minimum_interval_seconds=settings.automation.landing_interval_seconds,
               description=f"Starts ingestion of domain {domain.name} when files land in "
                           f"{settings.landing_path} "
                           f"({', '.join(t.source.path for t in tables)}).")  # type: ignore[union-attr]
    def _sensor(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        current: dict[str, dict[str, list[float]]] = {}
        landing: list[str] = []
        # (partitioning, partition) → (assets, files); (None, None): the unpartitioned tables
        requests: dict[tuple[Any, str | None], tuple[list[dg.AssetKey], list[str]]] = {}
        settled = time.time() - settings.automation.landing_settle_seconds
        for table in tables:
            name = "/".join(table.key)
            files = landed_files(table, settings.landing_path)
            if any(modified > settled for _, modified in files.values()):  # still being written: next tick
                landing.append(table.source.path)  # type: ignore[union-attr]
                if name in seen:
                    current[name] = seen[name]
                continue
            current[name] = files
            last = None
            if name not in seen:
                event = context.instance.get_latest_materialization_event(dg.AssetKey(list(table.key)))
                last = event.timestamp if event is not None else None
            files = changed_files(table, current[name], seen.get(name), last)
            table_keys = [dg.AssetKey(list(table.key)), dg.AssetKey(list(rejects_key(table)))]
            if table.partitioning is not None:
                table_keys += (followers or {}).get(table_keys[0], [])
            for path in files:  # a partitioned table's files start the runs of their partitions only
                partition = (table.source.partition_of(path, table.partitioning)  # type: ignore[union-attr]
                             if table.partitioning is not None else None)
                if table.partitioning is not None and partition is None:
                    continue  # no valid {month}, {date} or static value in its path: no partition to run
                keys, changed = requests.setdefault((table.partitioning, partition), ([], []))
                keys.extend(k for k in table_keys if k not in keys)
                changed.append(path)
        context.update_cursor(json.dumps(current, sort_keys=True))
        if not requests:
            waiting = f"; waiting for {', '.join(landing)} to settle" if landing else ""
            return dg.SkipReason(f"no new or changed file for the {len(tables)} bronze table(s) of "
                                 f"{domain.name}{waiting}")
        return [_landing_request(current, keys, changed, partitions,
                                 next(job.name for job, selected in jobs if set(keys) <= selected))
                for partitions, keys, changed in _consecutive_ranges(requests)]

    return _sensor


def _consecutive_ranges(requests: dict[tuple[Any, str | None], tuple[list[dg.AssetKey], list[str]]]
                       ) -> list[tuple[tuple[str, str] | None, list[dg.AssetKey], list[str]]]:
    """The landing sensor's ``requests`` (keyed by a table's partitioning and a partition key; ``(None, None)`` for
    the unpartitioned tables) merged into runs: for each partitioning, every stretch of consecutive landed
    partitions becomes one run over the range ``(first, last)`` (inclusive), with the union of their assets and
    files, so a data set landed at once (80 months) starts one single-run backfill, not 80 runs; a static or
    multi partition is one run of its own (their backfill policy, mesh_assets.orchestration.assets). The
    unpartitioned tables' run comes first (``None``); the rest in order of partitioning and key. A partition
    outside the table's declared partitions (before its ``start``, from its ``end``) starts no run."""
    merged: list[tuple[tuple[str, str] | None, list[dg.AssetKey], list[str]]] = []
    if (None, None) in requests:
        merged.append((None, *requests[(None, None)]))
    by_partitioning: dict[Any, list[str]] = {}
    for partitioning, partition in requests:
        if partitioning is not None:
            by_partitioning.setdefault(partitioning, []).append(partition)  # type: ignore[arg-type]
    for partitioning, landed in sorted(by_partitioning.items(), key=lambda p: repr(p[0])):
        order = {key: i for i, key in enumerate(partitions_definition(partitioning).get_partition_keys())}
        run: list[str] = []
        for key in sorted((k for k in landed if k in order), key=order.__getitem__):  # outside the range: no run
            if run and (order[key] != order[run[-1]] + 1 or partitioning.static is not None):
                merged.append(_range_of(requests, partitioning, run))
                run = []
            run.append(key)
        if run:
            merged.append(_range_of(requests, partitioning, run))
    return merged


def _range_of(requests: dict[tuple[Any, str | None], tuple[list[dg.AssetKey], list[str]]], partitioning: Any,
              run: list[str]) -> tuple[tuple[str, str], list[dg.AssetKey], list[str]]:
    keys: list[dg.AssetKey] = []
    changed: list[str] = []
    for partition in run:
        more_keys, more_files = requests[(partitioning, partition)]
        keys.extend(k for k in more_keys if k not in keys)
        changed.extend(more_files)
    return (run[0], run[-1]), keys, changed


def _landing_request(current: dict[str, dict[str, list[float]]], keys: list[dg.AssetKey], changed: list[str],
                     partitions: tuple[str, str] | None, job_name: str) -> dg.RunRequest:
    """The run of ``keys`` (in the job ``job_name``) for the ``changed`` files: of the partitions ``first`` to
    ``last`` (one partition: its key; several: Dagster's partition-range tags, one run for the range, as a
    single-run backfill), or of unpartitioned tables (``None``); its run key a digest of those files' fingerprints in
    ``current``, so one landing never starts two runs."""
    listed = ", ".join(sorted(set(changed)))
    if len(listed) > _TAG_LIMIT:
        listed = f"{listed[:_TAG_LIMIT]}… ({len(set(changed))} files)"
    fingerprint = {f: current[n][f] for n in current for f in current[n] if f in changed}
    tags = {LANDING_FILES_TAG: listed, TRIGGER_TAG: "landing_zone"}
    single = partitions[0] if partitions is not None and partitions[0] == partitions[1] else None
    if partitions is not None and single is None:
        tags |= {RANGE_START_TAG: partitions[0], RANGE_END_TAG: partitions[1]}
    return dg.RunRequest(
        run_key=hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:32],
        asset_selection=keys, partition_key=single, tags=tags, job_name=job_name,
    )


def run_failure_alert_sensor(domain: Domain, settings: MeshSettings) -> dg.SensorDefinition:
    """The sensor alerting, for each failed run of the domain's code location, every team owning a table whose
    step failed (the domain's team when no step failed, e.g. a run that could not start)."""
    teams = {"__".join(t.key): p.team for p in domain.products for t in p.tables}

    @dg.run_failure_sensor(name=f"{domain.name}_run_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING,
                           minimum_interval_seconds=settings.automation.alert_interval_seconds,
                           description=f"Alerts the owning team when a run of domain {domain.name} fails.")
    def _sensor(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        failures: dict[str, list[str]] = {}
        for event in context.get_step_failure_events():
            data = event.step_failure_data
            reason = (data.user_failure_data.description if data.user_failure_data and
                      data.user_failure_data.description else data.error.message if data.error else "failed")
            failures.setdefault(teams.get(event.step_key or "", domain.team), []).append(
                f"{event.step_key}: {reason.strip()}")
        if not failures:
            failures[domain.team] = [context.failure_event.message or "the run failed"]
        for team, steps in failures.items():
            send_alert(Alert("run_failure", team, domain.name,
                             f"run {run.run_id} ({run.job_name}) failed: " + "; ".join(steps),
                             {"run_id": run.run_id, "job": run.job_name, "failed_steps": steps,
                              "tags": dict(run.tags)}), settings.alerts)

    return _sensor


def freshness_alert_sensor(domain: Domain, settings: MeshSettings) -> dg.SensorDefinition:
    """The sensor judging, at each tick, the latest materialization of each table of the domain that has a
    freshness policy against its SLA (read in one batch with the public ``DagsterInstance.get_asset_records``;
    Dagster 1.13 has no public method returning the freshness daemon's state): a move to FAIL alerts the owning
    team once; a later PASS sends a recovery."""
    owners = {dg.AssetKey(list(t.key)): (p.team, t) for p in domain.products for t in p.tables
              if freshness_policy(t, settings, domain.timezone) is not None}

    @dg.sensor(name=f"{domain.name}_freshness_alert", default_status=dg.DefaultSensorStatus.RUNNING,
               minimum_interval_seconds=settings.automation.alert_interval_seconds,
               description=f"Alerts the owning team when a table of domain {domain.name} misses its SLA.")
    def _sensor(context: dg.SensorEvaluationContext):
        alerted = json.loads(context.cursor) if context.cursor else {}
        sent = 0
        now = datetime.now(UTC)
        materialized = {r.asset_entry.asset_key: r.asset_entry.last_materialization
                        for r in context.instance.get_asset_records(list(owners))}
        for key, (team, table) in owners.items():
            event = materialized.get(key)
            updated_at = datetime.fromtimestamp(event.timestamp, UTC) if event is not None else None
            slas = list(table.slas) or layer_default_slas(settings, table.layer)
            name, state = key.to_user_string(), freshness_state(updated_at, slas, now, domain.timezone)
            if state == "FAIL" and alerted.get(name) != "FAIL":
                kind, summary = "freshness", (f"{name} missed its SLA (freshness FAIL: last materialized "
                                              f"{updated_at:%Y-%m-%d %H:%M:%S} UTC)")
            elif state == "PASS" and alerted.get(name) == "FAIL":
                kind, summary = "freshness_recovered", f"{name} is fresh again"
            else:
                continue
            send_alert(Alert(kind, team, domain.name, summary, {"asset": name, "state": state,
                                                                 "contract": str(table.contract_path)}),
                       settings.alerts)
            alerted[name], sent = state, sent + 1
        context.update_cursor(json.dumps(alerted, sort_keys=True))
        return dg.SkipReason(f"{sent} freshness alert(s) sent")

    return _sensor
