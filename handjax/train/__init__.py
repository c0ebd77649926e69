"""handjax.train."""
