"""The sales domain of the reference mesh."""
