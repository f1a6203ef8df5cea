"""Secrets written into the mesh's YAML are refused (file, line, detector type, never the secret itself); the
reference mesh has none, and a value that names an environment variable is not a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

from mesh_assets.governance.secrets import all_mesh_yaml, scan_secrets

REPO = Path(__file__).parent.parent
AWS_EXAMPLE_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id
PG_URL = "postgresql://user:password@host/db"
PASSWORD = "s3cr3t-Passw0rd"


def _append(path: Path, text: str) -> int:
    """Append ``text`` to ``path``; return the line number of its first line."""
    existing = path.read_text()
    if not existing.endswith("\n"):
        existing += "\n"
    path.write_text(existing + text)
    return existing.count("\n") + 1


def _contract(root: Path) -> Path:
    return root / "domains" / "shop" / "products" / "orders.yaml"


def _assert_no_secret_in(findings, *secrets: str) -> None:
    for finding in findings:
        text = str(finding) + str(finding.to_dict())
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize(("yaml_text", "offset", "detector", "field"), [
    (f"servers:\n  - {{server: lake, type: s3, location: 's3://bucket/mesh'}}\naccess_key_id: {AWS_EXAMPLE_KEY}\n",
     2, "AWS Access Key", "access_key_id"),
    (f"customProperties:\n  - property: warehouse\n    value: {PG_URL}\n", 2, "Basic Auth Credentials",
     "customProperties[0].value"),
    (f"customProperties:\n  - {{property: export, value: x}}\npassword: {PASSWORD}\n", 2, "Secret Keyword",
     "password"),
    (("signing_key: |\n  -----BEGIN RSA PRIVATE KEY-----\n  MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM\n"
      "  -----END RSA PRIVATE KEY-----\n"), 1, "Private Key", "signing_key"),
    # a list item, on the line of a flow mapping
    (f"tags: [finance, {PG_URL}]\n", 0, "Basic Auth Credentials", "tags[1]"),
])
def test_a_secret_in_a_contract_is_an_error_naming_file_line_and_detector(
        tiny_root: Path, yaml_text: str, offset: int, detector: str, field: str) -> None:
    contract = _contract(tiny_root)
    expected_line = _append(contract, yaml_text) + offset

    findings = scan_secrets(all_mesh_yaml(tiny_root, "domains"))

    assert len(findings) == 1, [str(f) for f in findings]
    finding = findings[0]
    assert (finding.severity, finding.rule, finding.file, finding.line) == ("error", "security/secret", contract,
                                                                           expected_line)
    assert finding.field == field
    assert detector in finding.message
    assert "environment variable" in finding.fix
    text = str(finding)
    assert f"{contract}:{expected_line}: error [security/secret]" in text
    _assert_no_secret_in(findings, AWS_EXAMPLE_KEY, "user:password", PASSWORD, "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM")


def test_every_secret_of_every_file_is_reported_at_once(tiny_root: Path) -> None:
    """mesh.yaml and domain.yaml are scanned too; the same literal on two lines is two findings."""
    mesh_line = _append(tiny_root / "mesh.yaml", f"warehouse_url: {PG_URL}\n")
    domain = tiny_root / "domains" / "shop" / "domain.yaml"
    domain_line = _append(domain, f"password: {PASSWORD}\nbackup_password: {PASSWORD}\n")
    findings = scan_secrets(all_mesh_yaml(tiny_root, "domains"))
    assert [(f.file.name, f.line) for f in findings] == [
        ("domain.yaml", domain_line), ("domain.yaml", domain_line + 1), ("mesh.yaml", mesh_line)]


def test_aws_key_pair_names_the_standard_variables(tiny_root: Path) -> None:
    _append(_contract(tiny_root), f"aws_access_key_id: {AWS_EXAMPLE_KEY}\n"
                                  "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    findings = scan_secrets([_contract(tiny_root)])
    assert len(findings) == 2  # one per secret, even where several detectors matched it
    assert "AWS_ACCESS_KEY_ID" in findings[0].fix and "AWS_SECRET_ACCESS_KEY" in findings[1].fix
    assert "AWS Access Key" in findings[1].message and "Base64 High Entropy String" in findings[1].message


def test_lines_are_exact_after_flow_mappings(tiny_root: Path) -> None:
    """detect-secrets' YAML transformer miscounts lines after a flow mapping with several values on one line
    (every contract has them); findings are put back on the line of the value."""
    contract = _contract(tiny_root)
    lines = contract.read_text().splitlines()
    after = next(i for i, ln in enumerate(lines) if ln.startswith("      - {name: customer,") and "required" in ln)
    lines.insert(after + 1, f"      - {{name: secret_token, description: x, password: {PASSWORD}}}")
    contract.write_text("\n".join(lines) + "\n")
    line = after + 2
    [finding] = scan_secrets([contract])
    assert finding.line == line and finding.field == "schema[0].properties[2].password"


def test_a_secret_deep_in_a_long_contract_is_found_at_its_line(tiny_root: Path) -> None:
    """Thousands of ordinary contract lines around a few secrets: each is found on its own line and field."""
    contract = _contract(tiny_root)
    rows = [f"  - {{name: col_{i}, logicalType: string, physicalType: VARCHAR, required: true, description: Column "
            f"{i} of the wide table., logicalTypeOptions: {{maxLength: 64}}}}" for i in range(3000)]
    rows[1234] = f"  - {{name: col_1234, logicalType: string, password: {PASSWORD}, description: Col.}}"
    rows[2345] = f"  # rotated on 2026-11-21, was {AWS_EXAMPLE_KEY}"
    rows[2999] = f"  - {{name: last, customProperties: [{{property: dsn, value: '{PG_URL}'}}]}}"
    first = _append(contract, "wideColumns:\n" + "\n".join(rows) + "\n") + 1
    findings = scan_secrets([contract])
    assert [(f.line, f.field) for f in findings] == [
        (first + 1234, "wideColumns[1234].password"), (first + 2345, None),
        (first + 2999, "wideColumns[2998].customProperties[0].value")]  # the comment is no list item
    for finding, detector in zip(findings, ["Secret Keyword", "AWS Access Key", "Basic Auth Credentials"]):
        assert detector in finding.message


@pytest.mark.parametrize(("secret", "detector"), [
    ("xoxb-1-a", "Slack Token"),
    ("eyJhIjoxfQ.e30", "JSON Web Token"),
    ("AKCabcdefghij", "Artifactory Credentials"),
    ("AP6abcdefgh", "Artifactory Credentials"),
    ("s3://ab:pw9@h", "Basic Auth Credentials"),
    ("// r/:_authToken= npm_x", "NPM tokens"),
    ("9f8a6d0b1e4c", "Hex High Entropy String"),
])
def test_short_secrets_pass_the_pre_screen(tiny_root: Path, secret: str, detector: str) -> None:
    """Shorter than the screen's 20-character runs, yet recognised by a detector: screened in by their shape."""
    line = _append(tiny_root / "mesh.yaml", f"note: '{secret}'\n")
    [finding] = scan_secrets([tiny_root / "mesh.yaml"])
    assert finding.line == line and detector in finding.message


def test_the_pre_screen_was_reviewed_for_every_detector() -> None:
    """`_CANDIDATE` in mesh_assets/governance/secrets.py is derived from these detectors' regexes: a detect-secrets
    upgrade that adds or renames one must be checked against it (and the list below updated)."""
    assert sorted(c.__name__ for c in get_mapping_from_secret_type_to_class().values()) == [
        "AWSKeyDetector", "ArtifactoryDetector", "AzureStorageKeyDetector", "Base64HighEntropyString",
        "BasicAuthDetector", "CloudantDetector", "DiscordBotTokenDetector", "GitHubTokenDetector",
        "GitLabTokenDetector", "HexHighEntropyString", "IPPublicDetector", "IbmCloudIamDetector",
        "IbmCosHmacDetector", "JwtTokenDetector", "KeywordDetector", "MailchimpDetector", "NpmDetector",
        "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector", "SlackDetector",
        "SoftlayerDetector", "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector",
        "TwilioKeyDetector"]


def test_a_random_salt_is_found_by_entropy(tiny_root: Path) -> None:
    line = _append(tiny_root / "mesh.yaml", "pii_salt: 9f86d081884c7d659a2feaa0c55ad015\n")
    [finding] = scan_secrets([tiny_root / "mesh.yaml"])
    assert finding.line == line and "Hex High Entropy String" in finding.message
    assert "MESH_PII_SALT" in finding.fix


def test_a_random_key_is_found_by_entropy(tiny_root: Path) -> None:
    line = _append(tiny_root / "mesh.yaml", "object_store:\n  signing: 'q7Zr9xLk2VbN4mTp8HsW1cYd6FgJ3aQe'\n")
    [finding] = scan_secrets([tiny_root / "mesh.yaml"])
    assert finding.line == line + 1 and "Base64 High Entropy String" in finding.message
    assert finding.field == "object_store.signing" and "MESH_SIGNING" in finding.fix


def test_a_secret_in_a_comment_is_found_at_its_line(tiny_root: Path) -> None:
    line = _append(_contract(tiny_root), f"# old key, do not use: {AWS_EXAMPLE_KEY}\n")
    [finding] = scan_secrets([_contract(tiny_root)])
    assert finding.line == line and "AWS Access Key" in finding.message and finding.field is None


def test_names_of_environment_variables_and_prose_are_not_secrets(tiny_root: Path) -> None:
    _append(tiny_root / "mesh.yaml", (
        "warehouse:\n"
        "  password_env: MESH_PG_PASSWORD\n"
        "  password: ${MESH_PG_PASSWORD}\n"
        "  secret_access_key: {env: AWS_SECRET_ACCESS_KEY}\n"
        "  url: postgresql://db.internal:5432/mesh\n"
        "note: 'password: stored hashed with the salt, never in clear'\n"
        "request: 2026-11-21-marketing_analytics-customer_lifetime_value_by_region\n"
        "check: tpch-q10-returned_items_by_customer_nation_and_quarter\n"
        "pattern: '^[0-9a-f]{64}$'\n"
        "# the password column is hashed; secret: see the vault\n"
    ))
    assert scan_secrets([tiny_root / "mesh.yaml"]) == []


def test_the_reference_mesh_has_no_secret() -> None:
    paths = all_mesh_yaml(REPO, "domains")
    assert REPO / "mesh.yaml" in paths and len(paths) >= 10
    assert scan_secrets(paths) == []
    tiny = REPO / "tests" / "fixtures" / "tiny_mesh"
    assert scan_secrets([*all_mesh_yaml(tiny, "domains"), REPO / "dagster.yaml", REPO / "workspace.yaml"]) == []


def test_all_mesh_yaml_lists_the_files_the_mesh_loads(tiny_root: Path) -> None:
    (tiny_root / "domains" / "shop" / "sql" / "notes.yaml").write_text("not: loaded\n")
    assert all_mesh_yaml(tiny_root, "domains") == [
        tiny_root / "mesh.yaml",
        tiny_root / "domains" / "shop" / "domain.yaml",
        tiny_root / "domains" / "shop" / "products" / "customers.yaml",
        tiny_root / "domains" / "shop" / "products" / "orders.yaml",
    ]
    assert all_mesh_yaml(tiny_root / "nowhere", "domains") == []


def test_detect_secrets_allowlist_pragma_marks_a_false_alarm(tiny_root: Path) -> None:
    line = _append(tiny_root / "mesh.yaml", "password: not-a-secret-really  # pragma: allowlist secret\n"
                                            f"password2: {PASSWORD}\n")
    assert [f.line for f in scan_secrets([tiny_root / "mesh.yaml"])] == [line + 1]
