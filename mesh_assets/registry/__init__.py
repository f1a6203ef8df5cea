"""The contract registry: where domains in separate repositories publish their output ports' contracts and their
consumer expectations, so that each resolves the others without reading their files (docs/domain-repos.md)."""
