"""The customers domain of the reference mesh."""
