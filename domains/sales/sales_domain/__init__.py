"""The Dagster code of the sales domain (a dg project)."""
