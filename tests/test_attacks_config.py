"""Attacks through the mesh's configuration files (issue "Security that holds", items 7 and 9), as written there.

7. A 307-byte YAML alias bomb ("billion laughs") in a domain's ``products/`` (or ``domain.yaml``, ``mesh.yaml``, an
   access request) is refused before it expands: ``mesh validate`` reports a finding naming the file, and the
   code-location load, ``mesh run`` and ``mesh access list`` stop with a message naming it, never with a memory
   error. The commands run in a child process whose address space is capped (``RLIMIT_AS``), so the unmodified
   code dies there instead of exhausting the machine. An oversized file is refused with its size.
9. The secrets scan covers every file of a domain and of the dbt project, not only the YAML the mesh loads:
   an AWS key or a password in SQL, a dbt model, a Python transform or an access request, and an ODCS
   ``{property: db_password, value: …}`` pair, are each an error with file and line; environment references
   are not.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from mesh_assets.cli.validate import validate
MAX_FILE_BYTES = 1024 * 1024  # the documented limit of a YAML file of the mesh, and of a file the secrets scan reads

REPO = Path(__file__).parent.parent
MESH = Path(sys.executable).with_name("mesh")
ADDRESS_SPACE = 3 * 1024**3  # `mesh run` of the tiny mesh needs under 2 GiB; the bomb's expansion far more
AWS_EXAMPLE_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id
PASSWORD = "hunter2-secret"
REFUSAL = "YAML anchors and aliases (&name / *name) are not allowed in"

# The bomb: 9 strings, then 7 levels of 9 aliases each (9**8 = 43 million strings once expanded).
_BOMB_LINES = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh")]
BOMB = "\n".join(_BOMB_LINES) + "\n"


def _shop(root: Path) -> Path:
    return root / "domains" / "shop"


def _limited(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` with this worktree first on the path and the address space capped."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(cwd / ".dagster")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE)))


def _assert_refused_by_message(proc: subprocess.CompletedProcess[str], code: int, file: Path) -> None:
    """Exit ``code`` with the refusal naming ``file``; no traceback and no memory error."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output[-3000:]
    assert "Traceback" not in output and "memory" not in output.lower(), output[-3000:]
    assert str(file) in output and REFUSAL in output, output[-3000:]


def _bomb_in(root: Path, where: str) -> Path:
    """Put the bomb where the test says, with an alias where the mesh reads a value; return the file."""
    if where == "products":
        path = _shop(root) / "products" / "bomb.yaml"
        assert len(BOMB.encode()) == 307
        path.write_text(BOMB)
    elif where == "domain.yaml":
        path = _shop(root) / "domain.yaml"
        path.write_text(path.read_text().replace('ingestion_schedule: "0 3 * * *"\n', "")
                        + BOMB + "ingestion_schedule: *h\n")
    else:
        path = root / "mesh.yaml"
        path.write_text(path.read_text() + "lol:\n" + "".join(f"  {line}\n" for line in _BOMB_LINES)
                        + "name: *h\n")
    return path


# --- 7. YAML alias bombs ------------------------------------------------------------------------------------


@pytest.mark.slow  # a child process with its address space capped (each start imports the framework)
@pytest.mark.parametrize("where", ["products", "domain.yaml", "mesh.yaml"])
def test_an_alias_bomb_is_a_validate_finding_naming_the_file(tiny_root: Path, where: str) -> None:
    bomb = _bomb_in(tiny_root, where)
    proc = _limited([str(MESH), "validate", "--format", "json"], tiny_root)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" not in proc.stderr and "memory" not in proc.stderr.lower(), proc.stderr[-3000:]
    findings = json.loads(proc.stdout)["findings"]
    refusals = [f for f in findings if REFUSAL in f["message"]]
    line = bomb.read_text()[:bomb.read_text().index("&a")].count("\n") + 1  # the first anchor's
    assert [(f["file"], f["line"]) for f in refusals] == [(str(bomb.relative_to(tiny_root)), line)], findings


@pytest.mark.slow  # a child process with its address space capped (each start imports the framework)
@pytest.mark.parametrize("where", ["products", "domain.yaml", "mesh.yaml"])
def test_an_alias_bomb_stops_the_code_location_load_with_a_mesh_error(tiny_root: Path, where: str) -> None:
    bomb = _bomb_in(tiny_root, where)
    script = ("import sys\nfrom mesh_assets.orchestration.definitions import build_domain_definitions\n"
              "from mesh_assets.errors import MeshError\n"
              f"try:\n    build_domain_definitions({str(_shop(tiny_root))!r})\n"
              "except MeshError as exc:\n    print(exc)\n    sys.exit(3)\n")
    _assert_refused_by_message(_limited([sys.executable, "-c", script], tiny_root), 3, bomb)


@pytest.mark.slow  # a child process with its address space capped (each start imports the framework)
def test_an_alias_bomb_in_products_stops_mesh_run_with_a_message(tiny_root: Path) -> None:
    bomb = _bomb_in(tiny_root, "products")
    _assert_refused_by_message(_limited([str(MESH), "run"], tiny_root), 2, bomb)


@pytest.mark.slow  # a child process with its address space capped (each start imports the framework)
def test_an_alias_bomb_in_an_access_request_is_listed_as_invalid_with_a_message(tiny_root: Path) -> None:
    request = _shop(tiny_root) / "access" / "2026-01-01-shop-orders.yaml"
    request.parent.mkdir()
    request.write_text(BOMB + "id: 2026-01-01-shop-orders\nport: shop.order_totals\nconsumer: shop\npurpose: *h\n"
                       "pii: false\nrequested_by: eve@example.com\nrequested_at: '2026-01-01T00:00:00+00:00'\n"
                       "status: pending\n")
    listed = _limited([str(MESH), "access", "list", "--format", "json"], tiny_root)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr and "memory" not in listed.stderr.lower()
    row = next(r for r in json.loads(listed.stdout) if r["file"].endswith(request.name))
    assert row["valid"] is False and "access request files" in row["problem"] and REFUSAL in row["problem"]


def test_an_oversized_contract_is_refused_with_its_size(tiny_root: Path) -> None:
    contract = _shop(tiny_root) / "products" / "orders.yaml"
    text = contract.read_text()
    padding = "# padding\n" * (MAX_FILE_BYTES // 10)
    contract.write_text(text + padding)
    size = len((text + padding).encode())
    assert size > MAX_FILE_BYTES
    report = validate(tiny_root)
    [refusal] = [f for f in report.errors if f.rule == "structure/contract"]
    assert refusal.file == contract, refusal
    assert f"{size:,} bytes" in refusal.message and f"{MAX_FILE_BYTES:,} bytes" in refusal.message


# --- 9. the secrets scan covers every file ----------------------------------------------------------------------


def _secret_findings(root: Path) -> list:
    return [f for f in validate(root).findings if f.rule == "security/secret"]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _plant(root: Path, kind: str, secret: str) -> tuple[Path, int]:
    """Write a file of ``kind`` holding ``secret`` (an AWS key or a password assignment) on one line; return the
    file and that line."""
    aws = secret == "aws"
    if kind == "sql":
        path = _shop(root) / "sql" / "silver" / "orders.sql"
        line = f"-- loaded with key {AWS_EXAMPLE_KEY}" if aws else f"-- connect with password = '{PASSWORD}'"
        lines = [line, *path.read_text().splitlines()]
        number = 1
    elif kind == "dbt":
        path = root / "dbt" / "models" / "shop" / "order_summary.sql"
        line = f"{{# key {AWS_EXAMPLE_KEY} #}}" if aws else f"{{% set db_password = '{PASSWORD}' %}}"
        lines = ["{{ config(materialized='table') }}", line, "select customer from {{ source('shop', 'orders') }}"]
        number = 2
    elif kind == "python":
        path = _shop(root) / "python" / "gold" / "top_customers.py"
        line = f'AWS_ACCESS_KEY_ID = "{AWS_EXAMPLE_KEY}"' if aws else f'DB_PASSWORD = "{PASSWORD}"'
        lines = ['"""Top customers."""', "", line, "", "def transform(inputs, session):",
                 '    return inputs["silver.orders"]']
        number = 3
    else:
        path = _shop(root) / "access" / "2026-01-01-billing-order_totals.yaml"
        line = f"aws_access_key_id: {AWS_EXAMPLE_KEY}" if aws else f"password: {PASSWORD}"
        lines = ["id: 2026-01-01-billing-order_totals", "port: shop.order_totals", "consumer: billing",
                 "purpose: Invoices.", line, "pii: false", "requested_by: ann@example.com",
                 "requested_at: '2026-01-01T00:00:00+00:00'", "status: pending"]
        number = 5
    _write_lines(path, lines)
    return path, number


@pytest.mark.parametrize("secret", ["aws", "password"])
@pytest.mark.parametrize("kind", ["sql", "dbt", "python", "access"])
def test_a_secret_in_any_file_of_a_domain_is_an_error_with_file_and_line(tiny_root: Path, kind: str,
                                                                          secret: str) -> None:
    path, line = _plant(tiny_root, kind, secret)
    found = [f for f in _secret_findings(tiny_root) if f.file == path]
    assert [(f.severity, f.line) for f in found] == [("error", line)], [str(f) for f in found]
    assert ("AWS Access Key" if secret == "aws" else "Secret Keyword") in found[0].message
    assert "environment variable" in found[0].fix or "remove it" in found[0].fix
    assert AWS_EXAMPLE_KEY not in str(found[0]) and PASSWORD not in str(found[0])


def _add_custom_properties(root: Path, lines: list[str]) -> tuple[Path, int]:
    """Insert ``lines`` (YAML) among the customProperties of the tiny mesh's first table, after its ``layer``;
    return the contract and the 0-based index of the first inserted line."""
    contract = _shop(root) / "products" / "orders.yaml"
    text = contract.read_text().splitlines()
    at = text.index("        value: bronze") + 1
    text[at:at] = lines
    contract.write_text("\n".join(text) + "\n")
    return contract, at


def test_a_secret_named_odcs_property_value_pair_is_an_error(tiny_root: Path) -> None:
    contract, at = _add_custom_properties(tiny_root, ["      - {property: db_password, value: hunter2-secret}",
                                                      "      - property: apiToken",
                                                      "        value: tok-1a2b3c"])
    found = sorted((f for f in _secret_findings(tiny_root) if f.file == contract), key=lambda f: f.line)
    assert [(f.line, f.field) for f in found] == [
        (at + 1, "schema[0].customProperties[1].value"), (at + 3, "schema[0].customProperties[2].value")]
    assert "'db_password'" in found[0].message and "MESH_DB_PASSWORD" in found[0].fix
    assert "'apiToken'" in found[1].message and "Secret Property" in found[1].message


def test_environment_references_are_not_secrets(tiny_root: Path) -> None:
    contract, _ = _add_custom_properties(tiny_root, ["      - {property: db_password, value: MESH_DB_PASSWORD}",
                                                     "      - {property: db_password_env, value: MESH_DB_PASSWORD}",
                                                     "      - {property: api_token, value: '${MESH_API_TOKEN}'}",
                                                     "      - {property: tokens_per_minute, value: 600}"])
    _write_lines(_shop(tiny_root) / "python" / "gold" / "top_customers.py", [
        "import os", 'DB_PASSWORD = os.environ["MESH_DB_PASSWORD"]', 'API_KEY = "${MESH_API_KEY}"'])
    _write_lines(tiny_root / "dbt" / "models" / "shop" / "order_summary.sql", [
        "{% set db_password = env_var('MESH_DB_PASSWORD') %}", "select 1 as one"])
    _write_lines(_shop(tiny_root) / "README.md", ["The password comes from MESH_PG_PASSWORD; never write it here."])
    assert _secret_findings(tiny_root) == []


def test_binary_and_oversized_files_are_findings_not_silently_skipped(tiny_root: Path) -> None:
    image = _shop(tiny_root) / "docs" / "lineage.png"
    image.parent.mkdir()
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    big = _shop(tiny_root) / "sql" / "seed.sql"
    big.write_text("select 1 as one\n" * (MAX_FILE_BYTES // 16 + 1))
    found = {f.file: f for f in validate(tiny_root).findings if f.rule == "security/unscanned"}
    assert found[image].severity == "warning" and "binary" in found[image].message
    assert found[big].severity == "error" and f"{big.stat().st_size:,} bytes" in found[big].message


def test_the_reference_mesh_stays_clean() -> None:
    from mesh_assets.governance.secrets import mesh_files, scan_secrets

    files = mesh_files(REPO, "domains")
    assert REPO / "dbt" / "README.md" in files and any(f.suffix == ".sql" for f in files)
    assert not any("target" in f.relative_to(REPO / "dbt").parts for f in files if REPO / "dbt" in f.parents)
    assert scan_secrets(files) == []


def test_the_scan_lists_every_file_but_generated_ones(tiny_root: Path) -> None:
    from mesh_assets.governance.secrets import mesh_files

    notes = _shop(tiny_root) / "sql" / "notes.yaml"
    notes.write_text("not: loaded by the mesh\n")
    (_shop(tiny_root) / "__pycache__").mkdir()
    (_shop(tiny_root) / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    model = tiny_root / "dbt" / "models" / "shop" / "m.sql"
    _write_lines(model, ["select 1 as one"])
    _write_lines(tiny_root / "dbt" / "target" / "manifest.json", ["{}"])
    shop = _shop(tiny_root)
    assert mesh_files(tiny_root, "domains") == [
        tiny_root / "mesh.yaml", shop / "domain.yaml", shop / "products" / "customers.yaml",
        shop / "products" / "orders.yaml", shop / "sql" / "gold" / "order_totals.sql", notes,
        shop / "sql" / "silver" / "orders.sql", model]


@pytest.mark.slow  # a child process with its address space capped (each start imports the framework)
def test_an_alias_bomb_in_the_dbt_project_is_a_validate_finding(tiny_root: Path) -> None:
    """dbt reads every YAML file of the project in a step: validate refuses a bomb in one before a run does."""
    sources = tiny_root / "dbt" / "models" / "shop" / "_sources.yml"
    _write_lines(sources, [*_BOMB_LINES, "sources: *h"])
    proc = _limited([str(MESH), "validate", "--format", "json"], tiny_root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    refusals = [f for f in json.loads(proc.stdout)["findings"] if REFUSAL in f["message"]]
    assert [(f["file"], f["line"]) for f in refusals] == [("dbt/models/shop/_sources.yml", 1)], refusals
    assert "dbt files" in refusals[0]["message"]
