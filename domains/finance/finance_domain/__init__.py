"""The Dagster code of the finance domain (a dg project)."""
