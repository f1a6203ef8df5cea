"""Errors the mesh raises for bad input: each names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path


class MeshError(Exception):
    """Base class of every error caused by the mesh's own files or data (never a bug in the framework)."""


class ContractError(MeshError):
    """A data contract, domain descriptor or ``mesh.yaml`` is malformed.

    Args:
        path: the file at fault.
        problems: one line per problem, each ``<field>: <what is wrong>. <fix>``; a field is written as a
            JSON-path-like location (``schema[0].properties[2].logicalType``), with ``(line N)`` when known.
    """

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.path}: invalid\n{body}")


class ContractsError(MeshError):
    """One or more data contracts of a domain are malformed; ``errors`` holds each one's :class:`ContractError`
    (``mesh validate`` reports each problem with its file, field and line)."""

    def __init__(self, errors: list[ContractError]):
        self.errors = errors
        super().__init__("\n\n".join(str(e) for e in errors))


class PortError(MeshError):
    """An output port cannot be read or written (no published snapshot, unknown port, broken pointer)."""


class TransformError(MeshError):
    """A transform (ingestion or SQL) failed on its data; the message names the table, the file and the fix."""


class TransientError(TransformError):
    """A transform failed on I/O (a file system or object store error, a lost connection) rather than on its
    data or SQL: the step's retry policy (``mesh.yaml`` ``retries``) runs it again."""
