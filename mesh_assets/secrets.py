"""Refuse secrets written into the mesh's YAML: salts, object-store keys, database URLs come from the environment.

Detection is Yelp's ``detect-secrets`` (1.5.0, pinned), not regexes of our own, in two passes per file:

1. its *format* detectors (AWS keys, private keys, ``scheme://user:password@host`` URLs, GitHub, Slack, Stripe,
   … tokens) line by line on what pass 2 does not see whole: comments, list items, the lines inside block
   scalars (a private key's header is found on its own line);
2. every detector through its YAML transformer, which turns each mapping value into a quoted ``key: "value"``
   line, so unquoted YAML values are judged like quoted strings (some format detectors, e.g. the AWS secret
   key's, need the quotes). The *context* detectors run only here: the keyword detector (``password: …``,
   ``secret_key: …``) and the base64 and hex entropy detectors (a random PII salt). Comments and list items are
   not values there, which keeps prose and ``validValues`` codes away from the detectors that guess.

The transformer's line numbers drift after a flow mapping holding several values on one line (upstream issues
Yelp/detect-secrets#632, #503), which every contract has (``- {name: …, logicalType: …}``). Pass 2's hits are
therefore put back on the line of the YAML value that holds them, found by composing the file with PyYAML.
A line carrying ``# pragma: allowlist secret`` is skipped (detect-secrets' own escape hatch for a false alarm).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from detect_secrets.core import scan
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.keyword import DENYLIST_REGEX_WITH_PREFIX
from detect_secrets.settings import get_filters, transient_settings

from mesh_assets.findings import Finding
from mesh_assets.yaml_source import format_location

RULE = "security/secret"
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
_KEYWORD = re.compile(DENYLIST_REGEX_WITH_PREFIX, re.IGNORECASE)
_WORD = r"(?:[a-z]{1,20}[0-9]*|[A-Z]{1,20}[0-9]*|[0-9]+)"  # a word of one case (maybe numbered: q10), a number
_IDENTIFIER = re.compile(rf"^{_WORD}(?:[-_.:]{_WORD})*$")
_ENV_NAME = re.compile(r"^\$?\{?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\}?$")  # MESH_PG_PASSWORD, ${MESH_PG_PASSWORD}
# detect-secrets keeps its settings in a process-wide singleton that transient_settings swaps in and out.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Value:
    """A string scalar of the YAML file: its first and last line, its field, and whether it is a mapping value
    (what detect-secrets' YAML transformer scans) rather than a list item or a key."""

    first: int
    last: int
    location: tuple[str | int, ...]
    text: str
    mapping_value: bool


def all_mesh_yaml(root: Path, domains_dir: str = "domains") -> list[Path]:
    """The mesh's YAML files: ``<root>/mesh.yaml``, ``<root>/<domains_dir>/*/domain.yaml`` and
    ``<root>/<domains_dir>/*/products/*.yaml`` (the files :mod:`mesh_assets.mesh` loads), those that exist, in
    that order, each group sorted."""
    root = Path(root)
    base = root / domains_dir
    return [p for p in [root / MESH_FILE] if p.is_file()] + sorted(base.glob(f"*/{DOMAIN_FILE}")) + sorted(
        base.glob("*/products/*.yaml"))


def scan_secrets(paths: list[Path]) -> list[Finding]:
    """One ``error`` :class:`Finding` (rule ``security/secret``) per secret literal written in ``paths``.

    Each finding names the file, the line, the field (``servers[0].password``) when the line holds one, and the
    detector types that matched (``AWS Access Key``); the secret itself is never included. A value several
    detectors match on one line is one finding; the same value on two lines is two. Values that only *name* an
    environment variable (``password_env: MESH_PG_PASSWORD``, ``${MESH_PG_PASSWORD}``, ``{env: NAME}``) are not
    secrets.

    Rules: detect-secrets 1.5.0's detectors and default filters, minus the plugins in ``_EXCLUDED``, plus
    :func:`is_reference_or_identifier`. Missing or unreadable files give no finding (the loaders report those).
    Nothing leaves the machine: detect-secrets only verifies secrets online when asked to, and it is not.
    """
    everything = [{"name": n, **({"limit": _LIMITS[n]} if n in _LIMITS else {})}
                  for n in sorted(c.__name__ for c in get_mapping_from_secret_type_to_class().values())
                  if n not in _EXCLUDED]
    formats = [p for p in everything if p["name"] not in _CONTEXT_DETECTORS]
    paths = [Path(p) for p in paths]
    values = {path: _values(path) for path in paths}
    # One entry per secret occurrence: keyed by the YAML value holding it (or its line), then its hash.
    found: dict[tuple[Path, Any, str], tuple[int, list[str], _Value | None]] = {}
    with _LOCK:
        with transient_settings({"plugins_used": formats}):
            for path in paths:
                for number, text in _pass_one_lines(path, values[path]):
                    for secret in scan.scan_line(text):
                        _add(found, path, number, secret, _holder(values[path], number, secret.secret_value))
        with transient_settings({"plugins_used": everything}) as settings:
            settings.filters[_OUR_FILTER] = {}
            get_filters.cache_clear()
            for path in paths:
                for number, secret, value in _place(values[path], list(scan.scan_file(str(path)))):
                    _add(found, path, number, secret, value)
    findings = []
    for (path, _, _), (line, types, value) in sorted(found.items(), key=lambda i: (str(i[0][0]), i[1][0])):
        location = value.location if value else None
        key = next((p for p in reversed(location or ()) if isinstance(p, str)), None)
        findings.append(Finding(
            severity="error", rule=RULE, file=path, line=line,
            field=format_location(list(location)) if location else None,
            message=f"{f'{key!r}' if key else 'this line'} holds a literal secret ({', '.join(types)}); secrets "
                    "come from environment variables, never from YAML",
            fix=f"move it to an environment variable (e.g. {_env_name(key, types)}) and reference it by name; "
                "if it was ever committed, rotate it",
        ))
    return findings


def is_reference_or_identifier(plugin: Any, line: str, secret: str) -> bool:
    """A detect-secrets filter: it drops a candidate secret when it returns True.

    For the keyword detector, drops (1) values that name an environment variable (``MESH_PG_PASSWORD``,
    ``${MESH_PG_PASSWORD}``): that is the fix this module asks for, it must not be reported in turn; (2)
    keywords inside another field's text (``description: "password: stored hashed"``): in the transformed YAML
    line ``key: "value"`` the key itself must be a secret-like keyword.

    For the entropy detectors, drops identifiers: words of one case and numbers joined by ``-``, ``_``, ``.``
    or ``:`` (``2026-11-21-marketing_analytics-customer_profile`` measures 4.38 bits, a 32-character random key
    4.5), while random keys mix cases, or letters and digits, inside one run.
    """
    name = type(plugin).__name__
    if name == "KeywordDetector":
        if _ENV_NAME.match(secret.strip("'\"")):
            return True
        key = line.split(":", 1)[0].strip().strip("'\"-").strip()
        return not _KEYWORD.search(key)
    if name in _LIMITS:
        return bool(_IDENTIFIER.match(secret))
    return False


def _add(found: dict, path: Path, line: int, secret: Any, value: _Value | None) -> None:
    """Record one hit; hits of one secret in one YAML value (or on one line) merge, the first line is kept
    (pass 1's: the exact line, also inside a block scalar)."""
    where = (value.first, value.location) if value else line
    _, types, _ = found.setdefault((path, where, secret.secret_hash), (line, [], value))
    if secret.type not in types:
        types.append(secret.type)


def _pass_one_lines(path: Path, values: list[_Value]) -> list[tuple[int, str]]:
    """The lines pass 2 does not see whole: comments, list items, lines inside multi-line values, and every
    line of a file that is not valid YAML. A line holding only one-line mapping values is left to pass 2, which
    runs the format detectors too (halves the cost)."""
    try:
        lines = list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))
    except (OSError, UnicodeDecodeError):
        return []
    if not values:
        return lines
    needed: set[int] = set()
    for v in values:
        if not (v.mapping_value and v.first == v.last):
            needed.update(range(v.first, v.last + 1))
    return [(n, text) for n, text in lines if n in needed or text.lstrip().startswith("#")]


def _values(path: Path) -> list[_Value]:
    """Every string scalar of ``path`` with its lines and field (empty when the file is not valid YAML)."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    out: list[_Value] = []
    stack: list[tuple[Any, tuple[str | int, ...], bool]] = [(root, (), False)] if root is not None else []
    while stack:
        node, location, mapping_value = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack += [(v, (*location, str(k.value)), True) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, (*location, i), False) for i, v in enumerate(node.value)]
        elif isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
            last = node.end_mark.line + (0 if node.end_mark.column else -1) + 1  # a block ends at column 0
            out.append(_Value(node.start_mark.line + 1, max(last, node.start_mark.line + 1), location, node.value,
                              mapping_value))
    return sorted(out, key=lambda v: (v.first, len(v.location)))


def _holder(values: list[_Value], line: int, secret: str) -> _Value | None:
    """The value on (or spanning) ``line`` that holds ``secret``, else the shallowest field starting there."""
    spanning = [v for v in values if v.first <= line <= v.last]
    return (next((v for v in spanning if secret in v.text), None)
            or next((v for v in spanning if v.first == line), None))


def _place(values: list[_Value], secrets: list[Any]) -> list[tuple[int, Any, _Value | None]]:
    """Each of detect-secrets' YAML hits on the line of the mapping value that holds it.

    The transformer's line numbers drift *down* the file, so the true line is at most the reported one: going
    from the last hit up, each takes the last free value at or above its line that holds its secret (free per
    secret, so a value repeated on two lines stays two hits); failing that, the first free one below. Without
    such a value the reported line is kept.
    """
    placed, taken = [], set()
    for secret in sorted(secrets, key=lambda s: s.line_number, reverse=True):
        free = [v for v in values if v.mapping_value and secret.secret_value in v.text
                and (v, secret.secret_hash, secret.type) not in taken]
        above = [v for v in free if v.first <= secret.line_number]
        value = above[-1] if above else (free[0] if free else None)
        if value is not None:
            taken.add((value, secret.secret_hash, secret.type))
        placed.append((value.first if value else secret.line_number, secret, value))
    return placed


def _env_name(key: str | None, types: list[str]) -> str:
    """A conventional variable name for the fix: AWS's own for AWS keys, else ``MESH_<KEY>``."""
    if "AWS Access Key" in types:
        return "AWS_SECRET_ACCESS_KEY" if key and "secret" in key.lower() else "AWS_ACCESS_KEY_ID"
    name = re.sub(r"[^A-Za-z0-9]+", "_", key or "secret").strip("_").upper()
    return name if name.startswith("MESH_") else f"MESH_{name}"
