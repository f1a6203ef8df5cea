# The two commands: `make run` (the whole mesh on TPC-H) and `make test`. See README.md.
SF ?= 1
PYTHON ?= python3
VENV := .venv
export DAGSTER_HOME ?= $(CURDIR)/.dagster
# The salt that masks PII columns comes from the environment (docs/governance.md); without one, development
# gets a random salt kept in .mesh/ (never committed), the same for every run of this checkout.
export MESH_PII_SALT ?= $(shell mkdir -p .mesh && { test -s .mesh/pii_salt || $(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > .mesh/pii_salt; } && cat .mesh/pii_salt)

.PHONY: setup constraints dbt-manifest run ui test test-fast validate bench bench-incremental bench-checks clean

# Every extra (Spark, dbt, Postgres: mesh_assets/extras.py) and the test tools, at the versions of constraints.txt.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e ".[all,test]"
	touch $@

# constraints.txt: the whole dependency tree of mesh-assets[all,test], names and versions only (no index URL, no
# hash). Run after changing a dependency in pyproject.toml: pip resolves it afresh in a throwaway venv.
define CONSTRAINTS_PY
import json, re, sys
report = json.load(open(sys.argv[1]))
pins = sorted((re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(), i["metadata"]["version"])
              for i in report["install"])
print("# The whole dependency tree of mesh-assets[all,test], pinned; written by make constraints.")
print("\n".join(f"{name}=={version}" for name, version in pins if name != "mesh-assets"))
endef
export CONSTRAINTS_PY
constraints:
	rm -rf .mesh/resolver && $(PYTHON) -m venv .mesh/resolver
	.mesh/resolver/bin/pip install --quiet --upgrade pip
	.mesh/resolver/bin/pip install --quiet --dry-run --ignore-installed --report .mesh/resolver/report.json \
		-e ".[all,test]"
	.mesh/resolver/bin/python -c "$$CONSTRAINTS_PY" .mesh/resolver/report.json > constraints.txt
	rm -rf .mesh/resolver

# The dbt manifest each domain's code location loads (docs/dbt.md), made once here, never at load.
DBT_MANIFEST := dbt/target/manifest.json
$(DBT_MANIFEST): $(VENV)/.installed dbt/dbt_project.yml dbt/profiles.yml $(shell find dbt/models dbt/macros -name '*.sql' -o -name '*.yml')
	$(VENV)/bin/dbt parse --project-dir dbt --profiles-dir dbt --quiet
	touch $@

dbt-manifest: $(DBT_MANIFEST)

setup: $(VENV)/.installed $(DBT_MANIFEST)

run: setup
	$(VENV)/bin/python -m domains.tpch --sf $(SF)
	$(VENV)/bin/mesh run

ui: setup  # the instance `mesh run` records into: SQLite, or Postgres with MESH_POSTGRES_URL (docs/operations.md)
	$(VENV)/bin/mesh instance
	$(VENV)/bin/dagster dev -w workspace.yaml

validate: setup
	$(VENV)/bin/mesh validate

# Tests run on two pytest-xdist workers, file by file (a module-scoped mesh is built once); each worker that gets
# a test of the reference run (tests/conftest.py) runs the reference mesh once.
# --durations: the 25 slowest tests, for whoever keeps the suite fast.
# Temporary folders (test meshes, lakes, Dagster instances) go to the RAM disk when there is one: Dagster's SQLite
# event log syncs to disk on every write, about half of a test mesh run's time on disk (docs/performance.md).
TEST_TMPDIR := $(if $(wildcard /dev/shm/.),/dev/shm,$(TMPDIR))
PYTEST := TMPDIR=$(TEST_TMPDIR) $(VENV)/bin/pytest -n 2 --dist loadfile --durations=25

test: setup  # governance first (CI runs it), then the tests
	$(VENV)/bin/mesh validate
	$(PYTEST)

test-fast: setup  # the unmarked tier: the core on tiny data, no Spark, daemon, Postgres, browser or TPC-H mesh
	$(PYTEST) -m "not (spark or daemon or postgres or browser or slow)"

bench: setup  # the mesh against plain DuckDB running the same SQL, at SF (docs/performance.md)
	$(VENV)/bin/python -m benchmarks --sf $(SF) --json
	$(VENV)/bin/python -m benchmarks --synthetic-domains 50 --products-per-domain 20 --json

bench-incremental: setup  # the partitioned mesh: all months in one range run, a new month, a month landed again
	$(VENV)/bin/python -m benchmarks --incremental --sf $(SF) --json

bench-checks: setup  # checks + profile passing vs failing, on the mesh `make run` materialized
	$(VENV)/bin/python -m benchmarks.check_cost

clean:
	rm -rf .mesh .dagster
