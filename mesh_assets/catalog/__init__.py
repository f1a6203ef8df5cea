"""The mesh's static catalog: one HTML page per data product, lineage, search (``mesh catalog``).

``site`` builds the pages, ``facts`` reads what the catalog shows from the ports and the Dagster instance,
``lineage`` draws the asset graph.
"""

from mesh_assets.catalog.site import build_catalog, find_instance

__all__ = ["build_catalog", "find_instance"]
