"""Reading the mesh: SQL over output ports as a reader, and the status of data products."""
