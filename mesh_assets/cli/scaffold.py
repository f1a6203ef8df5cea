"""Self-serve scaffolding: ``mesh new domain`` and ``mesh new product`` (docs/tutorial.md).

A new domain is a folder ``<domains_dir>/<name>/`` (``domain.yaml``, ``products/``, ``sql/silver``,
``sql/gold``, ``README.md``) that is also a ``dg`` project (:func:`write_dg_project`), listed in the mesh's ``dg``
workspace (``dg.toml``) and in ``workspace.yaml``, and a test that its code location loads. A new product is a
draft ODCS v3.1 contract inferred from landed files (mesh_assets.cli.inference) with a bronze table reading them,
typed once, and a silver table and a public gold output port inheriting its columns and rules
(``inheritColumns``), plus their SQL: it validates and runs at once, and its owners then refine descriptions and
rules (inferred value rules are warnings until they promote them).

The source files are copied into the landing zone, under ``<domain>/<product>/``, and the contract's source
glob points there: the mesh then reads only its own landing zone (the sandbox of every step), and the next
deliveries land in the same folder.

A new domain may also be a repository of its own (``mesh new domain <name> --repo <dir>``,
:func:`create_domain_repo`, docs/domain-repos.md): a mesh folder holding that one domain, a Python project that
depends on mesh-assets and is the domain's ``dg`` project and code location, a starter product with a sample
delivery, a test, a CI script and a README. It runs and tests on its own, and reaches other domains' ports
through the contract registry.
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from packaging.version import Version

from mesh_assets.cli.inference import SAMPLE_ROWS, Inference, infer
from mesh_assets.contract.identity import current_user
from mesh_assets.contract.mesh import DOMAIN_FILE, load_mesh
from mesh_assets.contract.model import SNAKE_CASE
from mesh_assets.contract.servers import mesh_server, physical_name
from mesh_assets.errors import MeshError
from mesh_assets.governance.codeowners import BEGIN, codeowners_path, write_codeowners
from mesh_assets.governance.policies import DRAFT_MARKER, duckdb_reserved_words
from mesh_assets.settings import MESH_FILE

WORKSPACE_FILE = "workspace.yaml"
DG_FILE = "dg.toml"  # a dg workspace (the mesh root) or a dg project (a domain folder)
_DG_WORKSPACE_HEADER = ('# The dg workspace: one dg project per domain (docs/architecture.md, "Code locations").\n'
                        'directory_type = "workspace"\n\n[workspace]\n')
_WORKSPACE_HEADER = "# One Dagster code location per domain. `dagster dev -w workspace.yaml` loads this file.\n"
# Prefixes of the bronze and silver tables of a product: table names are unique within a contract.
BRONZE_PREFIX, SILVER_PREFIX = "raw_", "clean_"
MAX_PRODUCT_NAME = 63 - len(SILVER_PREFIX)


@dataclass
class Created:
    """What a scaffolding command wrote: ``files`` relative to the mesh root; ``notes`` for the person."""

    files: list[str]
    notes: list[str]


def _check_name(kind: str, name: str, max_length: int = 63) -> None:
    """Raise :class:`MeshError` unless ``name`` is snake_case, at most ``max_length`` characters and no SQL
    reserved word (names become SQL schemas, tables and storage paths)."""
    if not SNAKE_CASE.fullmatch(name) or len(name) > max_length:
        raise MeshError(f"'{name}' is not a valid {kind} name: use snake_case (a lower-case letter, then lower-case "
                        f"letters, digits and '_'), at most {max_length} characters, e.g. "
                        f"'{_suggest(name)[:max_length] or 'my_' + kind}'")
    if name in duckdb_reserved_words():
        raise MeshError(f"'{name}' is a reserved SQL word and cannot name a {kind}; pick another, e.g. '{name}s'")


def _suggest(name: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in name).strip("_")
    while "__" in out:
        out = out.replace("__", "_")
    return out if out[:1].isalpha() else f"d_{out}" if out else ""


def create_domain(root: Path, name: str, team: str, description: str | None = None,
                  members: list[str] | None = None) -> Created:
    """Create domain ``name`` owned by ``team`` in the mesh at ``root``: its folder, a ``dg`` project
    (:func:`write_dg_project`) listed in the mesh's ``dg.toml``, its ``workspace.yaml`` code location (comments
    and layout of both files kept; each created if missing) and ``tests/test_domain_<name>.py``. ``members`` are
    the team's identities written to ``domain.yaml`` (default: ``git config user.email``); the repository's
    ``CODEOWNERS`` block, when there is one, is regenerated to include the new domain.

    Raises:
        MeshError: a bad name or team, no or a bad member, an existing domain, a code location, dg project or
            test of that name already there, a ``dg.toml`` that is not a dg workspace.
    """
    _check_name("domain", name)
    if not team.strip():
        raise MeshError("--team must name the owner team, e.g. --team customer-success")
    members = [current_user(m, "--member") for m in members] if members else [current_user(None, "--member")]
    mesh = load_mesh(root)
    folder = mesh.settings.domains_path / name
    if folder.exists():
        raise MeshError(f"domain '{name}' already exists ({_rel(folder, root)}); pick another name, or add a "
                        f"product to it: mesh new product {name} <product> --from <file>")
    test = root / "tests" / f"test_domain_{name}.py"
    if test.exists():
        raise MeshError(f"{_rel(test, root)} already exists; remove it or pick another domain name")
    project = Path(mesh.settings.domains_dir, name)
    workspace = _workspace_with(root / WORKSPACE_FILE, f"{domain_package(name)}.definitions", name, project)
    dg_workspace = _dg_workspace_with(root / DG_FILE, project)
    description = description or f"Data products of the {name} domain, owned by {team}."
    (folder / "products").mkdir(parents=True)
    for layer in ("silver", "gold"):
        (folder / "sql" / layer).mkdir(parents=True)
        (folder / "sql" / layer / ".gitkeep").touch()
    (folder / "products" / ".gitkeep").touch()
    files = {
        folder / DOMAIN_FILE: yaml.safe_dump({"name": name, "team": team, "members": members,
                                              "description": description,
                                              "ingestion_schedule": "0 0 * * *", "timezone": "UTC"},
                                             sort_keys=False, allow_unicode=True),
        folder / "README.md": _README.format(name=name, team=team, description=description),
        test: _TEST.format(name=name, domain_path=repr(_rel(folder, root))),
    }
    test.parent.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    (root / WORKSPACE_FILE).write_text(workspace, encoding="utf-8")
    (root / DG_FILE).write_text(dg_workspace, encoding="utf-8")
    written = [*files, *write_dg_project(folder, name), root / WORKSPACE_FILE, root / DG_FILE]
    owners = codeowners_path(root)
    if owners.is_file() and BEGIN in owners.read_text(encoding="utf-8"):
        written.append(write_codeowners(load_mesh(root)))
    return Created([_rel(p, root) for p in written],
                    [f"add a product: mesh new product {name} <product> --from <file.csv>"])


STARTER_PRODUCT = "example"  # the product a new domain repository starts with, from SAMPLE_CSV
SAMPLE_CSV = """\
example_id,label,amount,recorded_on
1,first,10.50,2026-11-01
2,second,4.00,2026-11-01
3,third,120.25,2026-11-02
4,fourth,7.75,2026-11-03
5,fifth,33.00,2026-11-04
"""


def create_domain_repo(repo: Path, name: str, team: str, description: str | None = None,
                       members: list[str] | None = None, registry: str | None = None) -> Created:
    """Create a standalone repository of domain ``name`` owned by ``team`` in the folder ``repo`` (created; it
    must be missing or empty): a mesh folder of that one domain (``mesh.yaml`` naming the contract registry
    ``registry``, default ``.mesh/registry``; ``domains/<name>/`` with ``domain.yaml``, ``products/``, ``sql/``),
    the Python project ``pyproject.toml`` (depending on this major of mesh-assets) that is its ``dg`` project and
    Dagster code location (package ``<name>_domain``), a starter product ``example`` inferred from the sample
    delivery ``tests/data/example/example.csv`` (as ``mesh new product`` does), the test
    ``tests/test_<name>_domain.py`` (the code location loads; the products run on the samples), the CI script
    ``ci.sh``, ``.gitignore`` and ``README.md``. ``members`` as in :func:`create_domain`.

    Raises:
        MeshError: a bad name or team, no or a bad member, a ``repo`` that is a file or a folder with files.
    """
    _check_name("domain", name)
    if not team.strip():
        raise MeshError("--team must name the owner team, e.g. --team customer-success")
    members = [current_user(m, "--member") for m in members] if members else [current_user(None, "--member")]
    repo = Path(repo).expanduser()
    if repo.exists() and (not repo.is_dir() or any(repo.iterdir())):
        raise MeshError(f"{repo} already exists and is not an empty folder; pick a new folder for the repository "
                        f"(e.g. --repo {repo.parent / (name.replace('_', '-') + '-domain')})")
    registry = registry or ".mesh/registry"
    description = description or f"Data products of the {name} domain, owned by {team}."
    package = domain_package(name)
    folder = repo / "domains" / name
    framework = Version(version("mesh-assets"))
    below = f"{framework.major}.{framework.minor + 1}" if framework.major == 0 else str(framework.major + 1)
    sample = repo / "tests" / "data" / STARTER_PRODUCT / f"{STARTER_PRODUCT}.csv"
    files = {
        repo / MESH_FILE: _REPO_MESH.format(name=name, registry=json.dumps(registry)),
        folder / DOMAIN_FILE: yaml.safe_dump({"name": name, "team": team, "members": members,
                                              "description": description,
                                              "ingestion_schedule": "0 0 * * *", "timezone": "UTC"},
                                             sort_keys=False, allow_unicode=True),
        repo / "pyproject.toml": _REPO_PYPROJECT.format(
            project=json.dumps(f"{name.replace('_', '-')}-domain"), description=json.dumps(description),
            framework=json.dumps(f"mesh-assets>={framework.base_version},<{below}"), package=package, name=name),
        repo / package / "__init__.py": f'"""The Dagster code location of the {name} domain (a dg project)."""\n',
        repo / package / "definitions.py": _DEFINITIONS.format(name=name),
        repo / package / "defs" / "data_products" / "defs.yaml": _REPO_DEFS_YAML.format(name=name),
        repo / "tests" / f"test_{package}.py": _REPO_TEST.format(name=name, package=package),
        sample: SAMPLE_CSV,
        repo / "ci.sh": _REPO_CI.format(name=name),
        repo / ".gitignore": ".mesh/\n.dagster/\n__pycache__/\n*.egg-info/\n.venv/\n.pytest_cache/\n",
        repo / "README.md": _REPO_README.format(name=name, team=team, description=description, package=package,
                                                repo=repo.name),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    os.chmod(repo / "ci.sh", 0o755)
    for layer in ("silver", "gold"):
        (folder / "sql" / layer).mkdir(parents=True, exist_ok=True)
    (folder / "products").mkdir(exist_ok=True)
    product = create_product(repo, name, STARTER_PRODUCT, str(sample))
    written = [_rel(p, repo) for p in files] + [f for f in product.files if not f.startswith(".mesh")]
    return Created(written, [f"the starter product {name}.{STARTER_PRODUCT} reads {_rel(sample, repo)}: replace it "
                             f"with yours (mesh new product {name} <product> --from <file>)",
                             f"then: cd {repo} && ./ci.sh (install, mesh validate, the tests); "
                             "./ci.sh --publish on the main branch"])


def domain_package(name: str) -> str:
    """The Python package of domain ``name``'s ``dg`` project (its ``root_module``), ``<name>_domain``: a name of
    its own, so that no domain's package shadows another's, the framework's or the standard library's."""
    return f"{name}_domain"


def write_dg_project(folder: Path, name: str) -> list[Path]:
    """Make the domain folder ``folder`` of domain ``name`` a ``dg`` project and return the files written:
    ``dg.toml``, and the package ``<name>_domain/`` whose ``definitions.py`` loads its defs folder, which holds
    one :class:`mesh_assets.DataProductsComponent` (``defs/data_products/defs.yaml``). Existing files are
    overwritten."""
    package = folder / domain_package(name)
    files = {
        folder / DG_FILE: _DG_PROJECT.format(package=domain_package(name)),
        package / "__init__.py": f'"""The Dagster code of the {name} domain (a dg project)."""\n',
        package / "definitions.py": _DEFINITIONS.format(name=name),
        package / "defs" / "data_products" / "defs.yaml": _DEFS_YAML,
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def _dg_workspace_with(path: Path, project: Path) -> str:
    """The text of the ``dg`` workspace file ``path`` with one more project, at ``project`` (relative to the
    workspace root; the file is created if missing). Appended as a ``[[workspace.projects]]`` table, so that
    comments and layout stay.

    Raises:
        MeshError: the file is not TOML, not a workspace, lists its projects in a form a table cannot extend
            (an inline array), or already lists that project.
    """
    text = path.read_text(encoding="utf-8") if path.is_file() else _DG_WORKSPACE_HEADER
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MeshError(f"{path}: not valid TOML ({e}); fix the file first") from e
    if data.get("directory_type") != "workspace":
        raise MeshError(f'{path}: expected directory_type = "workspace" (the dg workspace of the mesh)')
    workspace = data.get("workspace")
    projects = workspace.get("projects") if isinstance(workspace, dict) else None
    if any(Path(str(p.get("path", ""))) == project for p in projects or [] if isinstance(p, dict)):
        raise MeshError(f"{path}: project {project.as_posix()} is already listed; remove it or pick another "
                        "domain name")
    # a JSON string is a TOML basic string: the folder's name is quoted and escaped, never pasted
    entry = f"\n[[workspace.projects]]\npath = {json.dumps(project.as_posix())}\n"
    out = text + ("" if text.endswith("\n") else "\n") + entry
    try:
        listed = tomllib.loads(out)["workspace"]["projects"][-1]["path"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError, IndexError) as e:
        listed = e
    if listed != project.as_posix():
        raise MeshError(f"{path}: cannot append a [[workspace.projects]] table ({listed}); list the projects as "
                        "[[workspace.projects]] tables, one per domain, and run again")
    return out


def _workspace_with(path: Path, module: str, location: str, project: Path) -> str:
    """The text of ``workspace.yaml`` with one more ``python_module`` code location, ``module`` loaded from the
    folder ``project`` (relative to the mesh root); the file is created if missing."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from mesh_assets.yaml_source import read_yaml_text

    rt = YAML()
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 4096
    data = rt.load(read_yaml_text(path)) if path.is_file() else None
    if data is None:
        data = rt.load(_WORKSPACE_HEADER + "load_from: []\n")
    if not isinstance(data, dict) or not isinstance(data.get("load_from") or [], list):
        raise MeshError(f"{path}: expected load_from: [a list of code locations]; fix the file first")
    if data.get("load_from") is None or not data["load_from"]:
        data["load_from"] = CommentedSeq()
    for entry in data["load_from"]:
        spec = (entry or {}).get("python_module") if isinstance(entry, dict) else None
        if isinstance(spec, dict) and location in (spec.get("location_name"), spec.get("module_name")):
            raise MeshError(f"{path}: code location '{location}' is already declared; remove it or pick "
                            "another domain name")
    entry = CommentedMap(module_name=module, location_name=location, working_directory=project.as_posix())
    entry.fa.set_flow_style()
    data["load_from"].append(CommentedMap(python_module=entry))
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def create_product(root: Path, domain: str, name: str, source: str, sample_rows: int = SAMPLE_ROWS,
                   progress: Callable[[int, int, str], None] | None = None) -> Created:
    """Create product ``name`` of ``domain`` from the files matching ``source`` (a path or a glob; CSV,
    Parquet or JSON): copy them into ``<landing zone>/<domain>/<name>/``, infer a draft contract from at most
    ``sample_rows`` records and write it with its silver and gold SQL. ``progress`` follows the inference
    (:func:`mesh_assets.cli.inference.infer`).

    Raises:
        MeshError: a bad name, an unknown domain, an existing product or table, no matching file, files that
            cannot be read, or column names the mesh's naming policy refuses (the message says how to fix each).
    """
    _check_name("product", name, MAX_PRODUCT_NAME)
    mesh = load_mesh(root)
    if domain not in mesh.domain_names:
        raise MeshError(f"no domain '{domain}' in {_rel(mesh.settings.domains_path, root)}; create it first: "
                        f"mesh new domain {domain} --team <team>")
    folder = mesh.settings.domains_path / domain
    contract = folder / "products" / f"{name}.yaml"
    tables = {"bronze": BRONZE_PREFIX + name, "silver": SILVER_PREFIX + name, "gold": name}
    sql = {layer: folder / "sql" / layer / f"{tables[layer]}.sql" for layer in ("silver", "gold")}
    for path in (contract, *sql.values()):
        if path.exists():
            raise MeshError(f"{_rel(path, root)} already exists; pick another product name or edit that one")
    taken = {t.key for t in mesh.domain(domain).tables}
    clash = [f"{layer}.{t}" for layer, t in tables.items() if (domain, layer, t) in taken]
    if clash:
        raise MeshError(f"domain '{domain}' already has table(s) {', '.join(clash)}; pick another product name")
    files = sorted(f for f in glob.glob(str(Path(source).expanduser()), recursive=True) if Path(f).is_file())
    if not files:
        raise MeshError(f"no file matches --from {source}; give a CSV, Parquet or JSON file or a quoted glob "
                        "(e.g. --from 'exports/orders_*.csv')")
    inference = infer(files, sample_rows, progress)
    _check_columns(inference)
    landing = Path(mesh.settings.landing_path)
    if "://" in str(landing):
        raise MeshError(f"the landing zone {landing} is an object store; land the files there yourself and write "
                        "the contract by hand (docs/contracts.md)")
    target = landing / domain / name
    target.mkdir(parents=True, exist_ok=True)
    landed = []
    for path in files:
        dest = target / Path(path).name
        if dest.resolve() != Path(path).resolve():
            shutil.copyfile(path, dest)
        landed.append(dest)
    suffix = Path(files[0]).suffix.lower()
    team = mesh.domain(domain).team
    source_glob = f"{domain}/{name}/*{suffix}"
    data = draft_contract(inference, domain, name, team, tables, source_glob)
    contract.write_text(_HEADER.format(domain=domain, name=name) + _dump(data), encoding="utf-8")
    columns = [c.name for c in inference.columns]
    sql["silver"].write_text(_select(f"{domain}.silver.{tables['silver']}: the landed records, typed, without "
                                     "lineage columns. Clean here (trim, cast, filter).", columns,
                                     f"bronze.{tables['bronze']}"), encoding="utf-8")
    distinct = not inference.primary_key
    sql["gold"].write_text(_select(f"{domain}.gold.{name}: the output port. Shape it for consumers (joins, "
                                   "renames, aggregates) and update the contract to match.", columns,
                                   f"silver.{tables['silver']}", distinct), encoding="utf-8")
    notes = [f"landed {len(landed)} file(s) in {_rel(target, root)}",
             f"inferred {len(columns)} column(s) from {inference.rows:,} record(s)"
             + (f" (a sample: the files hold more than {inference.rows:,})" if inference.sampled else ""),
             "primary key: " + (", ".join(inference.primary_key) or "none found (gold keeps distinct rows)")]
    notes += [f"valid values of {c.name} (a warning): {', '.join(map(str, c.valid_values))}"
              for c in inference.columns if c.valid_values]
    notes += [f"range of {c.name} (a warning): {c.minimum} .. {'(no maximum)' if c.maximum is None else c.maximum}"
              for c in inference.columns if c.minimum is not None]
    notes.append(f"review the descriptions and rules, then: mesh validate && mesh run --domain {domain}")
    return Created([_rel(p, root) for p in (contract, *sql.values(), *landed)], notes)


def _check_columns(inference: Inference) -> None:
    """Refuse column names the naming policy would refuse, naming each and the fix."""
    reserved = duckdb_reserved_words()
    bad = [c.name for c in inference.columns if not SNAKE_CASE.fullmatch(c.name) or c.name in reserved]
    if bad:
        where = "header" if inference.format == "csv" else "field names"
        raise MeshError(f"{inference.files[0]}: column name(s) {', '.join(repr(b) for b in bad)} are not snake_case "
                        f"or are reserved SQL words; rename them in the file's {where} (e.g. "
                        f"{', '.join(repr(_suggest(b) + ('_value' if b in reserved else '')) for b in bad)}) and "
                        "run the command again")


def draft_contract(inference: Inference, domain: str, name: str, team: str, tables: dict[str, str],
                   source_glob: str) -> dict[str, Any]:
    """The draft ODCS v3.1 contract (a plain mapping) of product ``name``: a bronze table reading
    ``source_glob`` (relative to the landing zone) with every inferred column and rule, a silver table and a
    public gold output port named by ``tables`` (layer → table) that inherit them (``inheritColumns``,
    docs/contracts.md), a 1-day latency SLA on the port, and the ``servers`` entry and ``physicalName`` that tell
    outside tools where the port's Iceberg table is (mesh_assets.contract.servers). Placeholder descriptions say
    ``Draft:`` (:data:`~mesh_assets.governance.policies.DRAFT_MARKER`): the ``descriptions`` policy refuses them
    once the contract's status is ``active``."""
    sample = (f" Inferred from the first {inference.rows:,} records only (the files hold more): ranges were "
              "not inferred; review the rules on the whole data."
              if inference.sampled else f" Inferred from all {inference.rows:,} records of the landed files.")
    source: dict[str, Any] = {"path": source_glob, "format": inference.format}
    if inference.format == "csv":
        source.update(delimiter=inference.delimiter, header=True)
    files = ", ".join(Path(f).name for f in inference.files[:3]) + (" …" if len(inference.files) > 3 else "")
    quality = [{"id": "has_rows", "description": "The table is never published empty.",
                "dimension": "completeness", "metric": "rowCount", "mustBeGreaterThan": 0}]
    if not inference.primary_key:
        quality.append({"id": "no_duplicate_rows", "description": "No record appears twice.",
                        "dimension": "uniqueness", "metric": "duplicateValues",
                        "arguments": {"properties": [c.name for c in inference.columns]}, "mustBe": 0})
    inherit = {"from": tables["bronze"], "quality": [q["id"] for q in quality]}
    bronze = {"name": tables["bronze"], "physicalType": "table",
              "description": f"Records of {name} as landed from {files} (draft).",
              "customProperties": [{"property": "layer", "value": "bronze"},
                                   {"property": "source", "value": source}],
              "properties": [_property(c, inference) for c in inference.columns], "quality": quality}
    silver = {"name": tables["silver"], "physicalType": "table",
              "description": f"Typed records of {name} without lineage columns (draft).",
              "customProperties": [{"property": "layer", "value": "silver"},
                                   {"property": "inheritColumns", "value": inherit}]}
    gold = {"name": tables["gold"], "physicalName": physical_name("gold", tables["gold"]), "physicalType": "table",
            "description": (f"{DRAFT_MARKER} the {name} output port, one row per "
                            f"{', '.join(inference.primary_key) or 'distinct record'}. Describe what a row is."),
            "customProperties": [{"property": "layer", "value": "gold"}, {"property": "visibility", "value": "public"},
                                 {"property": "inheritColumns", "value": {**inherit, "from": tables["silver"]}}]}
    return {
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": f"{domain}-{name}".replace("_", "-"),
        "name": name, "version": "0.1.0", "status": "draft", "domain": domain, "dataProduct": name,
        "team": {"name": team},
        "description": {"purpose": f"{DRAFT_MARKER} describe what data product {name} of the {domain} domain is "
                                   f"for. Generated by mesh new product from {files}." + sample,
                        "usage": f"Read the port {domain}.{name}"
                                 + (f"; join on {', '.join(inference.primary_key)}." if inference.primary_key
                                    else ".")},
        "slaProperties": [{"property": "latency", "value": 1, "unit": "d", "element": name,
                           "description": f"{name} reflects landed data at most 1 day old."}],
        "servers": [mesh_server(domain)],
        "schema": [bronze, silver, gold],
    }


def _property(col: Any, inference: Inference) -> dict[str, Any]:
    """One bronze property, fully typed, with its inferred rules: value rules (ranges, valid values) are
    ``quality`` rules of severity ``warning`` (mesh_assets.cli.inference)."""
    prop: dict[str, Any] = {"name": col.name, "logicalType": col.logical_type, "physicalType": col.physical_type}
    if col.name in inference.primary_key:
        prop.update(primaryKey=True, primaryKeyPosition=inference.primary_key.index(col.name) + 1)
    if col.nulls == 0 and inference.rows:
        prop["required"] = True
    facts = f"{col.distinct:,} distinct value(s), {col.nulls:,} null(s) in the {inference.rows:,} records read"
    prop["description"] = f"{col.name} ({col.logical_type}; {facts}). {DRAFT_MARKER} describe its meaning and unit."
    if col.examples:
        prop["examples"] = col.examples
    rules = []
    if col.minimum is not None:
        # the name is snake_case and no reserved word (_check_columns); the bounds are numbers we computed
        quoted = f'"{col.name}"'
        outside = f"{quoted} < {col.minimum}" + (f" OR {quoted} > {col.maximum}" if col.maximum is not None else "")
        allowed = (f"below {col.minimum} (the values seen, widened by half their span; a year has no maximum)"
                   if col.maximum is None else
                   f"outside {col.minimum} .. {col.maximum} (the values seen, widened by half their span)")
        rules.append({"id": f"{col.name}_range", "description": f"Warns on a value {allowed}.",
                      "dimension": "accuracy", "type": "sql",
                      "query": f"SELECT count(*) FROM {{object}} WHERE {outside}", "mustBe": 0, "severity": "warning"})
    if col.valid_values:
        rules.append({"id": f"{col.name}_valid_values", "description": f"Warns on a value other than the "
                      f"{len(col.valid_values)} seen when the product was created.", "dimension": "conformity",
                      "metric": "invalidValues", "arguments": {"validValues": col.valid_values}, "mustBe": 0,
                      "severity": "warning"})
    if rules:
        prop["quality"] = rules
    return prop


def _select(comment: str, columns: list[str], source: str, distinct: bool = False) -> str:
    listed = ",\n".join(f"    {c}" for c in columns)  # snake_case, no reserved word: see _check_columns
    return f"/* {comment} */\nSELECT{' DISTINCT' if distinct else ''}\n{listed}\nFROM {source}\n"


def _dump(data: dict[str, Any]) -> str:
    out = io.StringIO()
    yaml.dump(data, out, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=120)
    return out.getvalue()


class _NoAliases(yaml.SafeDumper):
    """Writes a value shared by several tables in full each time: people read contracts, not anchors; a list of
    plain values on one line (``[a, b, c]``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(v, (str, int, float, bool)) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_NoAliases.add_representer(list, _list)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


_HEADER = """\
# Draft data contract (ODCS v3.1) of {domain}.{name}, inferred by `mesh new product` from the landed data.
# Review every description and rule; bump version to 1.0.0 and set status: active when consumers may rely on it.
"""
_DEFINITIONS = '''"""Dagster code location of the {name} domain: the components of its defs folder."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """The components of ``defs/``, loaded when the code location starts (``dg dev``, ``dagster dev``)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
'''
_DG_PROJECT = """\
# A dg project: this domain's code location (docs/architecture.md, "Code locations").
directory_type = "project"

[project]
root_module = "{package}"
registry_modules = ["mesh_assets"]
"""
_DEFS_YAML = """\
# The domain's data products, built from its data contracts (products/*.yaml).
type: mesh_assets.DataProductsComponent
attributes:
  domain_dir: "{{ context.project_root }}"
"""
_README = """# Domain `{name}`

{description}

Owner team: `{team}`. One Dagster code location: this folder is a `dg` project (`dg.toml`, the package
`{name}_domain/`), listed in the mesh's `dg.toml` and `workspace.yaml`. Here, `dg list defs` lists its assets and
checks, `dg check defs` loads them, `dg launch --assets '<key>'` materializes some.

## Adding a data product

From a file you have (CSV, Parquet or JSON; a quoted glob for several files):

```bash
mesh new product {name} <product> --from <file-or-glob>
mesh validate
mesh run --domain {name}
```

This lands the file(s) in the landing zone under `{name}/<product>/`, writes a draft contract in
`products/<product>.yaml` (columns, types, required columns, primary key, valid values, ranges, inferred from
the data) and `sql/silver/clean_<product>.sql`, `sql/gold/<product>.sql`. Then describe every column, review
the rules, and shape the gold SQL for consumers.

By hand: one ODCS v3.1 contract in `products/` and one SQL file per silver or gold table in `sql/<layer>/`, as
described in docs/contracts.md of the framework. `mesh validate` says what is wrong and how to fix it.
"""
_TEST = '''"""The {name} domain's code location loads (written by `mesh new domain`; keep it passing)."""

from pathlib import Path

import dagster as dg

from mesh_assets import build_domain_definitions
from mesh_assets.contract.mesh import load_domain
from mesh_assets.settings import find_mesh_root

DOMAIN = find_mesh_root(Path(__file__).parent) / {domain_path}


def test_{name}_definitions_load() -> None:
    defs = build_domain_definitions(DOMAIN)
    assert isinstance(defs, dg.Definitions)
    keys = {{tuple(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}}
    assert {{t.key for t in load_domain(DOMAIN).tables}} <= keys
'''
_REPO_MESH = """\
# Settings of the {name} domain's repository: a mesh folder holding one domain (docs/domain-repos.md of
# mesh-assets). Every setting of a mesh.yaml applies; the ones a repository of a larger mesh changes are here.
name: {name}
domains_dir: domains
storage_root: .mesh/lake        # env MESH_STORAGE_ROOT; deployed: the mesh's warehouse, e.g. s3://bucket/lake
landing_zone: .mesh/landing     # env MESH_LANDING_ZONE
# catalog: {{uri: postgresql+psycopg2://…}}   # deployed: the mesh's Iceberg catalog (env MESH_CATALOG_URI)
registry:                       # the contract registry every repository of the mesh shares
  path: {registry}              # env MESH_REGISTRY; a folder or an fsspec URL, e.g. s3://bucket/mesh-registry
"""
_REPO_PYPROJECT = """\
# The {name} domain: a Python project on the mesh-assets framework, and one Dagster code location.
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = {project}
version = "0.1.0"
description = {description}
requires-python = ">=3.11"
dependencies = [{framework}]  # extras when a table needs them: mesh-assets[spark], mesh-assets[dbt]

[project.optional-dependencies]
test = ["pytest>=8"]

[tool.setuptools.packages.find]
include = ["{package}*"]

[tool.setuptools.package-data]
"*" = ["*.yaml"]

# `dagster dev` here loads the code location; a platform's workspace.yaml loads the module from this folder.
[tool.dagster]
module_name = "{package}.definitions"
code_location_name = "{name}"

# A dg project: `dg list defs`, `dg check defs`, `dg launch --assets <key>`.
[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{package}"
registry_modules = ["mesh_assets"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""
_REPO_DEFS_YAML = """\
# The domain's data products, built from its data contracts (domains/{name}/products/*.yaml).
type: mesh_assets.DataProductsComponent
attributes:
  domain_dir: "{{{{ context.project_root }}}}/domains/{name}"
"""
_REPO_TEST = '''"""The {name} domain: its code location loads, and its products run on the sample deliveries of
tests/data/ (written by `mesh new domain --repo`; keep it passing as the products change: a new product gets a
sample in tests/data/<product>/)."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from mesh_assets.contract.mesh import load_domain

REPO = Path(__file__).resolve().parents[1]
DOMAIN = REPO / "domains" / "{name}"


def code_location() -> dg.Definitions:
    """The definitions Dagster loads from {package}.definitions: the project's defs folder."""
    return dg.load_from_defs_folder(path_within_project=REPO)


@pytest.fixture
def samples_landed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/data/<product>/ landed under {name}/ of a landing zone of this test's own, and an empty storage root."""
    shutil.copytree(REPO / "tests" / "data", tmp_path / "landing" / "{name}")
    monkeypatch.setenv("MESH_LANDING_ZONE", str(tmp_path / "landing"))
    monkeypatch.setenv("MESH_STORAGE_ROOT", str(tmp_path / "lake"))


def test_the_code_location_loads() -> None:
    keys = {{tuple(k.path) for k in code_location().resolve_asset_graph().get_all_asset_keys()}}
    assert {{t.key for t in load_domain(DOMAIN).tables}} <= keys


def test_the_products_run_on_the_samples(samples_landed: None) -> None:
    result = code_location().resolve_implicit_global_asset_job_def().execute_in_process(raise_on_error=False)
    failures = [e.message for e in result.all_events if e.is_failure]
    assert result.success, failures
    failed_checks = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert failed_checks == []
'''
_REPO_CI = """\
#!/usr/bin/env bash
# CI of the {name} domain's repository: install it, check its contracts and the mesh's policies (mesh validate,
# against the consumers' expectations in the registry too), run its tests; with --publish (on the main branch
# only) register its output ports and expectations in the contract registry.
# PYTHON is the interpreter to install into (default: python3 on PATH, e.g. the CI job's venv).
set -euo pipefail
cd "$(dirname "$0")"
publish=false
for arg in "$@"; do
  case "$arg" in
    --publish) publish=true ;;
    *) echo "usage: ./ci.sh [--publish]" >&2; exit 2 ;;
  esac
done
python="${{PYTHON:-python3}}"
"$python" -m pip install --quiet -e ".[test]"
bin="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
"$bin/mesh" validate
"$python" -m pytest -q
if [ "$publish" = true ]; then
  "$bin/mesh" publish
fi
"""
_REPO_README = """# Domain `{name}`

{description}

Owner team: `{team}`. This repository is the `{name}` domain of a data mesh built with the mesh-assets framework:
its data products, their data contracts (ODCS v3.1), SQL and tests, and its Dagster code location. Other domains
live in repositories of their own; the mesh's contract registry (`mesh.yaml` `registry`) joins them.

| path | what |
| --- | --- |
| `domains/{name}/domain.yaml` | the domain: owner team, members (they approve access requests), description |
| `domains/{name}/products/*.yaml` | one data contract per product (`mesh new product {name} <p> --from <file>`) |
| `domains/{name}/sql/<layer>/*.sql` | the silver and gold tables' SQL |
| `{package}/` | the code location: `definitions.py` loads `defs/`, whose component reads `domains/{name}` |
| `tests/` | the code location loads, and the products run on the sample deliveries of `tests/data/<product>/` |
| `ci.sh` | CI: install, `mesh validate`, the tests; `./ci.sh --publish` on the main branch also runs `mesh publish` |
| `mesh.yaml` | the settings: the shared registry, and the mesh's warehouse and catalog once deployed |

## Working on it

```bash
python -m venv .venv && . .venv/bin/activate
pip install mesh-assets                  # or a wheel or checkout of it, where your package index has none
./ci.sh                                  # installs this project, validates, tests
mesh run                                 # materialize the products into .mesh/ (land files in .mesh/landing/{name}/)
dagster dev                              # the UI on this code location alone
```

The starter product `example` reads `tests/data/example/example.csv`; replace it with your own products.

## Reading another domain's ports

Name the port in SQL (`other_domain.its_port`) and pin its major version in the contract's `inputPorts`
(`customProperties`). The port resolves from the registry once its producer has published it; `mesh publish`
registers what this domain relies on, so the producer's `mesh validate` fails on a change that would break it.

## Deploying

The mesh's platform loads this code location from this repository, in its own Python environment, e.g. in its
`workspace.yaml`:

```yaml
load_from:
  - python_module:
      module_name: {package}.definitions
      location_name: {name}
      working_directory: /srv/{repo}           # a checkout of this repository
      executable_path: /srv/{repo}/.venv/bin/python
```

or as a gRPC server (`dagster api grpc -m {package}.definitions` here; `grpc_server` in the workspace).
"""
