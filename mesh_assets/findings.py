"""Findings of ``mesh validate``: one per broken policy, structural error, access violation, breaking change or
secret, each naming the file, the line where known, the rule and the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mesh_assets.errors import ContractError

Severity = Literal["error", "warning"]
_PROBLEM = re.compile(r"^(?P<field>.+?)(?: \(line (?P<line>\d+)\))?: (?P<message>.*)$", re.DOTALL)
_AT_LINE = re.compile(r"^line (?P<line>\d+), column \d+: ")  # a problem of the YAML text, not of a field


@dataclass(frozen=True)
class Finding:
    """One problem found in the mesh.

    ``rule`` names what was checked, as ``<area>/<name>`` (``policy/column_description``, ``access/ungranted``,
    ``change/breaking``, ``security/secret``, ``structure/contract``, …); ``field`` is the contract field as
    ``schema[0].properties[2].description``. Errors fail ``mesh validate`` (exit code 1); warnings do not.
    """

    severity: Severity
    rule: str
    message: str
    fix: str = ""
    file: Path | None = None
    line: int | None = None
    field: str | None = None
    domain: str | None = None

    def __str__(self) -> str:
        return self.describe()

    def describe(self, root: Path | None = None) -> str:
        """``<file>:<line>: <severity> [<rule>] <field>: <message>. Fix: <fix>``, the file relative to ``root``."""
        file = self.to_dict(root)["file"]
        where = file or self.domain or "mesh"
        if self.line:
            where += f":{self.line}"
        field = f" {self.field}:" if self.field else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{where}: {self.severity} [{self.rule}]{field} {self.message}.{fix}".replace("..", ".")

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        """A JSON-ready mapping; ``file`` relative to ``root`` when it is inside it."""
        file = self.file
        if file is not None and root is not None:
            try:
                file = file.resolve().relative_to(root.resolve())
            except ValueError:
                pass
        return {"severity": self.severity, "rule": self.rule, "domain": self.domain,
                "file": str(file) if file else None, "line": self.line, "field": self.field,
                "message": self.message, "fix": self.fix}


def contract_findings(exc: ContractError, domain: str | None) -> list[Finding]:
    """One ``structure/contract`` error per problem of ``exc`` (problems written ``<field> (line N): <message>``
    by mesh_assets.yaml_source), with its file, field and line."""
    out = []
    for problem in exc.problems:
        match = _PROBLEM.match(problem)
        if match and not match["field"].startswith("line "):
            out.append(Finding("error", "structure/contract", match["message"], "", exc.path,
                               int(match["line"]) if match["line"] else None, match["field"], domain))
        else:
            at = _AT_LINE.match(problem)
            out.append(Finding("error", "structure/contract", problem, "", exc.path,
                               int(at["line"]) if at else None, None, domain))
    return out
