"""The optional parts of the framework, each an extra of the ``mesh-assets`` package (pyproject.toml), and the one
way to import them: where they are used, never when ``mesh_assets`` or a code location without them loads.

``pip install mesh-assets`` gives the DuckDB mesh. A feature that needs an extra that is not installed fails with
:class:`MissingExtra`, whose message names the extra and the command that installs it, never with a bare
``ImportError``:

- ``spark``: the Spark engine (pyspark, dagster-pyspark, Ibis's pyspark backend; docs/scaling.md);
- ``dbt``: tables built by dbt models (dbt-core, dbt-duckdb, dagster-dbt; docs/dbt.md);
- ``postgres``: the Dagster instance on PostgreSQL (dagster-postgres, psycopg2; docs/operations.md);
- ``all``: every one of them (``make setup`` installs it).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from mesh_assets.errors import MeshError


@dataclass(frozen=True)
class Extra:
    """An extra of the package: the modules it brings (``modules``: the ones the framework imports, each found
    without importing it) and what it gives (``purpose``: a phrase for messages, with the doc that tells more)."""

    modules: tuple[str, ...]
    purpose: str


EXTRAS: dict[str, Extra] = {
    "spark": Extra(("pyspark", "dagster_pyspark"), "the Spark engine; docs/scaling.md"),
    "dbt": Extra(("dagster_dbt", "dbt.cli", "dbt.adapters.duckdb"), "tables built by dbt models; docs/dbt.md"),
    "postgres": Extra(("dagster_postgres",), "the Dagster instance on PostgreSQL; docs/operations.md"),
}


class MissingExtra(MeshError):
    """A feature needs an extra that is not installed.

    Args:
        extra: the extra's name, a key of :data:`EXTRAS`.
        module: the module that could not be imported.
        feature: what needed it (a table's key, a setting), at the start of the message.
    """

    def __init__(self, extra: str, module: str, feature: str):
        self.extra, self.module = extra, module
        super().__init__(f"{feature} needs the extra [{extra}] of mesh-assets ({EXTRAS[extra].purpose}), which is "
                         f"not installed here (no module {module}); install it with pip install "
                         f"'mesh-assets[{extra}]' (from a checkout: pip install -e '.[{extra}]'; make setup "
                         "installs every extra)")


def missing(extra: str) -> str | None:
    """The first module of ``extra`` that cannot be imported, or ``None`` when the extra is installed. Modules
    are found without being imported (a dotted module's parent packages are: ``dbt.cli`` imports ``dbt``).

    Raises:
        KeyError: ``extra`` is not a key of :data:`EXTRAS`.
    """
    for module in EXTRAS[extra].modules:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:  # a parent package is missing
            return module
    return None


def require_installed(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` for ``feature`` (what needs it, for the message) when ``extra`` is not
    installed (:func:`missing`); import nothing.

    Raises:
        MissingExtra: a module of ``extra`` is not installed.
        KeyError: ``extra`` is not a key of :data:`EXTRAS`.
    """
    module = missing(extra)
    if module is not None:
        raise MissingExtra(extra, module, feature)


def require(extra: str, module: str, feature: str) -> ModuleType:
    """``module`` of ``extra``, imported; ``feature`` names what needs it, for the message.

    Raises:
        MissingExtra: ``module``, or a module it imports, is not installed.
        KeyError: ``extra`` is not a key of :data:`EXTRAS`.
    """
    if extra not in EXTRAS:
        raise KeyError(f"{extra!r} is not an extra of mesh-assets; one of {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtra(extra, exc.name or module, feature) from None
