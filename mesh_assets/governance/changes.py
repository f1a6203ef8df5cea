"""Change management for ``mesh validate --base <git ref>``: how each output port changed since a git ref, which
changes break its consumers, and whether the contract's version announces them.

Classification (from the issue that asked for this check): a port or column removed, a type changed, a column
made nullable, a constraint removed or loosened, a port narrowed from public to restricted, a column leaving
the primary key, or a column newly classified sensitive (readers without a PII grant get it masked from then on)
is *breaking*; a column or a constraint added, or a column no longer sensitive, is *compatible*; descriptions
are ignored. A
breaking change needs a major version bump, as in semantic versioning (https://semver.org, item 8).
"""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import sqlglot
from packaging.version import InvalidVersion, Version
from sqlglot import exp

from mesh_assets.contract.mesh import DOMAIN_FILE, load_domain
from mesh_assets.contract.model import Column, DataProduct, Rule, Table
from mesh_assets.errors import MeshError
from mesh_assets.findings import Finding
from mesh_assets.governance.policies import is_output_port
from mesh_assets.yaml_source import format_location, load_yaml

# MAJOR.MINOR.PATCH with an optional pre-release or build suffix (semver.org); `packaging` then orders versions,
# but on its own it also accepts PEP 440 forms that are not semantic versions ("1.0", "v1", "1!2.0").
_SEMVER_SHAPE = re.compile(r"\d+\.\d+\.\d+(?:[-+].+)?")


@dataclass(frozen=True)
class Change:
    """One difference of an output port between two versions of its contract.

    ``port`` is ``<domain>.<table>``; ``column`` the column concerned, ``None`` for the whole port or a
    table-level rule; ``what`` a sentence saying what changed.
    """

    kind: Literal["breaking", "compatible"]
    port: str
    column: str | None
    what: str


def compare_products(old: DataProduct | None, new: DataProduct | None,
                     sensitive: tuple[str, ...] | list[str] = ("pii",)) -> list[Change]:
    """Every change of the output ports of ``old`` (the base contract) in ``new`` (the current one);
    ``sensitive`` are the classifications masked for readers without a PII grant
    (``governance.sensitive_classifications``).

    ``None`` stands for a product that does not exist on that side: a new product changes nothing, a removed
    one removes all its ports. Only tables that are output ports in ``old`` (gold, public or restricted) are
    compared. A removed port is compatible only when ``old`` had ``status: deprecated`` and a top-level
    ``customProperties`` ``endOfSupport`` date (``YYYY-MM-DD``) in the past.

    Rules are paired by name and compared by what they check (kind, columns, parameters, operator, threshold,
    unit, severity), never by their wording. Telling a tighter rule from a looser one is not attempted: any
    change of a rule counts as the rule removed and another added, so it is breaking, which is right for a
    loosened rule (a wider range, a larger set of valid values) and errs on the safe side for a tightened one.
    """
    if old is None:
        return []
    new_tables = {t.name: t for t in new.tables} if new else {}
    retired = _retired(old)
    changes: list[Change] = []
    for table in filter(is_output_port, old.tables):
        port = f"{old.domain}.{table.name}"
        now = new_tables.get(table.name)
        if now is not None and is_output_port(now):
            changes += _compare_tables(port, table, now, set(sensitive))
            continue
        gone = ("data product removed" if new is None else "port removed" if now is None
                else f"no longer an output port ({now.layer}, {now.visibility})")
        if retired:
            changes.append(Change("compatible", port, None, f"{gone} after its end of support ({retired})"))
        else:
            changes.append(Change("breaking", port, None, gone))
    return changes


def version_findings(old: DataProduct | None, new: DataProduct | None, changes: list[Change]) -> list[Finding]:
    """Findings for ``changes`` (from :func:`compare_products`) against the versions of ``old`` and ``new``.

    - a breaking change is an ``error`` (rule ``change/breaking``, one per change) unless ``new.version`` has a
      higher MAJOR than ``old.version`` (semver.org item 8); with one it is a ``warning``, since consumers must
      still migrate. A pre-release of the next major (``2.0.0-rc.1``) counts as a major bump;
    - a removed port or product stays an ``error`` even with a major bump: consumers' queries would fail at once.
      It is allowed only after deprecation and end of support (then :func:`compare_products` calls it
      compatible);
    - a version lower than the base's, or one that is not a semantic version, is an ``error`` (``change/version``);
      an unreadable base version is only a ``warning``, and breaking changes against it are warnings too.

    Findings point at the current contract (the base one for a removed product), at the line of the column,
    table or field when it can be found.
    """
    if old is None:
        return []
    breaking = [c for c in changes if c.kind == "breaking"]
    if new is None:
        return [change_finding("error", old, c, f"port {c.port}: {c.what}; its consumers' queries will fail",
                         "restore the contract, or deprecate it first (status: deprecated and customProperties "
                         "endOfSupport: <date>) and remove it after that date") for c in breaking]
    findings = []
    base, current = _version(old.version), _version(new.version)
    if current is None:
        findings.append(Finding("error", "change/version", f"version {new.version!r} is not a semantic version "
                                "MAJOR.MINOR.PATCH", "write e.g. version: 1.0.0 (https://semver.org)",
                                new.path, _line(new.path, ["version"]), "version", new.domain))
    if base is None:  # a warning: the base cannot be fixed in this change, so an error would block every change
        findings.append(Finding("warning", "change/version", f"the base version {old.version!r} is not a semantic "
                                "version, so major version bumps cannot be checked", "", new.path,
                                _line(new.path, ["version"]), "version", new.domain))
    elif current is not None and current < base:
        findings.append(Finding("error", "change/version", f"version {new.version} is lower than "
                                f"{old.version} at the base", f"set version to {old.version} or higher",
                                new.path, _line(new.path, ["version"]), "version", new.domain))
    major = base is None or (current is not None and current.major > base.major)
    ports = {f"{new.domain}.{t.name}" for t in new.tables if is_output_port(t)}
    for c in breaking:
        subject = f"port {c.port}" + (f", column {c.column}" if c.column else "")
        if c.column is None and c.port not in ports:
            findings.append(change_finding("error", new, c, f"{subject}: {c.what}; its consumers' queries will fail",
                                     "restore the port, or deprecate the product first (status: deprecated and "
                                     "customProperties endOfSupport: <date>) and remove the port after that date"))
        elif major:
            findings.append(change_finding("warning", new, c, f"{subject}: {c.what}; consumers must migrate to "
                                     f"version {new.version}",
                                     f"tell the consumers of {c.port} what changed"))
        else:
            findings.append(change_finding("error", new, c, f"{subject}: {c.what}, a breaking change without a major "
                                     f"version bump ({old.version} → {new.version})",
                                     f"bump version to {base.major + 1}.0.0 (major), or restore what the base had"))
    return findings


def breaking_change_findings(root: Path, domains_dir: str, base_ref: str, current: dict[Path, DataProduct],
                             sensitive: tuple[str, ...] | list[str] = ("pii",)) -> list[Finding]:
    """Every finding of :func:`version_findings` for the mesh at ``root`` against the git ref ``base_ref``
    (``sensitive``: as for :func:`compare_products`).

    ``domains_dir`` is the domains folder relative to ``root`` (``mesh.yaml`` ``domains_dir``); ``current`` maps
    each contract path that loads to its product. The base's domains folder is extracted with ``git archive``
    into a temporary folder and loaded with :func:`load_domain`; a base domain that does not load is skipped with
    a ``warning`` (``change/base``). Products are paired by domain and contract file name. A current contract that
    exists but does not load is not reported as removed: its own errors say what is wrong.

    Raises:
        MeshError: git is missing, ``root`` is not in a git repository, or ``base_ref`` names no commit.
    """
    root = Path(root).resolve()
    if _git(root, "rev-parse", "--git-dir").returncode:
        raise MeshError(f"{root} is not in a git repository, so there is no '{base_ref}' to compare with; run "
                        "mesh validate --base in a git clone of the mesh, or drop --base")
    if base_ref.startswith("-") or _git(root, "rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}").returncode:
        raise MeshError(f"unknown git ref '{base_ref}': name a commit, branch or tag; for a remote branch fetch "
                        "it first, e.g. git fetch origin main, then use origin/main")
    if _git(root, "cat-file", "-e", f"{base_ref}:./{domains_dir}").returncode:
        return []  # no domains at the base: every product is new
    now = {(p.domain, p.path.name): p for p in current.values()}
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="mesh-base-") as tmp:
        tmp_root = Path(tmp).resolve()
        archive = _git(root, "archive", "--format=tar", base_ref, "--", domains_dir)
        if archive.returncode:
            raise MeshError(f"git archive {base_ref} -- {domains_dir} failed: {archive.stderr.decode().strip()}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp_root, filter="data")
        base: dict[tuple[str, str], DataProduct] = {}
        for folder in sorted(p for p in (tmp_root / domains_dir).iterdir() if (p / DOMAIN_FILE).is_file()):
            try:
                base.update({(p.domain, p.path.name): p for p in load_domain(folder).products})
            except MeshError as exc:
                message = str(exc).replace(f"{tmp_root}/", f"{base_ref}:")
                findings.append(Finding("warning", "change/base", f"domain {folder.name} as of {base_ref} does "
                                        f"not load, so its ports are not compared: {message}",
                                        "compare with a newer base (--base)", root / domains_dir / folder.name,
                                        domain=folder.name))
        for key in sorted(base.keys() | now.keys()):
            if key not in now and (root / domains_dir / key[0] / "products" / key[1]).is_file():
                continue
            old, new = base.get(key), now.get(key)
            findings += version_findings(old, new, compare_products(old, new, sensitive))
    # Findings on base contracts name the file where it was, not the temporary copy.
    return [dataclasses.replace(f, file=root / f.file.relative_to(tmp_root))
            if f.file and f.file.is_relative_to(tmp_root) else f for f in findings]


def _retired(product: DataProduct) -> date | None:
    """The end-of-support date of a deprecated product, when it is in the past."""
    end = product.end_of_support if product.deprecated else None
    return end if end is not None and end < datetime.now(UTC).date() else None


def _compare_tables(port: str, old: Table, new: Table, sensitive: set[str]) -> list[Change]:
    changes = []
    if (old.visibility, new.visibility) == ("public", "restricted"):
        changes.append(Change("breaking", port, None, "visibility narrowed from public to restricted"))
    elif (old.visibility, new.visibility) == ("restricted", "public"):
        changes.append(Change("compatible", port, None, "visibility widened from restricted to public"))
    new_columns = {c.name: c for c in new.columns}
    old_names = {c.name for c in old.columns}
    for column in old.columns:
        if column.name in new_columns:
            changes += _compare_columns(port, column, new_columns[column.name], sensitive)
        else:
            changes.append(Change("breaking", port, column.name, "column removed"))
    for column in new.columns:
        if column.name not in old_names:
            # Even a required column is compatible: readers only gain a column; producing it is the owner's job.
            changes.append(Change("compatible", port, column.name,
                                  f"column added ({'required' if column.required else 'optional'})"))
    old_key = set(old.primary_key)
    for name in new.primary_key:
        if name not in old_key:
            # Widening an existing key is loosening it: the old key columns alone are no longer unique.
            changes.append(Change("breaking" if old_key else "compatible", port, name,
                                  f"added to the primary key, now ({', '.join(new.primary_key)})"))
    return changes + _compare_rules(port, old, new, old_names - set(new_columns))


def _compare_columns(port: str, old: Column, new: Column, sensitive: set[str]) -> list[Change]:
    changes = []
    was, now = old.classification in sensitive, new.classification in sensitive
    if now and not was:  # the values readers without a PII grant get change from clear to masked
        changes.append(Change("breaking", port, old.name, f"classified {new.classification} (was "
                              f"{old.classification or 'unclassified'}): readers without a PII grant now get it "
                              "masked"))
    elif was and not now:
        changes.append(Change("compatible", port, old.name, f"no longer classified {old.classification}"))
    if old.logical_type != new.logical_type or normalised_type(old.physical_type) != normalised_type(new.physical_type):
        changes.append(Change("breaking", port, old.name, f"type changed from {old.physical_type} "
                              f"({old.logical_type}) to {new.physical_type} ({new.logical_type})"))
    if old.required != new.required:
        changes.append(Change("breaking", port, old.name, "made nullable (required: true → false)") if old.required
                       else Change("compatible", port, old.name, "made required"))
    if old.primary_key_position is not None and new.primary_key_position is None:
        changes.append(Change("breaking", port, old.name, "no longer part of the primary key"))
    return changes


def _compare_rules(port: str, old: Table, new: Table, removed_columns: set[str]) -> list[Change]:
    old_rules, new_rules = _constraints(old), _constraints(new)
    changes = []
    for name, rule in old_rules.items():
        if removed_columns & set(rule.columns):
            continue  # reported as the column's removal
        column = rule.columns[0] if len(rule.columns) == 1 else None
        now = new_rules.get(name)
        if now is None:
            changes.append(Change("breaking", port, column, f"constraint {name} removed ({rule.description})"))
        elif _terms(now) != _terms(rule):
            detail = next((f" from '{getattr(rule, a)}' to '{getattr(now, a)}'" for a in
                           ("description", "expectation", "severity") if getattr(rule, a) != getattr(now, a)), "")
            changes.append(Change("breaking", port, column,
                                  f"constraint {name} changed{detail}, which counts as removed and re-added"))
    for name, rule in new_rules.items():
        if name not in old_rules:
            changes.append(Change("compatible", port, rule.columns[0] if len(rule.columns) == 1 else None,
                                  f"constraint {name} added ({rule.description})"))
    return changes


def _constraints(table: Table) -> dict[str, Rule]:
    """The table's rules by name, without those compared as column properties (``required``, primary key)."""
    return {r.name: r for r in table.rules if r.kind != "primary_key" and r.source != {"required": True}}


def _terms(rule: Rule) -> tuple:
    return rule.kind, rule.columns, rule.params, rule.operator, rule.threshold, rule.unit, rule.severity


def normalised_type(physical_type: str) -> str:
    """DuckDB's spelling of a type, so ``INT`` equals ``INTEGER`` and ``DECIMAL(38,2)`` ``decimal(38, 2)``."""
    try:
        return exp.DataType.build(physical_type, dialect="duckdb").sql("duckdb")
    except (sqlglot.errors.ParseError, ValueError):
        return physical_type.upper()


def _version(text: str) -> Version | None:
    if not _SEMVER_SHAPE.fullmatch(text):
        return None
    try:
        return Version(text)
    except InvalidVersion:  # a pre-release tag packaging cannot order, e.g. 1.0.0-alpha.beta
        return None


def change_finding(severity: Literal["error", "warning"], product: DataProduct, change: Change, message: str,
                   fix: str, rule: str = "change/breaking") -> Finding:
    """A ``rule`` finding (``change/breaking`` by default) at the line of the change's table or column in
    ``product``'s contract."""
    location: list[str | int] = ["schema"]
    try:
        doc = load_yaml(product.path)
    except MeshError:
        doc = None
    tables = (doc.data.get("schema") if doc and isinstance(doc.data, dict) else None) or []
    table = change.port.split(".", 1)[1]
    i = next((i for i, t in enumerate(tables) if isinstance(t, dict) and t.get("name") == table), None)
    if i is not None:
        location.append(i)
        if change.column is not None:  # a removed column: the line of the table's properties
            props = tables[i].get("properties") or []
            j = next((j for j, p in enumerate(props) if isinstance(p, dict) and p.get("name") == change.column), None)
            location += ["properties"] + ([j] if j is not None else [])
    return Finding(severity, rule, message, fix, product.path, doc.line_of(location) if doc else None,
                   format_location(location), product.domain)


def _line(path: Path, location: list[str | int]) -> int | None:
    try:
        return load_yaml(path).line_of(location)
    except MeshError:
        return None


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise MeshError("mesh validate --base needs git; install git or drop --base") from None
