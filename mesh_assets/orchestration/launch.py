"""``mesh run --via <webserver URL>``: the mesh's runs launched through a running Dagster webserver, so that each
belongs to its domain's code location and the UI can open and re-execute it (whole or from failure) like a run
it launched itself.

``mesh run`` without ``--via`` executes one in-process run spanning every domain, which the UI shows but cannot
re-execute: Dagster attributes a run to a code location only when it is launched through a workspace (the
webserver, the daemon). Here the assets to run, in dependency order (the same plan as ``mesh run``), are cut
into stretches of one domain each; each stretch is submitted to the domain's code location with Dagster's public
GraphQL client (``DagsterGraphQLClient.submit_job_execution`` on the location's asset job) and waited for before
the next starts. A failed stretch stops the rest, which are reported skipped.

The summary is read from the instance ``mesh run`` opens (the webserver's, when both use the same
``DAGSTER_HOME`` or ``MESH_POSTGRES_URL``): each asset's materialization and audit of the stretch's run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import groupby
from urllib.parse import urlsplit

import dagster as dg
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql.transport.exceptions import TransportConnectionFailed
from rich.console import Console

from mesh_assets.contract.mesh import Mesh
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.audit import audit_checks
from mesh_assets.orchestration.runner import AssetSummary, RunSummary, plan_run

ASSET_JOB = "__ASSET_JOB"        # the job of every asset of a code location (Dagster's implicit asset job)
REPOSITORY = "__repository__"    # the repository of a code location loaded from a Definitions object
DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
POLL_SECONDS = 1.0
QUEUED_NOTICE_SECONDS = 60.0  # a run queued this long: say that the daemon dequeues runs


def domain_stretches(keys: list[dg.AssetKey]) -> list[tuple[str, list[dg.AssetKey]]]:
    """``keys`` (in dependency order) cut into consecutive stretches of one domain (``key.path[0]``): the runs
    to launch, in order. A domain appears more than once when the mesh goes back and forth between domains
    (customers' labels read sales, which reads customers)."""
    return [(domain, list(group)) for domain, group in groupby(keys, key=lambda k: k.path[0])]


def webserver_client(url: str) -> DagsterGraphQLClient:
    """A GraphQL client of the Dagster webserver at ``url`` (``http://host:port``, or ``https://``).

    Raises:
        MeshError: ``url`` is not an http(s) URL with a host, or nothing answers there.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MeshError(f"--via {url!r} is not a webserver URL; give it as http://host:port, e.g. "
                        "http://127.0.0.1:3000 (the address of dagster dev or dagster-webserver)")
    try:
        return DagsterGraphQLClient(parts.hostname, port_number=parts.port, use_https=parts.scheme == "https")
    except DagsterGraphQLClientError as exc:
        raise MeshError(f"cannot reach the webserver at {url} ({exc}); start it with dagster dev -w "
                        "workspace.yaml, or leave out --via to run in this process") from None


def launch_mesh(mesh: Mesh, instance: DagsterInstance, url: str, domains: list[str] | None = None,
                selection: str | None = None, console: Console | None = None,
                sleep: Callable[[float], None] = time.sleep) -> RunSummary:
    """Launch the runs of ``domains`` (default: all) and ``selection`` through the webserver at ``url``, one per
    domain stretch, each waited for; return the summary, whose ``run_id`` lists the launched runs' ids.

    Raises:
        MeshError: what :func:`~mesh_assets.orchestration.runner.plan_run` raises, a bad URL, or a webserver that
            cannot be reached or refuses a run (its message, and the code location it was for).
    """
    console = console or Console(stderr=True)
    _defs, keys, _steps, _tags = plan_run(mesh, domains, selection)  # partitioned assets: mesh run --partition
    client = webserver_client(url)
    summaries = {k.to_user_string(): AssetSummary(k.to_user_string()) for k in keys}
    started, run_ids, failed = time.monotonic(), [], False
    for domain, stretch in domain_stretches(keys):
        if failed:
            break
        try:
            run_id = client.submit_job_execution(ASSET_JOB, repository_location_name=domain,
                                                 repository_name=REPOSITORY, asset_selection=stretch)
            console.print(f"launched run {run_id} in code location {domain}: {len(stretch)} asset(s)")
            status, waited = client.get_run_status(run_id), 0.0
            while status not in DONE:
                sleep(POLL_SECONDS)
                waited += POLL_SECONDS
                status = client.get_run_status(run_id)
                if status == DagsterRunStatus.QUEUED and waited == QUEUED_NOTICE_SECONDS:
                    console.print(f"[yellow]run {run_id} is still queued after {waited:.0f} s:[/] the Dagster "
                                  "daemon starts queued runs (dagster dev runs one; else dagster-daemon run)")
        except DagsterGraphQLClientError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (OSError, TransportConnectionFailed)):  # requests' errors derive from OSError
                raise MeshError(f"cannot reach the webserver at {url} ({type(cause).__name__}); start it with "
                                "dagster dev -w workspace.yaml, or leave out --via to run in this process") from None
            reason = ": ".join(str(a) for a in exc.args) if len(exc.args) == 2 else type(cause).__name__
            raise MeshError(f"the webserver at {url} refused the run of code location {domain} ({reason}); check "
                            "that it loads the mesh's workspace.yaml (dagster dev -w workspace.yaml)") from None
        run_ids.append(run_id)
        for key in stretch:
            _fold(instance, run_id, key, summaries[key.to_user_string()])
        failed = status != DagsterRunStatus.SUCCESS
    success = not failed and all(s.status == "materialized" for s in summaries.values())
    return RunSummary(", ".join(run_ids), success, list(summaries.values()), time.monotonic() - started)


def _fold(instance: DagsterInstance, run_id: str, key: dg.AssetKey, summary: AssetSummary) -> None:
    """``summary`` of ``key`` from what run ``run_id`` recorded: its materialization (rows) and its audit."""
    event = instance.get_latest_materialization_event(key)
    if event is not None and event.run_id == run_id:
        summary.status = "materialized"
        rows = event.asset_materialization.metadata.get("dagster/row_count")  # type: ignore[union-attr]
        summary.rows = getattr(rows, "value", None)
    audits = instance.fetch_observations(key, limit=1).records
    checks = audit_checks(audits[0].event_log_entry) if audits and audits[0].run_id == run_id else None
    if checks is None:
        return
    if summary.status != "materialized":
        summary.status = "failed"
    summary.checks_passed = sum(bool(c["passed"]) for c in checks)
    for check in checks:
        if not check["passed"]:
            rows = check["metadata"].get("failing_rows")
            name = check["check"] + (f" ({rows:,} rows)" if isinstance(rows, int) else "")
            (summary.warnings if check["severity"] == "WARN" else summary.blocking).append(name)
