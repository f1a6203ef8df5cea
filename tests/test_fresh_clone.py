"""`mesh validate` on a fresh clone: the dbt manifest (generated, never committed) is missing. Validation makes it
and says so, and when dbt cannot, reports that once, as the dbt project's problem, never as an error of a
domain the user did not touch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mesh_assets.cli.scaffold import create_domain
from mesh_assets.cli.validate import validate
from mesh_assets.contract.dbt_project import MANIFEST
from conftest import REPO

pytestmark = pytest.mark.slow  # runs dbt parse, as tests/test_dbt.py does


def fresh_clone(tmp_path: Path) -> Path:
    """The reference mesh as a clone has it: the committed files of ``domains/`` and ``dbt/`` (no
    ``dbt/target``), ``mesh.yaml`` and ``workspace.yaml``."""
    root = tmp_path / "clone"
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "domains", "dbt", "mesh.yaml", "workspace.yaml"],
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, root / name)
    assert not (root / "dbt" / MANIFEST).exists()
    return root


def test_validate_on_a_fresh_clone_makes_the_dbt_manifest_and_blames_no_one(tmp_path: Path) -> None:
    root = fresh_clone(tmp_path)
    create_domain(root, "weather", "weather-team", members=["ana@example.com"])  # all the user changed
    report = validate(root)
    assert report.errors == [], [str(f) for f in report.errors]
    assert (root / "dbt" / MANIFEST).is_file()
    assert any("made the dbt manifest dbt/target/manifest.json with dbt parse" in n for n in report.notes)
    assert set(report.domains) == {"customers", "finance", "sales", "supply", "weather"}
    assert validate(root).notes == []  # made once


def test_when_dbt_cannot_make_the_manifest_it_is_one_finding_of_the_dbt_project(tmp_path: Path) -> None:
    root = fresh_clone(tmp_path)
    (root / "dbt" / "macros" / "broken.sql").write_text("{% macro broken( %}\n{% endmacro %}\n")
    report = validate(root)
    assert [(f.rule, f.domain) for f in report.errors] == [("dbt/parse", None)], [str(f) for f in report.errors]
    finding = report.errors[0]
    assert "dbt parse could not make it" in finding.message and "make dbt-manifest" in finding.fix
    assert finding.file == root / "dbt"
    assert any("tables built by dbt models were not checked" in n for n in report.notes)
    assert set(report.domains) == {"customers", "finance", "sales", "supply"}  # checked, without their dbt tables
