"""SQL analysis shared by every layer: the function allow-list, the tables a query reads, column lineage."""
