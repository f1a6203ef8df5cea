"""Refuse secrets written into the mesh's YAML: salts, object-store keys, database URLs come from the environment.

Detection is Yelp's ``detect-secrets`` (1.5.0, pinned), not regexes of our own: its ``scan_line``, in two passes
per file (composed once with PyYAML's C loader):

1. its *format* detectors (AWS keys, private keys, ``scheme://user:password@host`` URLs, GitHub, Slack, Stripe,
   … tokens) on the lines pass 2 does not see whole: comments, list items, the lines of multi-line values (a
   private key's header is found on its own line), all lines of a file that is not valid YAML;
2. every detector on each string mapping value, written as its YAML transformer writes it: ``key: "value"``
   (quoted, as the AWS secret key and entropy detectors require) and the line's comment, found on the value's
   line (the transformer itself parses in pure Python and its lines drift, Yelp/detect-secrets#632, #503). The
   *context* detectors run only here: keyword (``password: …``), base64 and hex entropy (a random PII salt), so
   comments and list items (prose, ``validValues`` codes) stay away from the detectors that guess.

A cheap regex (``_CANDIDATE``) first drops what no detector could match: ``scan_line`` costs ~0.6 ms a line. A line
carrying ``# pragma: allowlist secret`` is skipped (detect-secrets' own escape hatch for a false alarm).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from detect_secrets.core import scan
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.keyword import DENYLIST
from detect_secrets.settings import transient_settings

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
_COMMENT = re.compile(r"\s+#[\S ]*")  # the transformer's: what follows whitespace and `#` on a value's line
_WORD = r"(?:[a-z]{1,20}[0-9]*|[A-Z]{1,20}[0-9]*|[0-9]+)"  # a word of one case (maybe numbered: q10), a number
_IDENTIFIER = re.compile(rf"^{_WORD}(?:[-_.:]{_WORD})*$")
_ENV_NAME = re.compile(r"^\$?\{?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\}?$")  # MESH_PG_PASSWORD, ${MESH_PG_PASSWORD}
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
    files = [(path, *_read(path)) for path in map(Path, paths)]
    # One entry per secret occurrence: keyed by the YAML value holding it (or its line), then its hash.
    found: dict[tuple[Path, Any, str], tuple[int, list[str], _Value | None]] = {}
    with _LOCK:
        with transient_settings({"plugins_used": formats}):
            for path, lines, values in files:
                for number, text in _pass_one_lines(lines, values):
                    for secret in scan.scan_line(text):
                        _add(found, path, number, secret, _holder(values, number, secret.secret_value))
        with transient_settings({"plugins_used": everything}) as settings:
            settings.filters[_OUR_FILTER] = {}  # scan_line reloads the filters
            for path, lines, values in files:
                for value, text in _pass_two_lines(lines, values):
                    for secret in scan.scan_line(text):  # else in the comment, or beyond the value's quotes
                        _add(found, path, value.first, secret, value if secret.secret_value in value.text else None)
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
    4.5), while random keys mix cases, or letters and digits, inside one run. Also drops what they did not find
    quoted: on a line without a quoted string of their charset, ``scan_line`` searches "eagerly", reporting every
    unquoted word without the entropy limit (meant for ad hoc strings); a file scan never does.
    """
    name = type(plugin).__name__
    if name == "KeywordDetector":
        if _ENV_NAME.match(secret.strip("'\"")):
            return True
        key = line.split(":", 1)[0].strip().strip("'\"-").strip()
        return not _secret_like(key)
    if name in _LIMITS:
        return bool(_IDENTIFIER.match(secret)) or not (f'"{secret}"' in line or f"'{secret}'" in line)
    return False


def _add(found: dict, path: Path, line: int, secret: Any, value: _Value | None) -> None:
    """Record one hit; hits of one secret in one YAML value (or on one line) merge, the first line is kept
    (pass 1's: the exact line, also inside a multi-line value)."""
    where = (value.first, value.location) if value else line
    _, types, _ = found.setdefault((path, where, secret.secret_hash), (line, [], value))
    if secret.type not in types:
        types.append(secret.type)


def _read(path: Path) -> tuple[list[str], list[_Value]]:
    """The lines of ``path`` and its scalars with their lines and fields (none when the file is not valid YAML;
    neither when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [], []
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return text.splitlines(), []
    values: list[_Value] = []
    stack: list[tuple[Any, tuple[str | int, ...], bool]] = [(root, (), False)] if root is not None else []
    while stack:
        node, location, mapping_value = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack += [(v, (*location, str(k.value)), True) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, (*location, i), False) for i, v in enumerate(node.value)]
        elif isinstance(node, yaml.ScalarNode):
            first = node.start_mark.line + 1
            last = node.end_mark.line + (0 if node.end_mark.column else -1) + 1  # a block ends at column 0
            values.append(_Value(first, max(last, first), location, node.value, mapping_value,
                                 node.tag.endswith((":str", ":binary"))))
    return text.splitlines(), sorted(values, key=lambda v: (v.first, len(v.location)))


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
            key, raw = str(v.location[-1]), lines[v.first - 1]
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


def _env_name(key: str | None, types: list[str]) -> str:
    """A conventional variable name for the fix: AWS's own for AWS keys, else ``MESH_<KEY>``."""
    if "AWS Access Key" in types:
        return "AWS_SECRET_ACCESS_KEY" if key and "secret" in key.lower() else "AWS_ACCESS_KEY_ID"
    name = re.sub(r"[^A-Za-z0-9]+", "_", key or "secret").strip("_").upper()
    return name if name.startswith("MESH_") else f"MESH_{name}"
