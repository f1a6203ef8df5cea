"""The Dagster mapping: assets, asset checks, freshness policies, sensors, definitions, runs and the instance."""
