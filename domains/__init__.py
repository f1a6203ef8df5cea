"""The reference mesh: the TPC-H wholesale company, one folder per domain (a dg project and a code location, with
its own package ``<domain>_domain``), and :mod:`domains.tpch`, which lands TPC-H."""
