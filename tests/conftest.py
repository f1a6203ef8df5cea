"""Shared fixtures: a one-domain mesh copied into a temporary folder, and a Dagster instance per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from mesh_assets.mesh import Mesh, load_mesh

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
TEST_SALT = "salt-of-the-tests-0123456789"
VALID_ORDERS = "order_id,customer,amount\n1,ann,10.00\n2,bob,20.00\n3, ann ,1.50\n"
CUSTOMERS = "customer,segment,since\nann,retail,2020-01-15\nbob,retail,2021-06-01\ncy,wholesale,2019-03-03\ndee,wholesale,2022-12-31\nzoe,retail,2023-07-04\n"


@pytest.fixture(autouse=True)
def _isolated_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the repository's own lake or landing zone through the environment, and mask PII with
    a known salt."""
    monkeypatch.delenv("MESH_STORAGE_ROOT", raising=False)
    monkeypatch.delenv("MESH_LANDING_ZONE", raising=False)
    monkeypatch.setenv("MESH_PII_SALT", TEST_SALT)


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A copy of ``tests/fixtures/tiny_mesh`` (domain ``shop``: bronze raw_orders → silver orders → gold
    order_totals; bronze raw_customers, referenced by silver orders) with three valid orders landed."""
    root = tmp_path / "tiny"
    shutil.copytree(FIXTURES / "tiny_mesh", root)
    land_orders(root, VALID_ORDERS)
    (root / ".mesh" / "landing" / "shop" / "customers.csv").write_text(CUSTOMERS)
    return root


def land_orders(root: Path, csv_text: str) -> None:
    """Replace the tiny mesh's landed orders file with ``csv_text``."""
    landing = root / ".mesh" / "landing" / "shop"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "orders.csv").write_text(csv_text)


@pytest.fixture
def land(tiny_root: Path):
    """``land(csv_text)`` replaces the landed orders of the tiny mesh."""
    return lambda csv_text: land_orders(tiny_root, csv_text)


@pytest.fixture
def tiny_mesh(tiny_root: Path) -> Mesh:
    return load_mesh(tiny_root)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


class _Receiver:
    """An HTTP server on loopback recording the JSON body of every POST (``bodies``) and answering 200."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook():
    """A webhook receiver on loopback: ``webhook.url`` to POST to, ``webhook.bodies`` what it received."""
    receiver = _Receiver()
    yield receiver
    receiver.server.shutdown()
