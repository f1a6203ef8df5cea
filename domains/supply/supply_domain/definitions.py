"""Dagster code location of the supply domain: the components of its defs folder."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """The components of ``defs/``, loaded when the code location starts (``dg dev``, ``dagster dev``)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
