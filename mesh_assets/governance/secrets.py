"""Refuse secrets written into the mesh's files: salts, object-store keys, database URLs, passwords come from the
environment.

The files: ``mesh.yaml`` and every file under the domains folder and the dbt project (:func:`mesh_files`): YAML,
SQL, Python, dbt models, access requests, markdown… A binary file is skipped with a warning, a text file over
:data:`~mesh_assets.yaml_source.MAX_FILE_BYTES` with an error (it cannot be shown to hold no secret).

Detection is Yelp's ``detect-secrets`` (1.5.0, pinned), not regexes of our own: its ``scan_line``, in two passes
per YAML file (composed once with PyYAML's C loader, after anchors and aliases are refused: an alias bomb would
expand here too):

1. its *format* detectors (AWS keys, private keys, ``scheme://user:password@host`` URLs, GitHub, Slack, Stripe,
   … tokens) on the lines pass 2 does not see whole: comments, list items, the lines of multi-line values (a
   private key's header is found on its own line), all lines of a file that is not valid YAML;
2. every detector on each string mapping value, written as its YAML transformer writes it: ``key: "value"``
   (quoted, as the AWS secret key and entropy detectors require) and the line's comment, found on the value's
   line (the transformer itself parses in pure Python and its lines drift, Yelp/detect-secrets#632, #503). The
   *context* detectors run only here: keyword (``password: …``), base64 and hex entropy (a random PII salt), so
   comments and list items (prose, ``validValues`` codes) stay away from the detectors that guess. An ODCS
   ``{property: db_password, value: …}`` pair is written ``db_password: "…"``, as its meaning is.

Every other file (SQL, Python, markdown, and YAML that cannot be composed) is scanned line by line by every
detector; the keyword detector then needs a quoted value (``password = 'hunter2'``), as detect-secrets does for
code. One rule of our own: a ``{property, value}`` pair whose property names a secret (``_SECRET_PROPERTY``: the
keyword detector's words plus ``token``, ``credential``, ``access_key``, ``salt``) holds one when its value is a
string other than an environment variable's name.

A cheap regex (``_CANDIDATE``) first drops what no detector could match: ``scan_line`` costs ~0.6 ms a line. A line
carrying ``# pragma: allowlist secret`` is skipped (detect-secrets' own escape hatch for a false alarm).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from detect_secrets.core import scan
from detect_secrets.core.potential_secret import PotentialSecret
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.keyword import DENYLIST
from detect_secrets.settings import transient_settings

from mesh_assets.contract.dbt_project import GENERATED_DIRS, project_dir
from mesh_assets.errors import ContractError
from mesh_assets.findings import Finding
from mesh_assets.yaml_source import MAX_FILE_BYTES, check_yaml_text, format_location

RULE = "security/secret"
UNSCANNED_RULE = "security/unscanned"
YAML_SUFFIXES = (".yaml", ".yml")
_SKIPPED_DIRS = {"__pycache__", ".git"}
MESH_FILE, DOMAIN_FILE = "mesh.yaml", "domain.yaml"

# Plugins left out, by class name, and why.
_EXCLUDED = {
    # A public IP address (a server's host) is not a credential; ODCS `servers` may legitimately name one.
    "IPPublicDetector",
}
# The detectors that guess from context rather than recognise a format: run on YAML values only (pass 2).
_CONTEXT_DETECTORS = {"KeywordDetector", "Base64HighEntropyString", "HexHighEntropyString"}
# Entropy limits: detect-secrets' defaults, kept (lower would flag identifiers, higher would miss random keys of
# 32 characters, which measure ~4.5). Measured on the reference mesh (every string value, filters off): the
# highest base64-charset entropy is 4.15, the access request id `2026-11-21-finance-customer_profile`; then
# 3.92, the check id `customer_region_valid`; contract ids such as `finance-pricing-summary-report` 3.83. Such
# identifiers get to 4.39 with longer names (`2026-11-21-supply-customer_lifetime_value_by_region`), too close
# to the limit: `is_reference_or_identifier` drops them by shape instead. Regex patterns (`^Customer#[0-9]{9}$`)
# hold `^ [ {`, outside the base64 charset; no reference value is a hex string of more than one character; UUID
# ids are dropped by the library's `is_potential_uuid` filter. A random hex salt of 16 digits or more is > 3.0.
_LIMITS = {"Base64HighEntropyString": 4.5, "HexHighEntropyString": 3.0}
_OUR_FILTER = f"{__name__}.is_reference_or_identifier"
_TEXT_FILTER = f"{__name__}.is_reference_or_identifier_in_text"
# The keyword detector's keywords: its DENYLIST_REGEX_WITH_PREFIX, `\w*(api_?key|…|password|secret|…)\w*`, finds
# the same keys without the affixes (they may match nothing), which backtrack at every character (10× slower).
_KEYWORD = re.compile("|".join(DENYLIST), re.IGNORECASE)
# What a secret needs for at least one detector to match it, read from each detector's regexes
# (detect_secrets/plugins/*.py, 1.5.0; `test_the_pre_screen_was_reviewed_for_every_detector` fails on a new one):
# - `://\S*@`: Basic Auth and Cloudant URLs, `scheme://user:password@host`, which may be short (`s3://ab:pw9@h`);
# - `BEGIN`: private-key headers (the detector's other pattern, `PuTTY-User-Key-File-2`, is a run of 21);
# - `\S{20}`: every other format detector needs a run of at least 20 characters without whitespace (AWS access key
#   ids 20, its secret keys 40, GitHub, GitLab, Stripe, Twilio, Mailchimp, Discord, Telegram, SendGrid, Square,
#   OpenAI, PyPI tokens, Slack webhooks, Azure, IBM, SoftLayer and Cloudant keys), the base64 entropy detector a
#   quoted one of at least 23 (more than 4.5 bits of entropy need 23 distinct characters); not fewer, as runs of
#   16 to 19 (ids, check names) are half of what a contract would otherwise send to the detectors;
# - but for these shorter tokens: Artifactory's `AKC…` (13 or more) and `AP[0-9A-F]…` (11 or more), JWTs `eyJ…`,
#   Slack's `xox…` (in any case), NPM's `…/:_authToken=…`;
# - `[0-9a-fA-F]{9}`: the hex entropy detector, as more than 3.0 bits need 9 distinct hex digits.
# The keyword detector needs a secret-like key instead (`password: hunter2` is short): that is screened on the key
# (pass 2 only), the very test `is_reference_or_identifier` applies to its hits.
_CANDIDATE = re.compile(r"://\S*@|BEGIN|\S{20}|AKC|AP[0-9A-F]|eyJ|(?i:xox)|_authToken|[0-9a-fA-F]{9}")
# In code, runs of 20 characters without whitespace are common (`sum(amount)::DECIMAL(38,2)`), and each screened
# line costs a scan_line: there the run must be of the characters the detectors' tokens are made of (letters,
# digits, `+ / = _ . -`: base64, ids, dotted JWT/SendGrid/Discord parts), which every one of them needs.
_TEXT_CANDIDATE = re.compile(r"://\S*@|BEGIN|[\w+/=.-]{20}|AKC|AP[0-9A-F]|eyJ|(?i:xox)|_authToken|[0-9a-fA-F]{9}")
_COMMENT = re.compile(r"\s+#[\S ]*")  # the transformer's: what follows whitespace and `#` on a value's line
_WORD = r"(?:[a-z]{1,20}[0-9]*|[A-Z]{1,20}[0-9]*|[0-9]+)"  # a word of one case (maybe numbered: q10), a number
_IDENTIFIER = re.compile(rf"^{_WORD}(?:[-_.:]{_WORD})*$")
_ENV_NAME = re.compile(r"^\$?\{?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\}?$")  # MESH_PG_PASSWORD, ${MESH_PG_PASSWORD}
# A property naming a secret: the keyword detector's words anywhere in it (as it searches them), and these whole
# words (`_`, `-`, `.` or a case change apart: `apiToken`, `aws_access_key_id`, `credentials`, `pii_salt`).
_SECRET_PROPERTY = re.compile("|".join(DENYLIST) + r"|(?:^|_)(?:tokens?|credentials?|access_?keys?|salt)(?:_|$)")
_PAIR_TYPE = "Secret Property"
_ASSIGNED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)['\"\]]*\s*(?::=|=|:)")  # a name and what assigns it a value
# detect-secrets keeps its settings in a process-wide singleton that transient_settings swaps in and out.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Value:
    """A scalar of the YAML file: its first and last line, its field, whether it is a mapping value (rather than
    a list item) and a string (not a number, boolean, date or null): detect-secrets' YAML transformer scans the
    string mapping values, pass 2 does."""

    first: int
    last: int
    location: tuple[str | int, ...]
    text: str
    mapping_value: bool
    string: bool
    key: str | None  # the key it is written under (the nearest one for a list item; the property of a pair)
    pair: bool = False  # the value of an ODCS ``{property, value}`` pair


def all_mesh_yaml(root: Path, domains_dir: str = "domains") -> list[Path]:
    """The mesh's YAML files: ``<root>/mesh.yaml``, ``<root>/<domains_dir>/*/domain.yaml`` and
    ``<root>/<domains_dir>/*/products/*.yaml`` (the files :mod:`mesh_assets.contract.mesh` loads), those that exist, in
    that order, each group sorted."""
    root = Path(root)
    base = root / domains_dir
    return [p for p in [root / MESH_FILE] if p.is_file()] + sorted(base.glob(f"*/{DOMAIN_FILE}")) + sorted(
        base.glob("*/products/*.yaml"))


def mesh_files(root: Path, domains_dir: str = "domains") -> list[Path]:
    """Every file the secrets scan reads: ``<root>/mesh.yaml``, then every file under ``<root>/<domains_dir>``
    and under the dbt project ``<root>/dbt`` (its generated ``target``, ``logs`` and ``dbt_packages`` folders
    left out), each tree sorted; ``__pycache__`` folders are left out and symbolic links to folders not
    followed."""
    root = Path(root)
    found = [p for p in [root / MESH_FILE] if p.is_file()]
    for base, generated in ((root / domains_dir, frozenset()), (project_dir(root), GENERATED_DIRS)):
        tree: list[Path] = []
        for folder, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS and not (Path(folder) == base and d in generated)]
            tree += [Path(folder) / name for name in files]
        found += sorted(tree)
    return found


def scan_secrets(paths: list[Path]) -> list[Finding]:
    """One ``error`` :class:`Finding` (rule ``security/secret``) per secret literal written in ``paths``, and one
    (rule ``security/unscanned``) per file that could not be scanned: a ``warning`` for a binary file (or one
    that is not UTF-8), an ``error`` for a text file over :data:`~mesh_assets.yaml_source.MAX_FILE_BYTES`.

    Each secret's finding names the file, the line, the field (``servers[0].password``) when the line holds one,
    and the detector types that matched (``AWS Access Key``); the secret itself is never included. A value
    several detectors match on one line is one finding; the same value on two lines is two. Values that only
    *name* an environment variable (``password_env: MESH_PG_PASSWORD``, ``${MESH_PG_PASSWORD}``, ``{env:
    NAME}``) are not secrets.

    Rules: detect-secrets 1.5.0's detectors and default filters, minus the plugins in ``_EXCLUDED``, plus
    :func:`is_reference_or_identifier` (YAML values) or :func:`is_reference_or_identifier_in_text` (other
    lines), plus secret-named ``{property, value}`` pairs (see the module docstring). Missing files give no
    finding. Nothing leaves the machine: detect-secrets only verifies secrets online when asked to, and it is not.
    """
    everything = [{"name": n, **({"limit": _LIMITS[n]} if n in _LIMITS else {})}
                  for n in sorted(c.__name__ for c in get_mapping_from_secret_type_to_class().values())
                  if n not in _EXCLUDED]
    formats = [p for p in everything if p["name"] not in _CONTEXT_DETECTORS]
    files, findings = [], []
    for path in map(Path, paths):
        read = _read(path)
        if isinstance(read, Finding):
            findings.append(read)
        elif read is not None:
            files.append((path, *read))
    yaml_files = [(path, lines, values) for path, lines, values in files if values is not None]
    text_files = [(path, lines) for path, lines, values in files if values is None]
    # One entry per secret occurrence: keyed by the YAML value holding it (or its line), then its hash.
    found: dict[tuple[Path, Any, str], tuple[int, list[str], _Value | None]] = {}
    with _LOCK:
        with transient_settings({"plugins_used": formats}):
            for path, lines, values in yaml_files:
                for number, text in _pass_one_lines(lines, values):
                    for secret in scan.scan_line(text):
                        _add(found, path, number, secret.type, secret.secret_hash,
                             _holder(values, number, secret.secret_value))
        with transient_settings({"plugins_used": everything}) as settings:
            settings.filters[_OUR_FILTER] = {}  # scan_line reloads the filters
            for path, lines, values in yaml_files:
                for value, text in _pass_two_lines(lines, values):
                    for secret in scan.scan_line(text):  # else in the comment, or beyond the value's quotes
                        _add(found, path, value.first, secret.type, secret.secret_hash,
                             value if secret.secret_value in value.text else None)
        with transient_settings({"plugins_used": everything}) as settings:
            settings.filters[_TEXT_FILTER] = {}
            for path, lines in text_files:
                for number, text in enumerate(lines, 1):
                    if _TEXT_CANDIDATE.search(text) or _KEYWORD.search(text):
                        for secret in scan.scan_line(text):
                            _add(found, path, number, secret.type, secret.secret_hash, None)
    held = {id(value) for _, _, value in found.values() if value is not None}
    for path, _, values in yaml_files:
        for value in values:
            if value.pair and id(value) not in held and _secret_pair(value):
                _add(found, path, value.first, _PAIR_TYPE, PotentialSecret.hash_secret(value.text), value)
    text_lines = dict(text_files)
    for (path, _, _), (line, types, value) in sorted(found.items(), key=lambda i: (str(i[0][0]), i[1][0])):
        location = value.location if value else None
        key = value.key if value else _assigned_name(text_lines[path][line - 1]) if path in text_lines else None
        findings.append(Finding(
            severity="error", rule=RULE, file=path, line=line,
            field=format_location(list(location)) if location else None,
            message=f"{f'{key!r}' if key else 'this line'} holds a literal secret ({', '.join(types)}); secrets "
                    "come from environment variables, never from the mesh's files",
            fix=_fix(path, _env_name(key, types)),
        ))
    return findings


def is_reference_or_identifier(plugin: Any, line: str, secret: str) -> bool:
    """A detect-secrets filter for YAML values: it drops a candidate secret when it returns True.

    For the keyword detector, drops (1) values that name an environment variable (``MESH_PG_PASSWORD``,
    ``${MESH_PG_PASSWORD}``): that is the fix this module asks for, it must not be reported in turn; (2)
    keywords inside another field's text (``description: "password: stored hashed"``): in the transformed YAML
    line ``key: "value"`` the key itself must be a secret-like keyword.

    For the entropy detectors, drops identifiers: words of one case and numbers joined by ``-``, ``_``, ``.``
    or ``:`` (``2026-11-21-marketing_analytics-customer_profile`` measures 4.38 bits, a 32-character random key
    4.5), while random keys mix cases, or letters and digits, inside one run. Also drops what they did not find
    quoted: on a line without a quoted string of their charset, ``scan_line`` searches "eagerly", reporting every
    unquoted word without the entropy limit (meant for ad hoc strings); a file scan never does.
    """
    if type(plugin).__name__ == "KeywordDetector":
        if _ENV_NAME.match(secret.strip("'\"")):
            return True
        key = line.split(":", 1)[0].strip().strip("'\"-").strip()
        return not _secret_like(key)
    return is_reference_or_identifier_in_text(plugin, line, secret)


def is_reference_or_identifier_in_text(plugin: Any, line: str, secret: str) -> bool:
    """A detect-secrets filter for the lines of SQL, Python and other text files: as
    :func:`is_reference_or_identifier`, but the keyword detector's hits are only dropped when they name an
    environment variable (its regexes for code already need ``keyword = "value"``)."""
    name = type(plugin).__name__
    if name == "KeywordDetector":
        return bool(_ENV_NAME.match(secret.strip("'\"")))
    if name in _LIMITS:
        return bool(_IDENTIFIER.match(secret)) or not (f'"{secret}"' in line or f"'{secret}'" in line)
    return False


def _add(found: dict, path: Path, line: int, kind: str, secret_hash: str, value: _Value | None) -> None:
    """Record one hit of detector type ``kind``; hits of one secret in one YAML value (or on one line) merge, the
    first line is kept (pass 1's: the exact line, also inside a multi-line value)."""
    where = (value.first, value.location) if value else line
    _, types, _ = found.setdefault((path, where, secret_hash), (line, [], value))
    if kind not in types:
        types.append(kind)


def _read(path: Path) -> tuple[list[str], list[_Value] | None] | Finding | None:
    """The lines of ``path`` and, for a YAML file that composes, its scalars with their lines and fields
    (``None``: scan it line by line); a ``security/unscanned`` finding for a file too large, binary or unreadable;
    ``None`` for a missing file."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Finding("warning", UNSCANNED_RULE, f"cannot be read, so it was not scanned for secrets ({exc})",
                       "make it readable, or remove it from the mesh", path)
    try:
        text = data[:MAX_FILE_BYTES].decode("utf-8")
        binary = "\0" in text
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the limit is still text
        binary = not (len(data) > MAX_FILE_BYTES and exc.start >= MAX_FILE_BYTES - 4)
    if binary:
        return Finding("warning", UNSCANNED_RULE, "a binary (or not UTF-8) file, not scanned for secrets",
                       "keep data and binaries out of the mesh's folders (data lands in the landing zone); save "
                       "text as UTF-8", path)
    if len(data) > MAX_FILE_BYTES:
        return Finding("error", UNSCANNED_RULE, f"the file is {max(size, len(data)):,} bytes; the secrets scan "
                       f"reads files up to {MAX_FILE_BYTES:,} bytes (1 MiB), so it cannot show this one holds no "
                       "secret", "split it, or move the data out of the mesh's folders", path)
    lines = text.splitlines()
    if path.suffix not in YAML_SUFFIXES:
        return lines, None
    try:
        check_yaml_text(path, text)  # an alias bomb expands in the walk below; the loaders report it
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (ContractError, yaml.YAMLError):
        return lines, None
    values: list[_Value] = []
    stack: list[tuple[Any, tuple[str | int, ...], bool, str | None, bool]] = (
        [(root, (), False, None, False)] if root is not None else [])
    while stack:
        node, location, mapping_value, key, pair = stack.pop()
        if isinstance(node, yaml.MappingNode):
            keys = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            named = keys.get("property")
            is_pair = "value" in keys and isinstance(named, yaml.ScalarNode) and isinstance(named.value, str)
            stack += [(v, (*location, str(k.value)), True,
                       str(named.value) if is_pair and k.value == "value" else str(k.value),
                       is_pair and k.value == "value") for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, (*location, i), False, key, False) for i, v in enumerate(node.value)]
        elif isinstance(node, yaml.ScalarNode):
            first = node.start_mark.line + 1
            last = node.end_mark.line + (0 if node.end_mark.column else -1) + 1  # a block ends at column 0
            values.append(_Value(first, max(last, first), location, node.value, mapping_value,
                                 node.tag.endswith((":str", ":binary")), key, pair))
    return lines, sorted(values, key=lambda v: (v.first, len(v.location)))


def _pass_one_lines(lines: list[str], values: list[_Value]) -> list[tuple[int, str]]:
    """The numbered lines pass 2 does not see whole that some format detector could match: comments, list items,
    lines inside multi-line values, and every line of a file that is not valid YAML."""
    needed: set[int] = set()
    for v in values:
        if not (v.mapping_value and v.first == v.last):
            needed.update(range(v.first, v.last + 1))
    return [(n, text) for n, text in enumerate(lines, 1)
            if (not values or n in needed or text.lstrip().startswith("#")) and _CANDIDATE.search(text)]


def _pass_two_lines(lines: list[str], values: list[_Value]) -> list[tuple[_Value, str]]:
    """Each string mapping value some detector could match, as the line the YAML transformer makes of it:
    ``key: "value"`` (inner quotes escaped), then the comment of the value's first line."""
    out = []
    for v in values:
        if v.mapping_value and v.string:
            key, raw = str(v.key), lines[v.first - 1]
            match = _COMMENT.search(raw.strip()) if "#" in raw else None
            comment = match.group(0) if match else ""
            if _secret_like(key) or _CANDIDATE.search(v.text) or _CANDIDATE.search(comment):
                text = v.text.replace('"', '\\"')
                out.append((v, f'{key}: "{text}"{comment}'))
    return out


@lru_cache(maxsize=4096)
def _secret_like(key: str) -> bool:
    """Whether the keyword detector takes ``key`` for a secret's (``password``, ``db_pass``, ``api_key``)."""
    return bool(_KEYWORD.search(key))


def _holder(values: list[_Value], line: int, secret: str) -> _Value | None:
    """The value on (or spanning) ``line`` that holds ``secret``, else the shallowest field starting there."""
    spanning = [v for v in values if v.first <= line <= v.last]
    return (next((v for v in spanning if secret in v.text), None)
            or next((v for v in spanning if v.first == line), None))


def _assigned_name(line: str) -> str | None:
    """The secret-like name a line of code assigns (``DB_PASSWORD = "…"``, ``{% set db_password = '…' %}``,
    ``"api_key": "…"``), if any."""
    return next((m[1] for m in _ASSIGNED.finditer(line) if _secret_like(m[1]) or "access_key" in m[1].lower()),
                None)


def _secret_pair(value: _Value) -> bool:
    """Whether the value of a ``{property, value}`` pair is a literal secret: its property names a secret
    (``_SECRET_PROPERTY``, on the name in snake case), and it is a non-empty string that does not name an
    environment variable."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", value.key or "").lower().replace("-", "_").replace(".", "_")
    return (value.string and bool(value.text.strip()) and not _ENV_NAME.match(value.text.strip())
            and bool(_SECRET_PROPERTY.search(name)))


def _fix(path: Path, env: str) -> str:
    """How to take the secret out of ``path``, a file of kind told by its suffix; ``env`` a variable name."""
    if path.suffix == ".py":
        how = f'put it in an environment variable and read it with os.environ["{env}"]'
    elif path.suffix == ".sql":
        how = ("remove it: a transform reads only the mesh's ports and tables and needs no credential (the "
               f"mesh's own come from environment variables, e.g. {env})")
    else:
        how = f"move it to an environment variable (e.g. {env}) and reference it by name"
    return f"{how}; if it was ever committed, rotate it"


def _env_name(key: str | None, types: list[str]) -> str:
    """A conventional variable name for the fix: AWS's own for AWS keys, else ``MESH_<KEY>``."""
    if "AWS Access Key" in types:
        return "AWS_SECRET_ACCESS_KEY" if key and "secret" in key.lower() else "AWS_ACCESS_KEY_ID"
    name = re.sub(r"[^A-Za-z0-9]+", "_", key or "secret").strip("_").upper()
    return name if name.startswith("MESH_") else f"MESH_{name}"
