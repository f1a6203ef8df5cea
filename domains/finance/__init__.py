"""The finance domain of the reference mesh."""
