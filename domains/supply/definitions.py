"""Dagster code location of the supply domain, built from its data contracts."""

from pathlib import Path

from mesh_assets import build_domain_definitions

defs = build_domain_definitions(Path(__file__).parent)
