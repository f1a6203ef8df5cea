"""The Dagster code of the customers domain (a dg project)."""
