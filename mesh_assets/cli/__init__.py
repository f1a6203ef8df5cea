"""The `mesh` command line."""

from mesh_assets.cli.main import app

__all__ = ["app"]
