"""OpenLineage events of every step: ``START`` before a table is built, then ``COMPLETE`` or ``FAIL``.

Events follow the OpenLineage spec 2-0-2 (``RunEvent``) as modelled by ``openlineage-python`` 1.54
(``openlineage.client.event_v2``, ``facet_v2``) and are sent through its transports (``FileTransport``,
``HttpTransport``, ``ConsoleTransport``), configured by ``mesh.yaml`` ``openlineage`` (:class:`OpenLineageSettings`).

One step materializes one table, so one OpenLineage run is one table's step:

- job: namespace = the mesh's ``name``, name = ``<domain>.<layer>.<table>``; facet ``jobType`` (BATCH, DAGSTER,
  ASSET) and, once the step knows it, ``sql`` (the query the step ran, DuckDB dialect; on Spark the query as
  written, before translation) or ``sourceCode`` (a Python transform's file);
- run: id = :func:`step_run_id` (a UUID derived from the Dagster run id and the asset key); facets ``parent`` (the
  Dagster run, job = the Dagster job's name, also given as ``root``), ``processing_engine`` (Dagster's version),
  ``errorMessage`` on ``FAIL``;
- inputs: every port the step reads (the SQL's inputs and the tables its foreign keys check), namespace = the
  storage root as a URL (``file:///…/lake``, ``s3://bucket/lake``), name = ``<domain>/<layer>/<table>``, with
  facets ``schema`` (the producer contract's columns) and ``dataSource``; a bronze table reads the landing-zone
  files instead (namespace ``file`` and the absolute path, or ``<scheme>://<bucket>`` and the key);
- outputs: the table's port, with ``schema`` (contract columns and DuckDB types; bronze adds the lineage
  columns) and ``dataSource``; after the work also ``columnLineage`` (from the step's ``dagster/column_lineage``),
  ``dataQualityAssertions`` (one assertion per check) and, on ``COMPLETE``, ``version`` (the published snapshot
  id) and the output facet ``outputStatistics`` (rows). A bronze table also outputs its ``__rejects`` port.

``dataQualityAssertions`` sits in the output dataset's ``facets``: the checks ran on that output. The published
facet schema (1-1-0) types it as an input facet; the spec is moving it to a dataset facet (OpenLineage PR #4845).

Emission never fails a step: building or sending an event that raises is logged as a warning on the step's
log, and the step goes on. ``OPENLINEAGE_DISABLED=true`` turns emission off, as in every OpenLineage client.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mesh_assets.contract.model import LINEAGE_COLUMNS, Table
from mesh_assets.engine.ingestion import REJECTS_COLUMNS, rejects_key, source_files
from mesh_assets.errors import MeshError
from mesh_assets.settings import MeshSettings
from mesh_assets.sql.inputs import InputRef

if TYPE_CHECKING:
    from openlineage.client.client import OpenLineageClient
    from openlineage.client.event_v2 import InputDataset, OutputDataset, RunEvent
    from openlineage.client.transport import Transport

    from mesh_assets.engine.write_audit_publish import TableResult
    from mesh_assets.contract.mesh import Mesh

EVENTS_FILE = "events.jsonl"
# After a send fails, this process skips sending for this long: a receiver that is down would otherwise cost
# every event its timeout and retries (about 0.7 s each against a refused port with 2 retries).
PAUSE_SECONDS = 60.0
_paused_until: dict[str, float] = {}  # transport → time.monotonic() until which sends are skipped
# Fixed namespace of step run ids: the same Dagster run and asset key always give the same OpenLineage run id.
_RUN_ID_NAMESPACE = uuid.UUID("8f4e2f0e-5a31-5b3e-9d1c-6f1f3c7a2b10")


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("mesh-assets")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _producer() -> str:
    """The ``producer`` URI of events and facets."""
    return f"urn:mesh-assets:{_version()}"


def step_run_id(dagster_run_id: str, key: Sequence[str]) -> str:
    """The OpenLineage run id of the step of ``key`` in Dagster run ``dagster_run_id``: a UUID version 5 of
    ``<run id>/<domain>/<layer>/<table>``, so START and COMPLETE or FAIL (and any re-emission) share it."""
    return str(uuid.uuid5(_RUN_ID_NAMESPACE, f"{dagster_run_id}/{'/'.join(key)}"))


def _as_uuid(run_id: str) -> str:
    """Dagster run ids are UUIDs already; anything else is mapped to one, as OpenLineage requires."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(_RUN_ID_NAMESPACE, run_id))


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def port_namespace(storage_url: str) -> str:
    """The OpenLineage namespace of the mesh's ports: the storage root as a URL, without credentials
    (``/data/lake`` → ``file:///data/lake``; ``s3://bucket/lake`` stays)."""
    return _without_credentials(storage_url) if "://" in storage_url else Path(storage_url).as_uri()


def file_dataset_id(path: str) -> tuple[str, str]:
    """``(namespace, name)`` of a landing-zone file, after OpenLineage's dataset naming: ``("file", <absolute
    path>)`` locally, ``("<scheme>://<bucket>", <key>)`` on an object store."""
    if "://" not in path:
        return "file", str(Path(path).resolve())
    parts = urlsplit(_without_credentials(path))
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def build_transport(settings: MeshSettings) -> Transport | None:
    """The transport ``mesh.yaml`` ``openlineage`` asks for, or None for ``transport: none``.

    ``file`` appends to ``<file.path>/events.jsonl`` (the folder is created); ``http`` posts to ``http.url`` +
    ``http.endpoint`` with ``http.timeout`` seconds per request and ``http.retries`` retries, and a bearer token
    from the variable ``http.api_key_env`` when it is set.

    Raises:
        ValueError: an HTTP URL the client does not accept.
        OSError: the events folder cannot be created.
    """
    config = settings.openlineage
    if config.transport == "none":
        return None
    if config.transport == "console":
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

        return ConsoleTransport(ConsoleConfig())
    if config.transport == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        folder = settings.openlineage_path
        if "://" not in folder:
            os.makedirs(folder, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=f"{folder}/{EVENTS_FILE}", append=True))
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    http = config.http
    params: dict[str, Any] = {"url": http.url, "endpoint": http.endpoint, "timeout": http.timeout,
                              "retry": {"total": http.retries, "connect": http.retries, "read": http.retries}}
    api_key = os.environ.get(http.api_key_env)
    if api_key:
        params["auth"] = {"type": "api_key", "apiKey": api_key}
    return HttpTransport(HttpConfig.from_dict(params))


class StepLineage:
    """The OpenLineage run of one table's step: call :meth:`start` before the work, then :meth:`complete` or
    :meth:`fail`. No method raises: failures are reported through ``log.warning``.

    Args:
        mesh: the mesh (for the mesh name, the storage root and the contracts of the ports read).
        table: the table the step builds.
        reads: the ports the step reads (SQL inputs and foreign-key targets; the table itself is skipped).
        dagster_run_id, dagster_job: the Dagster run and job the step belongs to (the ``parent`` facet).
        log: the step's logger (``context.log``); only ``warning`` is called.
    """

    def __init__(self, mesh: Mesh, table: Table, reads: Iterable[InputRef], *, dagster_run_id: str,
                 dagster_job: str, log: Any):
        self._mesh, self._table, self._log = mesh, table, log
        self._settings = mesh.settings
        self._reads = list({ref.key: ref for ref in reads if ref.key != table.key}.values())
        self._dagster_run_id, self._dagster_job = _as_uuid(dagster_run_id), dagster_job
        self._run_id = step_run_id(dagster_run_id, table.key)
        self._job_name = ".".join(table.key)
        self._namespace = port_namespace(self._settings.storage_url)
        self._client: OpenLineageClient | None = None
        self._broken = False  # no transport (``none``, or it could not be built): nothing more is tried
        self._skipped = False  # events skipped while the transport is paused (see PAUSE_SECONDS)
        self._inputs: list[InputDataset] | None = None

    def start(self) -> None:
        """Emit ``START``: the inputs and outputs with their schemas, before anything is read."""
        self._emit("START", lambda: self._event("START"))

    def complete(self, result: TableResult) -> None:
        """Emit ``COMPLETE`` for a published ``result``: row counts, column lineage, checks, snapshot id."""
        self._emit("COMPLETE", lambda: self._event("COMPLETE", result))

    def fail(self, message: str, result: TableResult | None = None) -> None:
        """Emit ``FAIL`` with ``message`` as ``errorMessage``, and the checks of ``result`` when the step got
        that far (a blocking check failed)."""
        self._emit("FAIL", lambda: self._event("FAIL", result, message))

    def _emit(self, event_type: str, build: Any) -> None:
        if self._broken:
            return
        target = f"{self._settings.openlineage.transport}:{self._settings.openlineage.http.url}"
        if time.monotonic() < _paused_until.get(target, 0.0):
            if not self._skipped:  # one line per step
                self._log.warning(f"OpenLineage: events of {self._job_name} skipped: the "
                                  f"{self._settings.openlineage.transport} transport failed less than "
                                  f"{PAUSE_SECONDS:.0f} s ago")
            self._skipped = True
            return
        try:
            if self._client is None:
                transport = build_transport(self._settings)
                if transport is None:
                    self._broken = True
                    return
                from openlineage.client.client import OpenLineageClient

                self._client = OpenLineageClient(transport=transport)
            self._client.emit(build())
        except Exception as exc:  # lineage is a by-product: never let it fail the materialization
            if self._client is None:
                self._broken = True  # one warning per step is enough when there is no transport at all
            else:
                _paused_until[target] = time.monotonic() + PAUSE_SECONDS
                self._skipped = True  # this step's later events are skipped without another warning
            self._log.warning(f"OpenLineage: {event_type} event of {self._job_name} not sent "
                              f"({self._settings.openlineage.transport} transport): {type(exc).__name__}: {exc}")

    def _event(self, event_type: str, result: TableResult | None = None, message: str | None = None) -> RunEvent:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run, job_type_job, source_code_job, sql_job

        producer = _producer()
        job_facets: dict[str, Any] = {"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="DAGSTER", jobType="ASSET", producer=producer)}
        if result is not None and result.metadata.get("language") == "python":
            job_facets["sourceCode"] = source_code_job.SourceCodeJobFacet(
                language="python", sourceCode=result.metadata["sql"], producer=producer)
        elif result is not None and result.metadata.get("sql"):
            job_facets["sql"] = sql_job.SQLJobFacet(query=result.metadata["sql"], dialect="duckdb", producer=producer)
        run_facets = self._run_facets()
        if message is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=message, programmingLanguage="python", producer=producer)
        return RunEvent(
            eventType=RunState(event_type),
            eventTime=dt.datetime.now(dt.timezone.utc).isoformat(),
            run=Run(runId=self._run_id, facets=run_facets),
            job=Job(namespace=self._settings.name, name=self._job_name, facets=job_facets),
            inputs=self._input_datasets(),
            outputs=self._output_datasets(event_type, result),
            producer=producer,
        )

    def _run_facets(self) -> dict[str, Any]:
        import dagster
        from openlineage.client.facet_v2 import parent_run, processing_engine_run

        producer = _producer()
        namespace, name = self._settings.name, self._dagster_job
        parent = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=self._dagster_run_id), job=parent_run.Job(namespace=namespace, name=name),
            root=parent_run.Root(run=parent_run.RootRun(runId=self._dagster_run_id),
                                 job=parent_run.RootJob(namespace=namespace, name=name)),
            producer=producer)
        engine = processing_engine_run.ProcessingEngineRunFacet(
            version=dagster.__version__, name="Dagster", openlineageAdapterVersion=_version(),
            producer=producer)
        return {"parent": parent, "processing_engine": engine}

    def _input_datasets(self) -> list[InputDataset]:
        from openlineage.client.event_v2 import InputDataset

        if self._inputs is not None:
            return self._inputs
        inputs = []
        for ref in self._reads:
            read = self._table_of(ref.key)
            facets = (self._dataset_facets(read.output_columns, _descriptions(read)) if read is not None
                      else self._dataset_facets(None))
            inputs.append(InputDataset(namespace=self._namespace, name="/".join(ref.key), facets=facets))
        if self._table.layer == "bronze" and self._table.source is not None:
            landing = self._settings.landing_path
            try:
                files = source_files(self._table, landing)
            except MeshError:  # nothing landed: the step fails on it; name the glob it looked for
                files = [os.path.join(landing, self._table.source.path)]
            source = port_namespace(landing)
            columns = {c.name: c.physical_type for c in self._table.columns}
            for path in files:
                namespace, name = file_dataset_id(path)
                inputs.append(InputDataset(namespace=namespace, name=name,
                                           facets=self._dataset_facets(columns, _descriptions(self._table), source)))
        self._inputs = inputs
        return inputs

    def _output_datasets(self, event_type: str, result: TableResult | None) -> list[OutputDataset]:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import dataset_version_dataset
        from openlineage.client.facet_v2 import output_statistics_output_dataset as statistics

        producer = _producer()
        facets = self._dataset_facets(self._table.output_columns, _descriptions(self._table))
        output_facets: dict[str, Any] = {}
        if result is not None:
            lineage = self._column_lineage(result)
            if lineage is not None:
                facets["columnLineage"] = lineage
            facets["dataQualityAssertions"] = self._assertions(result)
            if event_type == "COMPLETE":
                if result.snapshot_id:
                    facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                        datasetVersion=result.snapshot_id, producer=producer)
                output_facets["outputStatistics"] = statistics.OutputStatisticsOutputDatasetFacet(
                    rowCount=result.rows, producer=producer)
        outputs = [OutputDataset(namespace=self._namespace, name="/".join(self._table.key), facets=facets,
                                 outputFacets=output_facets)]
        if self._table.layer == "bronze":
            rejects_facets: dict[str, Any] = {}
            if event_type == "COMPLETE" and result is not None and result.rejects is not None:
                rejects_facets["outputStatistics"] = statistics.OutputStatisticsOutputDatasetFacet(
                    rowCount=result.rejects[1], producer=producer)
            outputs.append(OutputDataset(namespace=self._namespace, name="/".join(rejects_key(self._table)),
                                         facets=self._dataset_facets(REJECTS_COLUMNS), outputFacets=rejects_facets))
        return outputs

    def _table_of(self, key: tuple[str, str, str]) -> Table | None:
        try:
            return self._mesh.domain(key[0]).table(key[1], key[2])
        except MeshError:  # a port whose contract no longer loads: its dataset goes without a schema
            return None

    def _dataset_facets(self, columns: dict[str, str] | None, descriptions: dict[str, str] | None = None,
                        source: str | None = None) -> dict[str, Any]:
        from openlineage.client.facet_v2 import datasource_dataset, schema_dataset

        producer = _producer()
        source = source or self._namespace
        facets: dict[str, Any] = {"dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=source, uri=source, producer=producer)}
        if columns is not None:
            descriptions = descriptions or {}
            facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
                schema_dataset.SchemaDatasetFacetFields(name=name, type=ctype, description=descriptions.get(name),
                                                        ordinal_position=position)
                for position, (name, ctype) in enumerate(columns.items(), start=1)], producer=producer)
        return facets

    def _column_lineage(self, result: TableResult) -> Any:
        from openlineage.client.facet_v2 import column_lineage_dataset as cl

        lineage = result.metadata.get("column_lineage")
        if lineage is None or not lineage.deps_by_column:
            return None
        fields = {column: cl.Fields(inputFields=[
            cl.InputField(namespace=self._namespace, name="/".join(dep.asset_key.path), field=dep.column_name)
            for dep in deps]) for column, deps in lineage.deps_by_column.items()}
        return cl.ColumnLineageDatasetFacet(fields=fields, producer=_producer())

    def _assertions(self, result: TableResult) -> Any:
        from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

        rules = {rule.name: rule for rule in self._table.rules}
        assertions = []
        for outcome in result.outcomes:
            rule = rules.get(outcome.name)
            metadata = outcome.metadata
            actual = metadata.get("failing_rows", metadata.get("observed_value"))
            assertions.append(dq.Assertion(
                assertion=rule.kind if rule else outcome.name,
                success=outcome.passed,
                column=rule.columns[0] if rule and len(rule.columns) == 1 else None,
                severity=outcome.severity,
                name=outcome.name,
                description=outcome.description or None,
                expected=str(metadata["expectation"]) if "expectation" in metadata else None,
                actual=None if actual is None else str(actual),
                content=metadata.get("sql"),
                contentType="sql" if metadata.get("sql") else None,
            ))
        return dq.DataQualityAssertionsDatasetFacet(assertions=assertions, producer=_producer())


def _descriptions(table: Table) -> dict[str, str]:
    described = {c.name: c.description for c in table.columns if c.description}
    if table.layer == "bronze":
        described |= {name: "lineage column added by ingestion" for name in LINEAGE_COLUMNS}
    return described
