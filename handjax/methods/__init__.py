"""handjax.methods."""
