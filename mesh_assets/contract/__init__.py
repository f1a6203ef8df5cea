"""The contract model and its loading: data products, tables, columns, SLAs, grants, metrics, labels, the mesh."""
