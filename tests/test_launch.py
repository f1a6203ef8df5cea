"""``mesh run --via``: runs launched through a Dagster webserver, one per domain stretch, each in its domain's code
location (mesh_assets/orchestration/launch.py). The end-to-end launch and the UI's re-execution are in
tests/test_daemon.py, which starts a webserver."""

from __future__ import annotations

import socket

import dagster as dg
import pytest

from conftest import mesh_cli
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.launch import domain_stretches, webserver_client


def test_runs_follow_the_dependency_order_one_domain_stretch_at_a_time() -> None:
    keys = [dg.AssetKey(p.split("/")) for p in ("customers/bronze/customer", "customers/gold/profile",
                                                "sales/gold/lines", "customers/gold/labels", "finance/gold/q1")]
    assert [(d, [k.to_user_string() for k in ks]) for d, ks in domain_stretches(keys)] == [
        ("customers", ["customers/bronze/customer", "customers/gold/profile"]), ("sales", ["sales/gold/lines"]),
        ("customers", ["customers/gold/labels"]), ("finance", ["finance/gold/q1"])]


@pytest.mark.parametrize("url", ["ftp://host:3000", "127.0.0.1:3000", "http://", "javascript:alert(1)"])
def test_a_url_that_is_no_webserver_address_is_refused(url: str) -> None:
    with pytest.raises(MeshError, match="is not a webserver URL; give it as http://host:port"):
        webserver_client(url)


@pytest.mark.parametrize("by", ["--via", "MESH_WEBSERVER_URL"])
def test_an_unreachable_webserver_is_named_with_the_fix(tiny_root, by: str, monkeypatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if by == "--via":
        result = mesh_cli(tiny_root, "run", "--via", f"http://127.0.0.1:{port}")
    else:  # a deployment's default
        monkeypatch.setenv("MESH_WEBSERVER_URL", f"http://127.0.0.1:{port}")
        result = mesh_cli(tiny_root, "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr  # bad input, as every command
    assert f"cannot reach the webserver at http://127.0.0.1:{port}" in result.stderr
    assert "dagster dev -w workspace.yaml" in result.stderr
