"""The port storage resource: where every output port's snapshots live, and how many are kept."""

from __future__ import annotations

import dagster as dg

from mesh_assets.engine.ports import Port


class PortStorage(dg.ConfigurableResource):
    """Storage of every port under ``root`` (a folder or an fsspec URL such as ``s3://bucket/mesh``).

    Attributes:
        root: the storage root (``mesh.yaml`` ``storage_root``, env ``MESH_STORAGE_ROOT``).
        retention: snapshots kept per port, the current one included (``mesh.yaml`` ``retention.snapshots``):
            each publication prunes older ones (mesh_assets.engine.write_audit_publish.publish_if_passed).
    """

    root: str
    retention: int = 3

    def port(self, key: tuple[str, str, str]) -> Port:
        """The port of the asset key ``(domain, layer, table)``."""
        return Port(self.root, key)
