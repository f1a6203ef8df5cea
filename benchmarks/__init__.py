"""Benchmarks of the mesh (``make bench``); they measure, the tests assert."""
