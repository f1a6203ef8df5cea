"""Federated computational governance: grants and access requests, policies, breaking changes, classification, owners,
secrets."""
