"""The Dagster instance of a mesh: ``<root>/dagster.yaml`` written into ``DAGSTER_HOME``, with Postgres storage
when ``MESH_POSTGRES_URL`` is set.

Without the variable the file is copied as it is: SQLite under ``DAGSTER_HOME``, the embedded default. With it,
the storage keys of ``dagster.yaml`` (``storage``, ``run_storage``, ``event_log_storage``, ``schedule_storage``)
are replaced by dagster-postgres for runs, event log and schedules::

    storage:
      postgres:
        postgres_url: {env: MESH_POSTGRES_URL}

Dagster reads the variable when the instance opens, so the URL and its password never reach the disk, and every
process on the instance (``mesh run``, ``dagster-daemon``, ``dagster-webserver``) needs the variable set. Every
other key of ``dagster.yaml`` (run queue, run monitoring, telemetry) is kept in both cases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy.exc
import yaml
from dagster import DagsterInstance

from mesh_assets.errors import MeshError
from mesh_assets.extras import require_installed
from mesh_assets.yaml_source import read_yaml_text

POSTGRES_URL_ENV = "MESH_POSTGRES_URL"
# The driver is named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, and dagster-postgres installs psycopg2.
_SCHEME = "postgresql+psycopg2"
_STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
_UNREACHABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError)
_EXAMPLE = f"{_SCHEME}://dagster:<password>@db.internal:5432/dagster"


def postgres_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """The value of ``MESH_POSTGRES_URL``, or ``None`` when it is unset or empty.

    Raises:
        MeshError: the value is not a ``postgresql+psycopg2://`` URL; the message names the variable and the
            fix and never repeats the value (it may hold a password).
    """
    url = environ.get(POSTGRES_URL_ENV, "")
    if not url.strip():
        return None
    scheme = url.split("://", 1)[0] if "://" in url else None
    if scheme is None:
        problem = "it is not a URL"
    elif scheme in ("postgresql", "postgres"):
        problem = (f"it starts with {scheme}:// without the driver (dagster-postgres installs psycopg2, and "
                   "SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3)")
    elif scheme != _SCHEME:
        problem = f"its scheme is {scheme!r}"
    else:
        try:
            urlsplit(url).port  # a port that is not a number raises here, not deep inside Dagster
            problem = None
        except ValueError:
            problem = "its port is not a number"
    if problem:
        raise MeshError(f"{POSTGRES_URL_ENV} must be a {_SCHEME}:// URL such as {_EXAMPLE}, but {problem}; fix the "
                        "variable, or unset it to use the embedded SQLite instance")
    return url


def describe_server(url: str) -> str:
    """``user@host:port/database`` of a Postgres URL, without its password (for messages and logs)."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


def instance_config(root: Path, environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The instance configuration of the mesh at ``root`` as a mapping: ``<root>/dagster.yaml`` (``None`` when
    the mesh has none), with its storage keys replaced by Postgres when ``MESH_POSTGRES_URL`` is set.

    Raises:
        MeshError: ``MESH_POSTGRES_URL`` is not a postgresql+psycopg2:// URL, or ``dagster.yaml`` is not a YAML
            mapping.
    """
    source = root / "dagster.yaml"
    base = _read(source) if source.is_file() else None
    if postgres_url(environ) is None:
        return base
    config = {key: value for key, value in (base or {}).items() if key not in _STORAGE_KEYS}
    config["storage"] = {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
    return config


def write_instance_config(root: Path, home: Path, environ: Mapping[str, str] = os.environ) -> None:
    """Write the instance configuration of the mesh at ``root`` to ``<home>/dagster.yaml`` (``home`` is
    ``DAGSTER_HOME``, created if missing); the file is only replaced when its content changes. Nothing is
    written when the mesh has no ``dagster.yaml`` and Postgres is not set: Dagster's defaults, or what the
    folder already holds, apply.

    Raises:
        MeshError: as :func:`instance_config`.
    """
    config = instance_config(root, environ)
    home.mkdir(parents=True, exist_ok=True)
    if config is None:
        return
    if postgres_url(environ) is None:  # the mesh's own file, comments included
        text = (root / "dagster.yaml").read_text(encoding="utf-8")
    else:
        text = (f"# The settings of the mesh at {root} (its dagster.yaml) with Postgres storage, because "
                f"{POSTGRES_URL_ENV} is set; written by mesh_assets/orchestration/instance_config.py: "
                "edit the mesh's file.\n"
                + yaml.safe_dump(config, sort_keys=False))
    target = home / "dagster.yaml"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


def get_instance(environ: Mapping[str, str] = os.environ) -> DagsterInstance:
    """The Dagster instance at ``DAGSTER_HOME`` (``DagsterInstance.get()``); on Postgres it creates or checks
    the schema of runs, event log and schedules.

    Raises:
        MeshError: the Postgres server of ``MESH_POSTGRES_URL`` cannot be reached, or refuses the login or the
            database (the message names the server without its password).
        MissingExtra: ``MESH_POSTGRES_URL`` is set and the ``postgres`` extra is not installed.
    """
    url = postgres_url(environ)
    if url is not None:
        require_installed("postgres", f"{POSTGRES_URL_ENV} (the Dagster instance)")
    try:
        return DagsterInstance.get()
    except Exception as exc:
        # dagster-postgres gives up after its retries with an exception of its private module whose cause is
        # SQLAlchemy's error; the cause, public, says whether the server could not be reached.
        cause = exc if isinstance(exc, _UNREACHABLE) else exc.__cause__
        if url is None or not isinstance(cause, _UNREACHABLE):
            raise
        reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
        raise MeshError(f"cannot open the Dagster instance on Postgres {describe_server(url)} ({POSTGRES_URL_ENV}): "
                        f"{reason}; check that the server runs and the database exists, or unset "
                        f"{POSTGRES_URL_ENV} to use the embedded SQLite instance") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_yaml_text(path))
    except yaml.YAMLError as exc:
        raise MeshError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MeshError(f"{path} must be a mapping of Dagster instance settings (dagster.yaml)")
    return data
