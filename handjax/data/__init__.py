"""handjax.data."""
