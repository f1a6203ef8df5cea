"""Land TPC-H data for the reference mesh: ``python -m domains.tpch --sf 1``.

Generates the eight TPC-H tables as CSV with ``tpchgen-cli`` (identical to the official ``dbgen``) into
``<landing zone>/tpch/``. Skipped when that scale factor is already there (recorded in ``_scale_factor``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mesh_assets.settings import find_mesh_root, load_settings

TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")


def land_tpch(landing_zone: Path, scale_factor: float) -> bool:
    """Write ``<landing_zone>/tpch/<table>.csv`` at ``scale_factor``; return False when already there.

    Raises:
        subprocess.CalledProcessError: ``tpchgen-cli`` failed.
    """
    target = landing_zone / "tpch"
    marker = target / "_scale_factor"
    if marker.is_file() and marker.read_text().strip() == str(scale_factor) and all(
        (target / f"{t}.csv").is_file() for t in TABLES
    ):
        return False
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    binary = shutil.which("tpchgen-cli") or str(Path(sys.executable).parent / "tpchgen-cli")
    subprocess.run([binary, "csv", "-s", str(scale_factor), "-o", str(target)], check=True)
    marker.write_text(str(scale_factor))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1 ≈ 8.7 M rows)")
    parser.add_argument("--root", type=Path, default=None, help="mesh folder (default: around the cwd)")
    args = parser.parse_args()
    sf = int(args.sf) if args.sf == int(args.sf) else args.sf
    landing = Path(load_settings(find_mesh_root(args.root)).landing_path)
    started = time.monotonic()
    if land_tpch(landing, sf):
        print(f"TPC-H SF {sf} landed in {landing / 'tpch'} in {time.monotonic() - started:.1f} s")
    else:
        print(f"TPC-H SF {sf} already in {landing / 'tpch'}; skipped")


if __name__ == "__main__":
    main()
