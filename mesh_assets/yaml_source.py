"""Read YAML files keeping line numbers, so errors can point at the line of a field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mesh_assets.errors import ContractError


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``path`` and return ``(data, node)``; ``node`` is the composed YAML tree used by :func:`line_of`.

    Raises:
        ContractError: the file is missing, unreadable, or not valid YAML (the message gives the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(path, [f"cannot read the file: {exc}. Save it as UTF-8 text."]) from None
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContractError(path, [f"{where}: not valid YAML ({problem}). Fix the indentation or quoting."]) from None


def line_of(node: yaml.Node | None, location: list[str | int]) -> int | None:
    """The 1-based line of the field at ``location`` (keys and list indexes) in a composed YAML tree, or of the
    nearest enclosing field that exists; ``None`` without a tree."""
    line = None
    for part in location:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def format_location(location: list[str | int]) -> str:
    """``["schema", 0, "name"]`` → ``schema[0].name`` (``(top level)`` when empty)."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def problem(node: yaml.Node | None, location: list[str | int], message: str) -> str:
    """One problem line for :class:`ContractError`: ``<field> (line N): <message>``."""
    line = line_of(node, location)
    where = format_location(location) + (f" (line {line})" if line else "")
    return f"{where}: {message}"
