"""``mesh publish [<domain>]``: register a domain's output-port contracts and its consumer expectations in the
contract registry (mesh_assets.registry.store, docs/domain-repos.md)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from mesh_assets.contract.mesh import Mesh, load_mesh
from mesh_assets.contract.servers import physical_name
from mesh_assets.errors import MeshError
from mesh_assets.governance.expectations import consumer_entry, expectation_findings
from mesh_assets.governance.policies import is_output_port
from mesh_assets.registry.store import ContractEntry, PortEntry, now_utc


@dataclass(frozen=True)
class Published:
    """One line of ``mesh publish``'s report: ``what`` is ``contract`` (``name`` a product, ``version`` its
    version, ``outcome`` ``registered`` or ``unchanged``) or ``expectations`` (``name`` the consumer domain,
    ``outcome`` how many ports it relies on)."""

    domain: str
    what: str
    name: str
    version: str
    outcome: str


def publish(root: Path, domain: str | None = None) -> list[Published]:
    """Publish ``domain`` (default: every domain of the mesh at ``root``): each data product with an output port
    is registered at its contract's version, then the domain's expectations and column lineage replace the
    ones registered before. Nothing is registered when the domain's contracts break an expectation some
    consumer registered (the message lists each, as ``mesh validate`` does).

    Raises:
        MeshError: no such domain in the mesh's folder, a contract that does not load, a broken consumer
            expectation, a version registered already with another contract, or a registry that cannot be
            written (mesh_assets.registry.store.RegistryError).
    """
    mesh = load_mesh(root)
    names = mesh.domain_names if domain is None else [domain]
    for name in names:
        if name not in mesh.domain_names:
            raise MeshError(f"no domain '{name}' in {mesh.settings.domains_path}; mesh publish publishes the "
                            f"mesh's own domains: {', '.join(mesh.domain_names) or '(none)'}")
    domains = [mesh.domain(n) for n in names]
    broken = [f for f in expectation_findings(mesh, domains) if f.severity == "error"]
    if broken:
        raise MeshError("not published: the contracts break what consumers registered they rely on:\n"
                        + "\n".join(f"  {f.describe(mesh.root)}" for f in broken))
    source = _commit(mesh)
    out = []
    for d in domains:
        at = now_utc()
        for product in d.products:
            ports = [t for t in product.tables if is_output_port(t)]
            if not ports:
                continue
            entry = ContractEntry(d.name, product.name, product.version, d.team,
                                  product.path.read_text(encoding="utf-8"),
                                  tuple(PortEntry(t.name, f"{d.name}.{physical_name(t.layer, t.name)}", t.visibility)
                                        for t in ports), d.members, d.description, at, source)
            outcome = mesh.registry.publish_contract(entry)
            out.append(Published(d.name, "contract", product.name, product.version, outcome))
        consumer = consumer_entry(mesh, d, at, source)
        mesh.registry.publish_expectations(consumer)
        out.append(Published(d.name, "expectations", d.name, "",
                             f"{len({e.port for e in consumer.expectations})} input port(s)"))
    return out


def _commit(mesh: Mesh) -> str:
    """``git:<commit>`` of the mesh's repository (``+`` when its working tree has changes), or empty."""
    try:
        head = subprocess.run(["git", "-C", str(mesh.root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=False)
        dirty = subprocess.run(["git", "-C", str(mesh.root), "status", "--porcelain"], capture_output=True,
                               text=True, check=False)
    except OSError:
        return ""
    if head.returncode:
        return ""
    return f"git:{head.stdout.strip()}{'+' if dirty.stdout.strip() else ''}"
