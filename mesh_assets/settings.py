"""Mesh-wide settings: ``mesh.yaml`` at the mesh root, with environment overrides.

``mesh.yaml`` fields (all optional):

- ``name`` (str): the mesh's name.
- ``domains_dir`` (path, default ``domains``): the folder holding one sub-folder per domain.
- ``storage_root`` (path or fsspec URL, default ``.mesh/lake``; env ``MESH_STORAGE_ROOT``): where ports live.
- ``landing_zone`` (path, default ``.mesh/landing``; env ``MESH_LANDING_ZONE``): where source files land.
- ``retention.snapshots`` (int ≥ 1, default 3): snapshots kept per port, the current one included.
- ``catalog.uri`` (SQLAlchemy URL; env ``MESH_CATALOG_URI`` wins): the Iceberg SQL catalog of the ports, e.g.
  ``postgresql+psycopg2://mesh@db/mesh``; default: the SQLite file ``<storage_root>/catalog.db``, which needs a
  local storage root (mesh_assets.engine.iceberg_catalog).
- ``duckdb.threads`` (int), ``duckdb.memory_limit`` (DuckDB size string such as ``"4GB"``): engine limits;
  ``duckdb.temp_directory`` (path, default ``.mesh/tmp``): where DuckDB spills what exceeds the memory limit.
- ``engine`` (``duckdb`` or ``spark``, default ``duckdb``; env ``MESH_ENGINE``, set by ``mesh run --engine``,
  overrides every choice): the mesh-wide engine; a domain, product or table may choose its own
  (mesh_assets.engine.choice, docs/scaling.md).
- ``spark.master`` (default ``local[*]``; env ``MESH_SPARK_MASTER``) and ``spark.conf`` (any Spark property;
  env ``MESH_SPARK_CONF``, a JSON object, is merged over it): the Spark engine (mesh_assets/engine/spark_engine.py).
- ``checks.sample_rows`` (int, default 10): failing rows kept as a sample per check.
- ``checks.severity_weights`` (default error 3, warning 2, info 1): weights of the product quality score.
- ``schema_drift.<layer>`` (``fail`` or ``warn``, default ``fail``): whether a table whose source (bronze) or
  SQL output (silver, gold) drifted from the contract fails, or is recorded as a warning with the contract's
  columns kept (missing columns null, extra columns dropped, types cast).
- ``ingestion.rejects`` (``warning`` or ``error``, default ``warning``): severity of rejected source records;
  ``ingestion.max_line_size`` (bytes, default 2,000,000): a longer CSV record is rejected (DuckDB engine).
- ``sla_defaults.<layer>``: ODCS ``slaProperties`` applied to tables whose contract has no SLA.
- ``governance``: the policies ``mesh validate`` enforces (see :class:`GovernanceSettings`).
- ``openlineage``: where each step's OpenLineage events go (see :class:`OpenLineageSettings`):
  ``transport`` (``file``, ``http``, ``console`` or ``none``; default ``file``); ``file.path`` (folder, default
  ``.mesh/openlineage``; events are appended to ``events.jsonl`` there, one JSON object per line);
  ``http.url`` (required with ``transport: http``), ``http.endpoint`` (default ``api/v1/lineage``, Marquez's;
  DataHub's is ``openapi/openlineage/api/v1/lineage``), ``http.api_key_env`` (the environment variable holding
  the API key sent as a bearer token, default ``OPENLINEAGE_API_KEY``; never the key itself),
  ``http.timeout`` (seconds per request, default 5), ``http.retries`` (default 2).
- ``automation``: how often each domain's sensors run (see :class:`AutomationSettings`).
- ``retries``: the retry policy of every step for transient failures (see :class:`RetrySettings`).
- ``alerts``: where failed runs and stale ports are reported, per owning team (see :class:`AlertSettings`).
- ``registry.path`` (folder or fsspec URL, default ``.mesh/registry``; env ``MESH_REGISTRY`` wins): the contract
  registry, where ``mesh publish`` registers this mesh's output ports and expectations and where domains that are
  not in ``domains_dir`` are resolved from (mesh_assets.registry, docs/domain-repos.md).

Relative paths resolve against the folder of ``mesh.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import pydantic

from mesh_assets.errors import ContractError, MeshError
from mesh_assets.yaml_source import load_yaml

MESH_FILE = "mesh.yaml"
Layer = Literal["bronze", "silver", "gold"]
LAYERS: tuple[str, ...] = ("bronze", "silver", "gold")


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class RetentionSettings(_Strict):
    snapshots: int = pydantic.Field(3, ge=1)


class CatalogSettings(_Strict):
    uri: str | None = None


class RegistrySettings(_Strict):
    path: str = ".mesh/registry"


class DuckDBSettings(_Strict):
    threads: int | None = pydantic.Field(None, ge=1)
    memory_limit: str | None = None
    temp_directory: str = ".mesh/tmp"


Engine = Literal["duckdb", "spark"]
ENGINES: tuple[str, ...] = ("duckdb", "spark")


class SparkSettings(_Strict):
    master: str = "local[*]"
    conf: dict[str, str | int | float | bool] = {}


class CheckSettings(_Strict):
    sample_rows: int = pydantic.Field(10, ge=0, le=1000)
    severity_weights: dict[Literal["error", "warning", "info"], float] = {"error": 3, "warning": 2, "info": 1}


class DriftSettings(_Strict):
    bronze: Literal["fail", "warn"] = "fail"
    silver: Literal["fail", "warn"] = "fail"
    gold: Literal["fail", "warn"] = "fail"


class IngestionSettings(_Strict):
    """Bronze ingestion (mesh_assets.engine.ingestion): ``rejects``, the severity of rejected source records;
    ``max_line_size``, the longest CSV record read, in bytes (DuckDB's default 2,000,000; at most 1 GB, since a
    record is held in memory whole): a longer one is rejected, with this setting named as the fix."""

    rejects: Literal["warning", "error"] = "warning"
    max_line_size: int = pydantic.Field(2_000_000, ge=1024, le=1_000_000_000)


PolicyLevel = Literal["error", "warning", "off"]


class PolicySettings(_Strict):
    """How ``mesh validate`` treats each policy: ``error`` fails it (exit code 1), ``warning`` reports, ``off``
    skips. Policies and their defaults follow the mesh's governance rules (docs/governance.md)."""

    owner_team: PolicyLevel = "error"          # the contract names its owner: team.name
    descriptions: PolicyLevel = "error"        # the product, and every table and column of an output port
    port_sla: PolicyLevel = "error"            # every output port has a latency or frequency SLA of its own
    gold_primary_key: PolicyLevel = "error"    # every gold table has a primary key or a duplicates rule
    classification: PolicyLevel = "error"      # classifications are among governance.classifications
    naming: PolicyLevel = "error"              # snake_case tables and columns, no SQL reserved word
    port_server: PolicyLevel = "warning"       # output ports' contracts say where their Iceberg tables are


class GovernanceSettings(_Strict):
    """Mesh-wide governance, owned by the governance group.

    - ``policies``: :class:`PolicySettings`.
    - ``classifications``: allowed values of a property's ODCS ``classification``.
    - ``sensitive_classifications``: classifications masked for consumers without a PII grant.
    - ``pii_salt_env``: the environment variable holding the salt of masked values (never the salt itself).
    - ``reserved_words``: names refused for tables and columns on top of DuckDB's reserved keywords.
    - ``owners``: the governance group's identities (e-mail addresses or ``@handles``), code owners of
      ``mesh.yaml``, the domains folder and ``CODEOWNERS`` (mesh_assets.governance.codeowners).
    """

    policies: PolicySettings = PolicySettings()
    classifications: list[str] = ["public", "internal", "confidential", "restricted", "pii"]
    sensitive_classifications: list[str] = ["pii"]
    pii_salt_env: str = pydantic.Field("MESH_PII_SALT", pattern=r"^[A-Z_][A-Z0-9_]*$")
    reserved_words: list[str] = []
    owners: list[str] = []


class _OpenLineageFile(_Strict):
    path: str = ".mesh/openlineage"


class _OpenLineageHttp(_Strict):
    url: str | None = pydantic.Field(None, pattern=r"^https?://[^\s/]+\S*$")
    endpoint: str = "api/v1/lineage"
    api_key_env: str = pydantic.Field("OPENLINEAGE_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout: float = pydantic.Field(5.0, gt=0)
    retries: int = pydantic.Field(2, ge=0, le=10)


class OpenLineageSettings(_Strict):
    """Where the OpenLineage events of every step go (mesh_assets/orchestration/openlineage_events.py).

    - ``transport``: ``file`` (default), ``http`` (Marquez, DataHub or any OpenLineage HTTP receiver),
      ``console`` (the ``openlineage.client`` logger, level INFO) or ``none``.
    - ``file.path``: a folder (relative to the mesh root); events are appended to ``<path>/events.jsonl``, one
      JSON object per line, one write per event.
    - ``http.url``: the receiver's base URL; ``http.endpoint``: the path below it (default ``api/v1/lineage``,
      Marquez's). ``http.api_key_env``: the environment variable holding the API key, sent as
      ``Authorization: Bearer <key>`` when set; the key itself never belongs in ``mesh.yaml``.
      ``http.timeout``: seconds per request; ``http.retries``: retries of a failed connection or a 5xx answer.
    """

    transport: Literal["file", "http", "console", "none"] = "file"
    file: _OpenLineageFile = _OpenLineageFile()
    http: _OpenLineageHttp = _OpenLineageHttp()

    @pydantic.model_validator(mode="after")
    def _url_for_http(self) -> OpenLineageSettings:
        if self.transport == "http" and not self.http.url:
            raise ValueError("transport http needs http.url, the receiver's base URL (e.g. http://marquez:5000)")
        return self


class AutomationSettings(_Strict):
    """How often each domain's sensors are evaluated by the Dagster daemon, in seconds.

    - ``landing_interval_seconds`` (default 30): the landing-zone sensor that starts ingestion.
    - ``landing_settle_seconds`` (default 10): a landed file modified more recently is taken to be still
      being written; its table is ingested on a later tick.
    - ``automation_interval_seconds`` (default 30): the declarative-automation sensor (Dagster's own default).
    - ``alert_interval_seconds`` (default 30): the freshness alert sensor.
    """

    landing_interval_seconds: int = pydantic.Field(30, ge=1)
    landing_settle_seconds: float = pydantic.Field(10, ge=0)
    automation_interval_seconds: int = pydantic.Field(30, ge=1)
    alert_interval_seconds: int = pydantic.Field(30, ge=1)


class RunSettings(_Strict):
    """How the runs the Dagster UI, sensors, schedules and automation launch in a domain's code location execute
    their steps (``mesh run`` always executes every step in its own process).

    - ``executor`` (default ``in_process``): Dagster's in-process executor runs every step of a run in the run's
      process, one after another, as ``mesh run`` does: no process start and framework import per step (about
      3 s each), and a Spark domain's steps share one Spark session. Each DuckDB step uses every core anyway.
      ``multiprocess`` (Dagster's own default) gives each step a process of its own, ``max_concurrent`` at once:
      a step that dies takes only itself down, at a process start per step.
    - ``max_concurrent`` (``multiprocess`` only; default: the number of CPUs, Dagster's default).

    Source: Dagster's ``in_process_executor`` and ``multiprocess_executor`` (Dagster's documentation, "Executors").
    """

    executor: Literal["in_process", "multiprocess"] = "in_process"
    max_concurrent: int | None = pydantic.Field(None, ge=1)

    @pydantic.model_validator(mode="after")
    def _concurrency_needs_processes(self) -> RunSettings:
        if self.max_concurrent is not None and self.executor != "multiprocess":
            raise ValueError("max_concurrent applies to executor: multiprocess only (in_process runs one step at "
                             "a time); set executor: multiprocess or remove max_concurrent")
        return self


class RetrySettings(_Strict):
    """The ``dagster.RetryPolicy`` of every step. Transient failures (I/O errors, a lost connection, a killed
    executor, out of memory: ``mesh_assets.errors.is_transient``) are retried; contract violations, bad data and
    bad SQL never are (``mesh_assets.orchestration.assets.step_failure``).

    - ``max_retries`` (default 3; 0 turns retries off).
    - ``delay_seconds`` (default 10): the wait before the first retry.
    - ``backoff`` (``exponential``, default, or ``linear``): how the wait grows (Dagster's ``Backoff``).
    - ``jitter`` (``plus_minus``, default, ``full`` or ``none``): random spread of the wait (Dagster's
      ``Jitter``), so steps that failed together do not retry together.
    """

    max_retries: int = pydantic.Field(3, ge=0, le=20)
    delay_seconds: float = pydantic.Field(10, ge=0)
    backoff: Literal["exponential", "linear"] = "exponential"
    jitter: Literal["plus_minus", "full", "none"] = "plus_minus"


class _Webhook(_Strict):
    url: str | None = pydantic.Field(None, pattern=r"^https?://\S+$")
    url_env: str | None = pydantic.Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> _Webhook:
        if bool(self.url) == bool(self.url_env):
            raise ValueError("give exactly one of url (a URL without secrets) or url_env (the environment variable "
                             "holding the URL, for webhooks whose URL is a secret)")
        return self


class AlertSettings(_Strict):
    """Where a failed run or a port that missed its SLA is reported (mesh_assets.orchestration.alerts). Every alert is a
    log line (logger ``mesh_assets.orchestration.alerts``, level ERROR); a team listed under ``webhooks`` also gets a
    JSON POST.

    - ``webhooks.<team>.url``: the team's webhook, or ``webhooks.<team>.url_env``: the environment variable
      holding it (Slack and Teams webhook URLs are secrets; they never belong in ``mesh.yaml``).
    - ``timeout`` (seconds per request, default 5).
    """

    webhooks: dict[str, _Webhook] = {}
    timeout: float = pydantic.Field(5.0, gt=0)


class MeshSettings(_Strict):
    """The parsed ``mesh.yaml``; ``root`` is the folder that holds it."""

    root: Path
    name: str = "mesh"
    domains_dir: str = "domains"
    storage_root: str = ".mesh/lake"
    landing_zone: str = ".mesh/landing"
    retention: RetentionSettings = RetentionSettings()
    catalog: CatalogSettings = CatalogSettings()
    duckdb: DuckDBSettings = DuckDBSettings()
    engine: Engine = "duckdb"
    spark: SparkSettings = SparkSettings()
    checks: CheckSettings = CheckSettings()
    schema_drift: DriftSettings = DriftSettings()
    ingestion: IngestionSettings = IngestionSettings()
    sla_defaults: dict[Layer, list[dict[str, Any]]] = {}
    governance: GovernanceSettings = GovernanceSettings()
    openlineage: OpenLineageSettings = OpenLineageSettings()
    automation: AutomationSettings = AutomationSettings()
    runs: RunSettings = RunSettings()
    retries: RetrySettings = RetrySettings()
    alerts: AlertSettings = AlertSettings()
    registry: RegistrySettings = RegistrySettings()

    @property
    def domains_path(self) -> Path:
        return self.root / self.domains_dir

    @property
    def storage_url(self) -> str:
        """The storage root as an absolute path or an fsspec URL (``s3://…``); ``MESH_STORAGE_ROOT`` wins."""
        return _resolve(self.root, os.environ.get("MESH_STORAGE_ROOT") or self.storage_root)

    @property
    def duckdb_temp_path(self) -> str:
        """DuckDB's spill folder, absolute."""
        return _resolve(self.root, self.duckdb.temp_directory)

    @property
    def openlineage_path(self) -> str:
        """The folder of the ``file`` transport's events, absolute (or an fsspec URL)."""
        return _resolve(self.root, self.openlineage.file.path)

    @property
    def registry_url(self) -> str:
        """The contract registry as an absolute folder or an fsspec URL; ``MESH_REGISTRY`` wins."""
        return _resolve(self.root, os.environ.get("MESH_REGISTRY") or self.registry.path)

    @property
    def registry_cache_path(self) -> Path:
        """Where the contracts resolved from the registry are copied to load them (``.mesh/registry-cache``)."""
        return self.root / ".mesh" / "registry-cache"

    @property
    def landing_path(self) -> str:
        """The landing zone as an absolute path or URL; ``MESH_LANDING_ZONE`` wins."""
        return _resolve(self.root, os.environ.get("MESH_LANDING_ZONE") or self.landing_zone)


def _resolve(root: Path, value: str) -> str:
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (root / path).resolve())


def find_mesh_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the current directory) holding ``mesh.yaml``.

    Raises:
        MeshError: no ``mesh.yaml`` up to the file system root.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MESH_FILE).is_file():
            return folder
    raise MeshError(f"no {MESH_FILE} found in {here} or any parent folder; run inside a mesh or pass --root")


def load_settings(root: Path | str) -> MeshSettings:
    """Parse ``<root>/mesh.yaml``.

    Raises:
        ContractError: the file is not valid YAML or has an unknown or ill-typed field.
    """
    root = Path(root).resolve()
    path = root / MESH_FILE
    doc = load_yaml(path)
    data = doc.data or {}
    if not isinstance(data, dict):
        raise ContractError(path, ["(top level): expected a mapping of settings"])
    try:
        return MeshSettings(root=root, **data)
    except pydantic.ValidationError as exc:
        raise ContractError(path, [doc.problem(list(err["loc"]), err["msg"]) for err in exc.errors()]) from None
