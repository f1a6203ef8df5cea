"""Python transforms: a function that receives the engine's native frames and returns the table's frame.

A contract binds a silver or gold table to a Python file of its domain and declares what it reads::

    customProperties:
      - {property: layer, value: gold}
      - {property: transform, value: python/gold/top_customers.py}
      - {property: inputs, value: [silver.orders, customers.customer_profile]}

The file defines ``transform(inputs, session)``:

- ``inputs``: a dict from ``"<schema>.<table>"`` (each declared input, plus ``"previous.<table>"``, the table's
  own published snapshot) to the engine's native frame: a ``duckdb.DuckDBPyRelation`` on DuckDB, a
  ``pyspark.sql.DataFrame`` on Spark. Sensitive columns arrive masked, as in SQL.
- ``session``: the step's ``duckdb.DuckDBPyConnection`` or ``pyspark.sql.SparkSession``.
- returns a frame of the same engine. Its columns are checked against the contract (``schema``), written as
  a new snapshot, checked and published exactly like a SQL transform's output.

A function that should run on both engines branches on the frame's type; there is no translation of Python.
Python runs in the step's process with that process's rights: unlike SQL on DuckDB, its file access is not
locked down, so review it as the domain's code.
"""

from __future__ import annotations

import importlib.util
import traceback
from collections.abc import Callable
from typing import Any

from mesh_assets.contract.model import Table
from mesh_assets.errors import TransformError

FUNCTION = "transform"
FRAMES = {"duckdb": "duckdb.DuckDBPyRelation", "spark": "pyspark.sql.DataFrame"}  # each engine's native frame


def load_transform(table: Table) -> Callable[[dict[str, Any], Any], Any]:
    """The ``transform`` function of the table's Python file, imported afresh (a changed file is picked up by
    the next step without reloading the code location).

    Raises:
        TransformError: the file does not import, or has no ``transform(inputs, session)`` function.
    """
    assert table.transform is not None
    name = f"mesh_transform__{'__'.join(table.key)}"
    try:
        spec = importlib.util.spec_from_file_location(name, table.transform)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TransformError(f"{'/'.join(table.key)}: {table.transform} does not import: {_where(exc, table)}"
                             ) from None
    function = getattr(module, FUNCTION, None)
    if not callable(function):
        raise TransformError(f"{'/'.join(table.key)}: {table.transform} has no function {FUNCTION}(inputs, "
                             "session); define it to return the table's frame (docs/contracts.md)")
    return function


def run_transform(table: Table, inputs: dict[str, Any], session: Any, frame_type: type, engine: str) -> Any:
    """Call the table's ``transform(inputs, session)`` and return its frame, an instance of ``frame_type``.

    Raises:
        TransformError: the function raised (the message gives the exception and the line of the file), or
            returned something other than a ``frame_type``.
    """
    function = load_transform(table)
    try:
        result = function(inputs, session)
    except Exception as exc:
        raise TransformError(f"{'/'.join(table.key)}: {FUNCTION}() failed on {engine}: {_where(exc, table)}. "
                             "Nothing was published; the previous snapshot stays current") from None
    if not isinstance(result, frame_type):
        raise TransformError(f"{'/'.join(table.key)}: {table.transform}: {FUNCTION}() returned "
                             f"{type(result).__name__}; on {engine} it returns a {FRAMES[engine]} built from its "
                             "inputs or session")
    return result


def python_source(table: Table) -> dict[str, str]:
    """The materialization metadata showing a Python transform: its source as ``sql``, marked ``python``."""
    assert table.transform is not None
    return {"sql": table.transform.read_text(encoding="utf-8"), "language": "python"}


def _where(exc: Exception, table: Table) -> str:
    """``ExceptionType: message (file, line N)``, the line being the last one of the table's file in the
    traceback."""
    lines = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(table.transform)]
    where = f" ({table.transform.name}, line {lines[-1].lineno})" if lines and table.transform else ""
    text = " ".join(str(exc).split())[:2000]
    return f"{type(exc).__name__}: {text}{where}"
