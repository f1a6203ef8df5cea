"""The production instance: with ``MESH_POSTGRES_URL`` set, ``mesh run`` records its runs and events in a real
PostgreSQL server (the Debian package ``postgresql``, started here on loopback), and Dagster reads them back;
without it, the instance is the repository's SQLite ``dagster.yaml``. With ``MESH_CATALOG_URI`` set to the same
server, the output ports' Iceberg catalog lives there too."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from pyiceberg.catalog.sql import SqlCatalog

from conftest import REPO, two_writers_never_tear
from mesh_assets.engine.iceberg_catalog import CATALOG_ENV, CATALOG_FILE
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.instance_config import POSTGRES_URL_ENV, instance_config, postgres_url

MESH = str(Path(sys.executable).parent / "mesh")
REPO_CONFIG = yaml.safe_load((REPO / "dagster.yaml").read_text())


def _postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if (p.parent / "pg_ctl").is_file()]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, default=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (free port, temporary data folder, password login) with an
    empty database for the instance; its URL. The server is stopped and its folder removed afterwards."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server in /usr/lib/postgresql/*/bin (Debian package postgresql; "
                    ".ci/run installs it)")
    as_server_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres system user to run the server as")
        as_server_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="mesh-pg-"))  # not under pytest's tmp_path, which the server user cannot enter
    password = secrets.token_hex(16)
    (base / "password").write_text(password)
    if owner:
        for path in (base, base / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data, port = base / "data", _free_port()

    def server(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*as_server_user, *args], cwd=base, capture_output=True, text=True, timeout=120,
                              check=check)

    try:
        server(str(bin_dir / "initdb"), "-D", str(data), "-U", "mesh", f"--pwfile={base / 'password'}",
               "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync")
        server(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
               f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=off", "start")
        admin = psycopg2.connect(host="127.0.0.1", port=port, user="mesh", password=password, dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE mesh_dagster")
        admin.close()
        yield f"postgresql+psycopg2://mesh:{password}@127.0.0.1:{port}/mesh_dagster"
    finally:
        server(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


def mesh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([MESH, *args, "--root", str(REPO)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200", **env})


@pytest.mark.postgres  # starts a PostgreSQL server
def test_mesh_run_records_runs_and_events_in_postgres(server_url: str, tpch_landing: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    landing, home = tpch_landing, tmp_path / "dagster_home"
    # One PostgreSQL database for the Dagster instance and the output ports' Iceberg catalog, as in production.
    env = {"DAGSTER_HOME": str(home), POSTGRES_URL_ENV: server_url, "MESH_LANDING_ZONE": str(landing),
           "MESH_STORAGE_ROOT": str(tmp_path / "lake"), CATALOG_ENV: server_url}

    opened = mesh("instance", env=env)
    assert opened.returncode == 0, opened.stderr
    assert f"Postgres mesh@127.0.0.1:{urlsplit(server_url).port}/mesh_dagster" in opened.stdout
    assert "PostgresRunStorage, PostgresEventLogStorage, PostgresScheduleStorage" in opened.stdout
    written = (home / "dagster.yaml").read_text()
    assert urlsplit(server_url).password not in written  # Dagster reads the variable; the password stays off disk
    assert yaml.safe_load(written)["storage"] == {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}

    ran = mesh("run", env=env)
    assert ran.returncode == 0, ran.stderr
    assert not (home / "history").exists()  # no SQLite run or event database was created

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(POSTGRES_URL_ENV, server_url)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue and queue.max_concurrent_runs == REPO_CONFIG["concurrency"]["runs"]["max_concurrent_runs"]
        assert instance.run_monitoring_enabled
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.run_id in ran.stdout
        materialized = {e.dagster_event.asset_key for e in  # type: ignore[union-attr]
                        instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)}
        assert dg.AssetKey(["finance", "gold", "pricing_summary_report"]) in materialized
        assert {k.path[0] for k in materialized} == {"customers", "supply", "sales", "finance"}
        checks = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        assert checks and all(c.dagster_event.event_specific_data.passed for c in checks)  # type: ignore[union-attr]

    # The same rows, read with SQL from the server itself.
    with psycopg2.connect(server_url.replace("+psycopg2", "")) as con, con.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run.run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute("SELECT count(DISTINCT asset_key) FROM event_logs WHERE run_id = %s "
                       "AND dagster_event_type = 'ASSET_MATERIALIZATION'", (run.run_id,))
        assert cursor.fetchone() == (len(materialized),)
        cursor.execute("SELECT DISTINCT catalog_name, table_namespace FROM iceberg_tables ORDER BY 2")
        assert cursor.fetchall() == [("mesh", d) for d in ("customers", "finance", "sales", "supply")]
    con.close()
    assert not (tmp_path / "lake" / CATALOG_FILE).exists()  # no embedded SQLite catalog was made

    # A reader outside the mesh: plain pyiceberg on the PostgreSQL catalog gets the rows `mesh sql` gets.
    report = SqlCatalog("mesh", uri=server_url).load_table("finance.gold__pricing_summary_report").scan().to_arrow()
    queried = mesh("sql", "--format", "json", "select * from finance.pricing_summary_report", env=env)
    assert queried.returncode == 0, queried.stderr
    assert report.num_rows == len(json.loads(queried.stdout)) == 4


@pytest.mark.postgres  # starts a PostgreSQL server
@pytest.mark.slow  # two writer processes
def test_two_writers_on_a_postgres_catalog_never_tear_a_port(server_url: str, tmp_path: Path) -> None:
    """The compare-and-swap of an Iceberg commit, on the production catalog database."""
    two_writers_never_tear(tmp_path, rounds=10, catalog_uri=server_url)


@pytest.mark.slow  # `mesh` in a child process
def test_without_postgres_the_instance_is_the_repository_sqlite_config(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POSTGRES_URL_ENV, raising=False)
    home = tmp_path / "dagster_home"
    opened = mesh("instance", env={"DAGSTER_HOME": str(home)})
    assert opened.returncode == 0, opened.stderr
    assert "SQLite" in opened.stdout and "SqliteEventLogStorage" in opened.stdout
    limit = REPO_CONFIG["concurrency"]["runs"]["max_concurrent_runs"]
    assert f"at most {limit} runs in progress; run monitoring: on" in opened.stdout
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()


def test_postgres_config_keeps_every_setting_but_the_storage() -> None:
    config = instance_config(REPO, {POSTGRES_URL_ENV: "postgresql+psycopg2://u:p@db:5432/dagster"})
    assert config is not None and "event_log_storage" not in config
    assert {k: v for k, v in config.items() if k != "storage"} == {
        k: v for k, v in REPO_CONFIG.items() if k != "event_log_storage"}


@pytest.mark.parametrize("url", ["postgresql://mesh:hunter2@db/dagster", "mysql://mesh:hunter2@db/dagster",
                                 "hunter2", "postgresql+psycopg2://mesh:hunter2@db:port/dagster"])
def test_a_bad_postgres_url_is_refused_with_the_fix(url: str) -> None:
    with pytest.raises(MeshError) as refused:
        postgres_url({POSTGRES_URL_ENV: url})
    message = str(refused.value)
    assert POSTGRES_URL_ENV in message and "postgresql+psycopg2://" in message and "hunter2" not in message


@pytest.mark.slow  # `mesh` in child processes
@pytest.mark.parametrize("command", ["instance", "run"])
def test_the_commands_stop_on_a_bad_postgres_url_before_writing(command: str, tiny_root: Path,
                                                                 tmp_path: Path) -> None:
    result = subprocess.run([MESH, command, "--root", str(tiny_root)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "200", POSTGRES_URL_ENV: "postgresql://mesh:hunter2@db/x",
                                 "DAGSTER_HOME": str(tmp_path / "home")})
    assert result.returncode == 2 and f"error: {POSTGRES_URL_ENV} must be" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "dagster.yaml").exists()


@pytest.mark.slow  # `mesh` in a child process
def test_a_postgres_server_that_cannot_be_reached_is_named_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://mesh:hunter2@127.0.0.1:{_free_port()}/dagster"  # nothing listens there
    result = mesh("instance", env={POSTGRES_URL_ENV: url, "DAGSTER_HOME": str(tmp_path / "home")})
    assert result.returncode == 2
    assert "cannot open the Dagster instance on Postgres mesh@127.0.0.1" in result.stderr
    assert POSTGRES_URL_ENV in result.stderr and "Connection refused" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
