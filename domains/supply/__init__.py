"""The supply domain of the reference mesh."""
