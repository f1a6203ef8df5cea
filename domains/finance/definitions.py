"""Dagster code location of the finance domain, built from its data contracts."""

from pathlib import Path

from mesh_assets import build_domain_definitions

defs = build_domain_definitions(Path(__file__).parent)
