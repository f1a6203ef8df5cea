"""The Dagster Component of a domain's data products, for ``dg`` projects (docs/architecture.md, "Code locations").

A domain folder is a ``dg`` project whose defs folder holds one ``defs.yaml``::

    type: mesh_assets.DataProductsComponent
    attributes:
      domain_dir: "{{ context.project_root }}"

The component builds what :func:`mesh_assets.build_domain_definitions` builds for that folder (the same call):
one asset per table of the domain's data contracts, their asset checks, the ingestion job and the sensors.
``dg scaffold defs mesh_assets.DataProductsComponent <name>`` writes that file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import dagster as dg
from dagster.components import Component, ComponentLoadContext, Model, Resolvable, Scaffolder, ScaffoldRequest
from dagster.components import Resolver, scaffold_component, scaffold_with

from mesh_assets.contract.mesh import DOMAIN_FILE
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.definitions import build_domain_definitions

DEFAULT_DOMAIN_DIR = "{{ context.project_root }}"


class DataProductsScaffolder(Scaffolder):
    """Writes ``defs.yaml`` for :class:`DataProductsComponent` pointing at the project root (the domain folder)."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        """Write ``<request.target_path>/defs.yaml`` (``dg scaffold defs`` calls this)."""
        scaffold_component(request, {"domain_dir": DEFAULT_DOMAIN_DIR})


@scaffold_with(DataProductsScaffolder)
class DataProductsComponent(Component, Resolvable, Model):
    """The data products of one domain, built from its data contracts: assets, asset checks, ingestion job and
    sensors, exactly what :func:`mesh_assets.build_domain_definitions` builds for the domain folder.

    Attributes:
        domain_dir: the domain folder (holding ``domain.yaml`` and ``products/``), inside a mesh (a folder with
            ``mesh.yaml`` at or above it). A relative path is taken from the folder of the ``defs.yaml`` that
            declares the component; default: the ``dg`` project root, which is the domain folder.
    """

    domain_dir: Annotated[str | None, Resolver.default(description=(
        "The domain folder (with domain.yaml), relative to this defs.yaml's folder; default: the project root."
    ))] = None

    def domain_path(self, context: ComponentLoadContext) -> Path:
        """The resolved domain folder of this component, loaded in ``context``.

        Raises:
            MeshError: the folder has no ``domain.yaml`` (names the folder and the ``defs.yaml`` to fix).
        """
        folder = context.project_root if not self.domain_dir else context.path / self.domain_dir
        folder = Path(folder).resolve()
        if not (folder / DOMAIN_FILE).is_file():
            raise MeshError(f"{context.path / 'defs.yaml'}: domain_dir {folder} has no {DOMAIN_FILE}; point "
                            f"attributes.domain_dir at a domain folder (default: the project root)")
        return folder

    def build_defs(self, context: ComponentLoadContext) -> dg.Definitions:
        """The domain's code location (:func:`mesh_assets.build_domain_definitions`; same errors)."""
        return build_domain_definitions(self.domain_path(context))
