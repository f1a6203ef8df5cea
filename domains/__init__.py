"""The reference mesh: the TPC-H wholesale company, one package and one code location per domain."""
