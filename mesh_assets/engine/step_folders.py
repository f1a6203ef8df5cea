"""Private folders of running steps (a dbt model's DuckDB file, profile and target), and the cleaning of those a
killed step left behind, with the processes it started.

A step's folder is ``<mesh root>/.mesh/steps/<prefix><random>``: outside DuckDB's ``temp_directory``, which
DuckDB lets a sandboxed connection read, so neither ``mesh sql`` nor another step's SQL can read it. Each step's
DuckDB connection spills to a folder of its own, ``<temp_directory>/spill-<random>``, for the same reason. It
names its owner in ``_writer.json`` (host, pid, process start time), as a port's staging snapshot does
(mesh_assets.engine.ports). A process a step starts carries the folder in its environment (``DBT_PROFILES_DIR``, as
the ``dbt build`` processes of earlier versions did; dbt now runs in the step's own process), which tells which
processes belong to which folder.

:func:`clean_step_folders` runs at the start of each ``mesh run`` and of each dbt step: a folder whose owner is
gone (the same rule as orphaned snapshots) is deleted, after its processes still running are terminated.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import psutil

from mesh_assets.engine.ports import WRITER, owner_gone, process_owner
from mesh_assets.settings import MeshSettings

STEPS_DIR = ".mesh/steps"  # under the mesh root
SPILL_PREFIX = "spill-"  # a step's own spill folder inside DuckDB's
FOLDER_ENV = "DBT_PROFILES_DIR"  # in a step's child processes: the step's folder
_TERMINATE_WAIT = 5.0  # seconds a terminated process gets to exit before it is killed


def steps_path(settings: MeshSettings) -> Path:
    """The folder holding every step's private folder, absolute."""
    return (settings.root / STEPS_DIR).resolve()


def new_step_folder(settings: MeshSettings, prefix: str) -> Path:
    """A new private folder ``<prefix><random>`` under :func:`steps_path`, owned by this process
    (``_writer.json``), after cleaning the folders killed steps left (:func:`clean_step_folders`)."""
    return _owned_folder(settings, steps_path(settings), prefix)


def new_spill_folder(settings: MeshSettings) -> Path:
    """A new spill folder ``spill-<random>`` of one step's DuckDB connection, inside DuckDB's spill folder
    (``duckdb.temp_directory``, so it stays on the disk chosen for spilling) and owned by this process: DuckDB
    lets a sandboxed connection read its own spill folder, so each step gets one and reads no other step's
    spilled data. Cleaned like a step folder when its owner is killed."""
    local = "://" not in settings.duckdb_temp_path
    return _owned_folder(settings, Path(settings.duckdb_temp_path).resolve() if local else steps_path(settings),
                         SPILL_PREFIX)


def _owned_folder(settings: MeshSettings, root: Path, prefix: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    clean_step_folders(settings)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root)).resolve()
    (folder / WRITER).write_text(json.dumps(process_owner()), encoding="utf-8")
    return folder


def clean_step_folders(settings: MeshSettings) -> list[Path]:
    """Delete every step folder whose owner process is gone (:func:`mesh_assets.engine.ports.owner_gone`; a folder
    without an owner yet is judged by its age), first terminating the processes whose environment names it
    (``DBT_PROFILES_DIR``; SIGTERM, then SIGKILL after 5 s). Folders ``dbt-*`` that older versions left in
    DuckDB's spill folder, and the steps' own spill folders there, are judged the same way. Returns the
    deleted folders."""
    root = steps_path(settings)
    # steps' spill folders, and dbt folders of versions that kept them in DuckDB's spill folder (no owner there)
    spill = Path(settings.duckdb_temp_path)
    legacy = [*spill.glob("dbt-*"), *spill.glob(f"{SPILL_PREFIX}*")] if "://" not in settings.duckdb_temp_path else []
    dead = []
    for folder in sorted([*(root.iterdir() if root.is_dir() else []), *legacy]):
        if not folder.is_dir():
            continue
        try:
            created = folder.stat().st_mtime
        except OSError:  # already gone: another run cleaned it
            continue
        try:
            owner = json.loads((folder / WRITER).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no owner yet, or an unreadable one: judged by age
            owner = {}
        if owner_gone(owner if isinstance(owner, dict) else {}, created):
            dead.append(folder)
    if dead:
        terminate(orphan_processes(dead))
    for folder in dead:
        shutil.rmtree(folder, ignore_errors=True)
    return dead


def orphan_processes(folders: list[Path]) -> list[psutil.Process]:
    """The running processes whose environment names one of ``folders`` (``DBT_PROFILES_DIR``): what a killed
    step started. Processes whose environment cannot be read (another user's) are not ours."""
    wanted = {str(f) for f in folders}
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(FOLDER_ENV) in wanted:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def terminate(processes: list[psutil.Process]) -> None:
    """SIGTERM ``processes``, then SIGKILL those still running after 5 s."""
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(processes, timeout=_TERMINATE_WAIT)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            continue
