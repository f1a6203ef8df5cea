"""How a silver or gold table is built, resolved once, when its contract loads.

A table's ``customProperties`` ``transform`` names a SQL file (default ``sql/<layer>/<table>.sql``), a Python
file (``python/<layer>/<table>.py``, mesh_assets.engine.python_transforms) or a dbt model (``dbt:<model>``,
``dbt/models/<domain>/<model>.sql``, docs/dbt.md), relative to the domain folder. The SQL file is read here and
the dbt model rendered in mesh names here, so the table carries its SELECT as data (``Table.sql``): inputs,
access, lineage, the step and ``mesh validate`` all read the same text, and none of them reads a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from mesh_assets.contract.dbt_project import DbtModelError, model_file, render_model
from mesh_assets.contract.model import SNAKE_CASE, Report
from mesh_assets.errors import MeshError

DBT_TRANSFORM = "dbt:"  # customProperties transform "dbt:<model>": the table is built by a dbt model


class ResolvedTransform(NamedTuple):
    """A table's transform as resolved at load: ``path`` the file (SQL, Python or dbt model), ``dbt_model`` the
    model's name, ``sql`` the SELECT (the SQL file's text, the dbt model rendered); each ``None`` where it does
    not apply or could not be resolved (a problem was reported)."""

    path: Path | None = None
    dbt_model: str | None = None
    sql: str | None = None


def resolve_transform(value: Any, layer: str, table: str, contract: Path, domain: str, report: Report,
                      loc: list[str | int]) -> ResolvedTransform:
    """The transform of table ``table`` of layer ``layer``, declared ``value`` (the ``customProperties``
    ``transform``, ``None`` for the default) in the contract at ``contract`` of ``domain``.

    Bronze tables have none. Problems are reported at ``loc`` with their fix: a path outside the domain folder,
    a missing or unreadable file (not UTF-8 text, no permission), a dbt model that binds a non-gold table, or
    that the mesh cannot render (``ref()``, an undeclared source, unsupported Jinja; the model file and line
    in the message). A contract read outside a mesh (a base revision of change management) has no dbt project,
    so its dbt model stays unresolved.
    """
    if str(value or "").startswith(DBT_TRANSFORM):
        model = str(value)[len(DBT_TRANSFORM):]
        if layer != "gold" or not SNAKE_CASE.fullmatch(model):
            report(loc, f"transform {value!r}: a dbt model builds a gold table; write transform: dbt:<model name "
                        "(snake_case)>")
            return ResolvedTransform(dbt_model=model)
        try:
            path = model_file(contract, domain, model)
        except MeshError:  # a contract read outside a mesh (a base revision of change management)
            return ResolvedTransform(dbt_model=model)
        try:
            return ResolvedTransform(path, model, render_model(path))
        except DbtModelError as exc:
            report(loc, f"transform {value}: {exc}")
            return ResolvedTransform(path, model)
    if layer == "bronze":
        return ResolvedTransform()
    relative = str(value or f"sql/{layer}/{table}.sql")
    domain_dir = contract.parent.parent.resolve()
    path = (domain_dir / relative).resolve()
    if not path.is_relative_to(domain_dir):
        report(loc, f"transform {relative} is outside the domain folder; a domain's transforms live in its own "
                    "sql/ folder")
        return ResolvedTransform()
    if not path.is_file():
        report(loc, f"transform file {relative} not found next to the domain; create it or set customProperties "
                    "transform")
        return ResolvedTransform(path)
    if path.suffix == ".py":
        return ResolvedTransform(path)
    try:
        return ResolvedTransform(path, sql=path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        report(loc, f"transform file {relative} is not UTF-8 text; save it as UTF-8")
    except OSError as exc:
        report(loc, f"transform file {relative} cannot be read ({exc.strerror or type(exc).__name__}); make it "
                    "readable by the mesh's user")
    return ResolvedTransform(path)
