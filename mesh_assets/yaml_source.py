"""Read YAML files safely and fast (libyaml when present); find the line of a field only when an error needs it.

Every YAML file the framework reads (``mesh.yaml``, ``domain.yaml``, data contracts, access requests, the dbt
project's files, ``dagster.yaml``, ``workspace.yaml``) goes through :func:`read_yaml_text` first, which refuses,
before the document is parsed:

- a file over :data:`MAX_FILE_BYTES` (1 MiB; the largest reference contract is 34 KB);
- YAML anchors and aliases (``&name`` / ``*name``, merge keys ``<<: *name`` included): a 307-byte file of nested
  aliases (the "billion laughs" attack) expands to 43 million values in whatever walks the data; mesh files
  have no need for them, so they are refused rather than bounded.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

from mesh_assets.errors import ContractError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE_BYTES = 1024 * 1024  # the size limit of a YAML file of the mesh, and of any file the secrets scan reads


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
    """Parse ``path`` (checked by :func:`read_yaml_text`).

    Raises:
        ContractError: the file is missing, unreadable, too large, holds anchors or aliases, or is not valid YAML
            (the message gives the line).
    """
    text = read_yaml_text(path)
    try:
        return YamlDocument(path, text, yaml.load(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        raise _invalid(path, exc) from None


def read_yaml_text(path: Path) -> str:
    """The text of the YAML file ``path``, once it is known safe to parse: at most :data:`MAX_FILE_BYTES`
    bytes, UTF-8, and free of anchors and aliases (:func:`check_yaml_text`).

    Raises:
        ContractError: the file is missing, unreadable, too large (its size and the limit in the message), not
            UTF-8, not valid YAML up to its first anchor or alias, or holds an anchor or alias (with its line).
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(MAX_FILE_BYTES + 1)  # never more, even if the file grew since fstat
    except FileNotFoundError:
        raise ContractError(path, ["file not found"]) from None
    except OSError as exc:
        raise ContractError(path, [f"cannot read the file: {exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ContractError(path, [f"the file is {max(size, len(data)):,} bytes; {file_kind(path)} files are "
                                   f"limited to {MAX_FILE_BYTES:,} bytes (1 MiB). Split it or remove what it "
                                   "does not need"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(path, [f"cannot read the file: {exc}. Save it as UTF-8 text."]) from None
    check_yaml_text(path, text)
    return text


def check_yaml_text(path: Path, text: str) -> None:
    """Refuse YAML anchors and aliases in ``text`` (the content of ``path``), found by libyaml's scanner token by
    token, so nothing is composed or expanded before the refusal.

    Raises:
        ContractError: ``text`` holds an anchor or alias (with its line), or is not valid YAML up to its first one.
    """
    if "&" not in text and "*" not in text:  # no anchor or alias can hide in a text without either character
        return
    try:
        for token in yaml.scan(text, Loader=_LOADER):
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                raise ContractError(path, [
                    f"line {token.start_mark.line + 1}, column {token.start_mark.column + 1}: YAML anchors and "
                    f"aliases (&name / *name) are not allowed in {file_kind(path)} files; write the value out"])
    except yaml.YAMLError as exc:
        raise _invalid(path, exc) from None


def file_kind(path: Path) -> str:
    """What the YAML file ``path`` is, for messages: ``mesh.yaml``, ``domain.yaml``, ``dagster.yaml``,
    ``workspace.yaml``, ``access request`` (in a domain's ``access/`` folder), ``dbt`` (``*.yml``) or ``data
    contract``."""
    path = Path(path)
    if path.name in ("mesh.yaml", "domain.yaml", "dagster.yaml", "workspace.yaml"):
        return path.name
    if path.parent.name == "access":
        return "access request"
    return "dbt" if path.suffix == ".yml" else "data contract"


def _invalid(path: Path, exc: yaml.YAMLError) -> ContractError:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
    problem = getattr(exc, "problem", None) or str(exc)
    return ContractError(path, [f"{where}: not valid YAML ({problem}). Fix the indentation or quoting."])


def format_location(location: list[str | int]) -> str:
    """``["schema", 0, "name"]`` → ``schema[0].name`` (``(top level)`` when empty)."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
