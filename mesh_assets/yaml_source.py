"""Read YAML files fast (libyaml when present) and find the line of a field only when an error needs it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from mesh_assets.errors import ContractError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlDocument:
    """A parsed YAML file: ``data`` (plain Python) and :meth:`problem` lines that name a field and its line.

    The node tree carrying line numbers is composed lazily, on the first problem: valid files are parsed once.
    """

    def __init__(self, path: Path, text: str, data: Any):
        self.path, self.text, self.data = path, text, data

    @functools.cached_property
    def _node(self) -> yaml.Node | None:
        return yaml.compose(self.text, Loader=_LOADER)

    def line_of(self, location: list[str | int]) -> int | None:
        """The 1-based line of the field at ``location`` (keys and list indexes), or of the nearest enclosing
        field that exists."""
        node, line = self._node, None
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
        return node.start_mark.line + 1 if node is not None else line

    def problem(self, location: list[str | int], message: str) -> str:
        """One problem line for :class:`ContractError`: ``<field> (line N): <message>``."""
        line = self.line_of(location)
        return f"{format_location(location)}{f' (line {line})' if line else ''}: {message}"


def load_yaml(path: Path) -> YamlDocument:
    """Parse ``path``.

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
        return YamlDocument(path, text, yaml.load(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContractError(path, [f"{where}: not valid YAML ({problem}). Fix the indentation or quoting."]) from None


def format_location(location: list[str | int]) -> str:
    """``["schema", 0, "name"]`` → ``schema[0].name`` (``(top level)`` when empty)."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
