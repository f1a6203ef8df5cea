"""The Dagster code of the supply domain (a dg project)."""
