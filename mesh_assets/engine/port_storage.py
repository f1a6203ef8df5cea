"""The port storage resource: where every port's Iceberg table lives, its catalog, and how many snapshots are
kept."""

from __future__ import annotations

import dagster as dg

from mesh_assets.engine.ports import Port


class PortStorage(dg.ConfigurableResource):
    """Storage of every port under ``root`` (a folder or an fsspec URL such as ``s3://bucket/mesh``), each an
    Iceberg table of the catalog ``catalog_uri`` (mesh_assets.engine.iceberg_catalog).

    Attributes:
        root: the storage root (``mesh.yaml`` ``storage_root``, env ``MESH_STORAGE_ROOT``).
        retention: snapshots kept per port, the current one included (``mesh.yaml`` ``retention.snapshots``):
            each publication expires older ones (mesh_assets.engine.write_audit_publish.publish_if_passed).
        catalog_uri: the SQL catalog's URL (``mesh.yaml`` ``catalog.uri``; env ``MESH_CATALOG_URI`` wins);
            ``None``: the SQLite file ``<root>/catalog.db`` when the root is a local folder.
    """

    root: str
    retention: int = 3
    catalog_uri: str | None = None

    def port(self, key: tuple[str, str, str]) -> Port:
        """The port of the asset key ``(domain, layer, table)``."""
        return Port(self.root, key, self.catalog_uri)
