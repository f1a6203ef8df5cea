"""Land TPC-H data for the reference mesh: ``python -m domains.tpch --sf 1``.

Generates the eight TPC-H tables as CSV with ``tpchgen-cli`` (identical to the official ``dbgen``) into
``<landing zone>/tpch/``, the orders and their lines split by month of the order date, as a source system
exporting them month by month would (the layout the reference mesh's partitioned ``sales`` tables read,
docs/partitions.md)::

    tpch/customer.csv, nation.csv, part.csv, partsupp.csv, region.csv, supplier.csv
    tpch/orders/<YYYY-MM>/orders.csv        the orders placed that month (and orders-1.csv, … above SF 1)
    tpch/lineitem/<YYYY-MM>/lineitem.csv    their lines, each with its order's o_orderdate as a last column

Skipped when that scale factor is already there in that layout (recorded in ``_scale_factor``).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from mesh_assets.settings import find_mesh_root, load_settings

TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")
BY_MONTH = ("orders", "lineitem")  # landed as <table>/<YYYY-MM>/<table>.csv, by month of the order date
LAYOUT = "by-month"  # recorded with the scale factor: a landing of another layout is made again


def raw_files(table: str) -> str:
    """The glob, relative to the landing zone, of the landed CSV files of the TPC-H ``table``
    (``tpch/orders/*/*.csv``, ``tpch/nation.csv``)."""
    return f"tpch/{table}/*/*.csv" if table in BY_MONTH else f"tpch/{table}.csv"


def months(landing_zone: Path) -> list[str]:
    """The months (``YYYY-MM``) whose orders are landed in ``landing_zone``, in order."""
    return sorted(p.name for p in (landing_zone / "tpch" / "orders").glob("*-*") if p.is_dir())


def copy_months(source: Path, landing_zone: Path, keys: list[str]) -> None:
    """Land the orders and order lines of the months ``keys`` (``YYYY-MM``) from the landing zone ``source``
    (one :func:`land_tpch` filled) into ``landing_zone``, replacing what that month had there: a new month, or
    a month landed again. Raises FileNotFoundError for a month ``source`` does not have."""
    for table in BY_MONTH:
        for key in keys:
            target = landing_zone / "tpch" / table / key
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source / "tpch" / table / key, target)


def land_tpch(landing_zone: Path, scale_factor: float) -> bool:
    """Write TPC-H at ``scale_factor`` into ``<landing_zone>/tpch/`` (the module's layout); return False when
    already there. The orders and their lines are generated in parts of at most SF 1 (``tpchgen-cli --parts``),
    each split by month on its own (:func:`split_by_month`), so memory stays about that of SF 1.

    Raises:
        subprocess.CalledProcessError: ``tpchgen-cli`` failed.
        RuntimeError: a generated line has no order (:func:`split_by_month`); the landing is made again next time.
    """
    target = landing_zone / "tpch"
    marker = target / "_scale_factor"
    recorded = f"{scale_factor} {LAYOUT}"
    flat = [t for t in TABLES if t not in BY_MONTH]
    if marker.is_file() and marker.read_text().strip() == recorded and all(
        (target / f"{t}.csv").is_file() for t in flat) and all((target / t).is_dir() for t in BY_MONTH):
        return False
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    binary = shutil.which("tpchgen-cli") or str(Path(sys.executable).parent / "tpchgen-cli")
    generate = [binary, "csv", "-s", str(scale_factor)]
    subprocess.run([*generate, "-o", str(target), f"--tables={','.join(flat)}"], check=True)
    generated = target / "_generated"
    parts = max(1, math.ceil(scale_factor))
    subprocess.run([*generate, "-o", str(generated), f"--tables={','.join(BY_MONTH)}",
                    *([f"--parts={parts}"] if parts > 1 else [])], check=True)
    split_by_month(target, [(generated / f"orders{f'/orders.{k}' if parts > 1 else ''}.csv",
                             generated / f"lineitem{f'/lineitem.{k}' if parts > 1 else ''}.csv")
                            for k in range(1, parts + 1)])
    shutil.rmtree(generated)
    marker.write_text(recorded)
    return True


def split_by_month(target: Path, parts: list[tuple[Path, Path]]) -> None:
    """Write the orders and lines of ``parts`` (pairs of an orders and a lineitem CSV, ``tpchgen-cli --parts``)
    into ``target``, one folder per month of the order date (``orders/<YYYY-MM>/orders.csv``, then
    ``orders-1.csv``… when a month gets several files; each line gets its order's ``o_orderdate`` as a last
    column). A line is matched with its order among every part's orders: a part's last orders may have their
    lines in the next part's file. The values are copied as text, unchanged (one DuckDB ``COPY …
    PARTITION_BY`` per table and part).

    Raises:
        RuntimeError: a line's order is in no part (the months written so far stay, without ``_scale_factor``).
    """
    spill = target / "_split_spill"
    con = duckdb.connect(config={"temp_directory": str(spill)})
    try:
        con.execute("SET preserve_insertion_order = false")  # the rows' order within a month is not kept
        month = "strftime(CAST(o_orderdate AS DATE), '%Y-%m') AS _month"
        every_order = ", ".join("'" + str(o).replace("'", "''") + "'" for o, _ in parts)
        con.execute(f"CREATE TABLE d AS SELECT o_orderkey, o_orderdate, {month} FROM read_csv([{every_order}], "
                    "header=true, all_varchar=true)")
        files: dict[Path, int] = {}
        for orders_file, lines_file in parts:
            orders, lines = (str(f).replace("'", "''") for f in (orders_file, lines_file))
            queries = {"orders": f"SELECT *, {month} FROM read_csv('{orders}', header=true, all_varchar=true)",
                       "lineitem": f"SELECT l.*, d.o_orderdate, d._month FROM read_csv('{lines}', header=true, "
                                   "all_varchar=true) AS l LEFT JOIN d ON d.o_orderkey = l.l_orderkey"}
            for table, query in queries.items():
                folder = target / f"_{table}_by_month"
                con.execute(f"COPY ({query}) TO '{str(folder).replace(chr(39), chr(39) * 2)}' "
                            "(FORMAT csv, HEADER, PARTITION_BY (_month))")
                for part in sorted(folder.glob("_month=*")):
                    if not re.fullmatch(r"_month=\d{4}-\d{2}", part.name):  # a line whose order is in no part
                        raise RuntimeError(f"{lines_file}: lines without an order ({part.name}); nothing was landed")
                    month_folder = target / table / part.name.removeprefix("_month=")
                    month_folder.mkdir(parents=True, exist_ok=True)
                    for file in sorted(part.glob("*.csv")):
                        n = files[month_folder] = files.get(month_folder, -1) + 1
                        file.rename(month_folder / (f"{table}.csv" if n == 0 else f"{table}-{n}.csv"))
                shutil.rmtree(folder)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1 ≈ 8.7 M rows)")
    parser.add_argument("--root", type=Path, default=None, help="mesh folder (default: around the cwd)")
    args = parser.parse_args()
    sf = int(args.sf) if args.sf == int(args.sf) else args.sf
    landing = Path(load_settings(find_mesh_root(args.root)).landing_path)
    started = time.monotonic()
    if land_tpch(landing, sf):
        print(f"TPC-H SF {sf} landed in {landing / 'tpch'} (orders and lines by month of the order date) in "
              f"{time.monotonic() - started:.1f} s")
    else:
        print(f"TPC-H SF {sf} already in {landing / 'tpch'}; skipped")


if __name__ == "__main__":
    main()
