"""tfds builders of handjax. Importing a builder module registers it with tfds."""
