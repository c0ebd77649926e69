"""handjax.eval."""
