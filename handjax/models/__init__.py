"""handjax.models."""
